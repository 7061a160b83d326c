import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { EvaluationResult } from '@tessera/aggregation';
import { MnistCentralEvaluator } from '@tessera/coordinator';
import type { Database, RunRecord } from '@tessera/db';
import { initBackend } from '@tessera/ml';
import { bytesToWeights, zooModelOf } from '@tessera/protocol';
import {
  comparisonChartSvg,
  comparisonTable,
  counterfactualReplay,
  type RunRecords,
  type Series,
  testSeries,
  type VerifyReport,
  verifyRun,
} from '@tessera/research';

type Print = (line: string) => void;

/**
 * `tessera replay`'s exit statuses: every checkpoint reproduced; some checked checkpoint
 * differs; nothing differed but some rounds could not be replayed (their update bytes were
 * not kept: keepUpdates off, or the storage limit reached), so the run was only partly checked.
 */
export const REPLAY_EXIT = { identical: 0, differs: 2, notReplayable: 3 } as const;

/** The exit status a verify report earns (REPLAY_EXIT). */
export function replayExitCode(report: VerifyReport): number {
  // A recomputed strategy state that differs from the stored one (SCAFFOLD's c from a changed
  // Δc_i) is a difference too, even where the round's weights match.
  if (report.checks.some((check) => !check.match || check.stateMatch === false)) {
    return REPLAY_EXIT.differs;
  }
  if ((report.integrity?.mismatched.length ?? 0) > 0) return REPLAY_EXIT.differs;
  return report.unchecked === null ? REPLAY_EXIT.identical : REPLAY_EXIT.notReplayable;
}

/**
 * Checks every recorded checkpoint against a recomputation; prints one line per round. The
 * records (and update bytes) come from the database or over the REST API alike.
 */
export async function verifyCommand(
  db: RunRecords,
  runId: string,
  print: Print,
): Promise<VerifyReport> {
  const run = await db.runs.get(runId);
  // Nothing to recompute: say why at once rather than print an empty table and "0/N".
  if (run.config.strategy === 'dp-fedavg') {
    const report = await verifyRun(db, runId);
    const integrity = report.integrity ?? { checked: 0, mismatched: [] };
    print(`run ${runId} cannot be replayed: ${report.unchecked?.reason ?? 'dp-fedavg'}`);
    print(
      integrity.mismatched.length === 0
        ? `${integrity.checked} recorded checkpoints match their sha256; that is integrity, not a recomputation`
        : `checkpoints of rounds ${integrity.mismatched.join(', ')} do NOT match their recorded sha256`,
    );
    return report;
  }
  if (!run.config.keepUpdates) {
    const report = await verifyRun(db, runId);
    print(
      `run ${runId} kept no update bytes (keepUpdates was off); it can be verified, not replayed (the sha256 of its ${run.currentRound} checkpoints is in tessera export's rounds table)`,
    );
    return report;
  }
  // `state`: the recomputed strategy state against the stored one ('-': none stored, or read
  // over the REST API of a coordinator that does not serve states).
  print('round  updates  recorded sha256   replayed sha256   identical  state');
  const report = await verifyRun(db, runId, {
    onRound: (check) =>
      print(
        `${String(check.round).padStart(5)}  ${String(check.updates).padStart(7)}  ${check.recordedSha256.slice(0, 16)}  ${check.replayedSha256.slice(0, 16)}  ${(check.match ? 'yes' : 'NO').padEnd(9)}  ${check.stateMatch === null ? '-' : check.stateMatch ? 'yes' : 'NO'}`,
      ),
  });
  const matched = report.checks.filter((check) => check.match).length;
  const checked = report.checks.length;
  if (report.unchecked) {
    const { fromRound } = report.unchecked;
    print(
      `rounds ${fromRound}..${report.run.currentRound} not replayed: ${report.unchecked.reason}; they can be verified, not replayed`,
    );
  }
  if (checked < report.run.currentRound && matched === checked) {
    print(
      checked === 0
        ? `run ${runId} has no replayable round (of ${report.run.currentRound})`
        : `replay of run ${runId} (${report.run.config.strategy}) reproduced rounds 1..${checked} bit-identically (${matched}/${checked}); ${report.run.currentRound - checked} later rounds could not be replayed`,
    );
  } else {
    print(
      report.identical
        ? `replay of run ${runId} (${report.run.config.strategy}) is bit-identical: ${matched}/${report.run.currentRound} checkpoints reproduced`
        : `replay of run ${runId} is NOT identical: ${matched}/${checked} replayed checkpoints reproduced`,
    );
  }
  return report;
}

export interface CounterfactualCommandOptions {
  strategy: string;
  strategyOptions: Record<string, unknown>;
  outDir: string;
}

/**
 * Replays a run under another strategy (stored as a new, linked run), evaluates both on the
 * MNIST test set, and writes the comparison as Markdown, CSV-ready JSON and an SVG chart.
 */
export async function counterfactualCommand(
  db: Database,
  runId: string,
  options: CounterfactualCommandOptions,
  print: Print,
): Promise<{ replay: RunRecord; files: string[] }> {
  await initBackend();
  const evaluator = new MnistCentralEvaluator();
  const evaluate = (model: string, weights: Float32Array): Promise<EvaluationResult> =>
    evaluator.evaluate(model, weights);
  const source = await db.runs.get(runId);
  print(`replaying run ${runId} (${source.config.strategy}) with ${options.strategy}...`);
  const replay = await counterfactualReplay(db, runId, {
    strategy: options.strategy,
    strategyOptions: options.strategyOptions,
    evaluate,
    onRound: (round) =>
      print(
        `  round ${round.number}: test accuracy ${round.centralAccuracy?.toFixed(4)}, loss ${round.centralLoss?.toFixed(4)}`,
      ),
  });
  print(`stored as run ${replay.id} (origin replay, source ${runId})`);

  // The source is compared on the same test set: where it has no central evaluation recorded
  // (e.g. central evaluation was off), its checkpoints are evaluated now, without changing it.
  const sourceRounds = (await db.rounds.list(runId)).filter((r) => r.number <= replay.currentRound);
  const sourceSeries: Series = testSeries(`${source.config.strategy} (recorded)`, sourceRounds);
  for (const point of sourceSeries.points) {
    if (sourceRounds.find((r) => r.number === point.round)?.centralAccuracy !== null) continue;
    const checkpoint = await db.rounds.checkpoint(runId, point.round);
    const result = await evaluate(
      zooModelOf(source.config, 'central evaluation'),
      bytesToWeights(checkpoint.weights, checkpoint.paramCount),
    );
    point.accuracy = result.accuracy;
    point.loss = result.loss;
  }
  const replaySeries = testSeries(
    `${replay.config.strategy} (replay)`,
    await db.rounds.list(replay.id),
  );
  const series = [sourceSeries, replaySeries];
  const table = comparisonTable(series);
  const title = `${source.name}: ${source.config.strategy} vs ${replay.config.strategy} (test set, same client updates)`;
  const outDir = resolve(options.outDir);
  await mkdir(outDir, { recursive: true });
  const files = [
    join(outDir, 'comparison.md'),
    join(outDir, 'comparison.svg'),
    join(outDir, 'comparison.json'),
  ];
  await writeFile(files[0] as string, `# ${title}\n\n${table}`);
  await writeFile(files[1] as string, comparisonChartSvg(title, series));
  await writeFile(
    files[2] as string,
    `${JSON.stringify({ sourceRunId: runId, replayRunId: replay.id, series }, null, 2)}\n`,
  );
  print('');
  print(table);
  return { replay, files };
}
