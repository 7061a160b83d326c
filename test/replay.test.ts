import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MnistCentralEvaluator } from '@tessera/coordinator';
import type { RoundRecord } from '@tessera/db';
import { ErrorCode } from '@tessera/protocol';
import {
  counterfactualReplay,
  parseCsv,
  ROUND_COLUMNS,
  readRunExport,
  toCsv,
  toJsonLines,
  UPDATE_COLUMNS,
  verifyRun,
} from '@tessera/research';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createFederation,
  type Harness,
  NODE_AUTO_BACKEND,
  quickRun,
  startHarness,
} from './harness.js';

/**
 * One real federation (coordinator, three client processes, PGlite) runs three rounds with
 * keepUpdates; the tests then export, replay and counterfactually replay what it recorded.
 */
let harness: Harness;
let runId: string;
let plainRunId: string;

beforeAll(async () => {
  harness = await startHarness();
  const h = harness;
  const { federationId, tokens } = await createFederation(h, 3);
  for (const [k, { token }] of tokens.entries()) {
    h.spawnClient(token, ['--mnist', `${k}/3`, '--max-examples', '300']);
  }
  const runOnce = async (keepUpdates: boolean) => {
    const run = await h.api<{ id: string }>('POST', '/runs', {
      ...quickRun,
      federationId,
      minClients: 3,
      keepUpdates,
    });
    expect(run.status).toBe(201);
    const finished = new Promise((resolve) =>
      h.coordinator.on('run-finished', (e) => e.runId === run.body.id && resolve(e)),
    );
    // Starting waits for the three clients itself (minClients 3).
    expect((await h.api('POST', `/runs/${run.body.id}/start`)).status).toBe(202);
    expect(await finished).toMatchObject({ status: 'completed' });
    return run.body.id;
  };
  runId = await runOnce(true);
  plainRunId = await runOnce(false);
});

afterAll(async () => {
  await harness?.dispose();
});

describe('a run recorded with keepUpdates', () => {
  it('keeps every update with its sha256, runtime and backend', async () => {
    const run = await harness.db.runs.get(runId);
    expect(run.config.keepUpdates).toBe(true);
    expect(run.keptUpdateBytes).toBe(3 * 3 * 199_210 * 4);
    for (let round = 1; round <= 3; round++) {
      const kept = await harness.db.rounds.updatesWithWeights(runId, round);
      expect(kept.map((u) => u.arrivalIndex)).toEqual([0, 1, 2]);
      for (const update of kept) {
        expect(createHash('sha256').update(update.weights).digest('hex')).toBe(update.sha256);
      }
      const listed = await harness.db.rounds.updates(runId, round);
      expect(
        listed.every((u) => u.runtime === 'node' && u.backend === NODE_AUTO_BACKEND && u.kept),
      ).toBe(true);
    }
  });

  it('replays bit-identically: every recomputed checkpoint has the recorded sha256', async () => {
    const report = await verifyRun(harness.db, runId);
    expect(report.identical).toBe(true);
    expect(report.unchecked).toBeNull();
    expect(report.checks.map((c) => [c.round, c.updates, c.match])).toEqual([
      [1, 3, true],
      [2, 3, true],
      [3, 3, true],
    ]);
  });

  it('detects a tampered update: its round no longer verifies', async () => {
    const [victim] = await harness.db.prisma.clientUpdate.findMany({
      where: { round: { runId, number: 2 } },
      orderBy: { arrivalIndex: 'asc' },
      take: 1,
    });
    if (!victim?.weights) throw new Error('a kept update expected');
    const original = new Uint8Array(victim.weights);
    const changed = original.slice();
    // An exponent bit of one weight: a change FedAvg's division cannot round away.
    changed[103] = (changed[103] as number) ^ 0x20;
    const sha = createHash('sha256').update(changed).digest('hex');
    await harness.db.prisma.clientUpdate.update({
      where: { id: victim.id },
      data: { weights: changed, sha256: sha },
    });
    try {
      const report = await verifyRun(harness.db, runId);
      expect(report.identical).toBe(false);
      expect(report.checks.map((c) => c.match)).toEqual([true, false, true]);
    } finally {
      await harness.db.prisma.clientUpdate.update({
        where: { id: victim.id },
        data: { weights: original, sha256: victim.sha256 },
      });
    }
  });

  it('says why a run without kept updates cannot be replayed', async () => {
    const report = await verifyRun(harness.db, plainRunId);
    expect(report.identical).toBe(false);
    expect(report.checks).toEqual([]);
    expect(report.unchecked).toEqual({
      fromRound: 1,
      cause: 'keep-updates-off',
      reason: 'the run kept no update bytes (keepUpdates was off)',
    });
    await expect(
      counterfactualReplay(harness.db, plainRunId, { strategy: 'fedmedian' }),
    ).rejects.toMatchObject({ code: ErrorCode.CONFLICT });
  });

  it('stores a counterfactual replay as a new run linked to its source, evaluated centrally', async () => {
    const evaluator = new MnistCentralEvaluator();
    const seen: number[] = [];
    const replay = await counterfactualReplay(harness.db, runId, {
      strategy: 'fedmedian',
      evaluate: (model, weights) => evaluator.evaluate(model, weights),
      onRound: (round) => seen.push(round.number),
    });
    expect(seen).toEqual([1, 2, 3]);
    expect(replay).toMatchObject({
      origin: 'replay',
      sourceRunId: runId,
      status: 'completed',
      currentRound: 3,
      config: { strategy: 'fedmedian', model: 'fedavg-2nn', keepUpdates: false },
    });
    const rounds = await harness.db.rounds.list(replay.id);
    const source = await harness.db.rounds.list(runId);
    for (const [index, round] of rounds.entries()) {
      expect(round.centralNumExamples).toBe(10_000);
      expect(round.centralAccuracy).toBeGreaterThan(0.5);
      expect(round.participantClientIds).toEqual(source[index]?.participantClientIds);
    }
    // A median of three models is not their example-weighted mean.
    const [ours, theirs] = await Promise.all([
      harness.db.rounds.checkpoint(replay.id, 1),
      harness.db.rounds.checkpoint(runId, 1),
    ]);
    expect(ours.sha256).not.toBe(theirs.sha256);
    // Replaying with the source's own strategy reproduces the source's models exactly.
    const same = await counterfactualReplay(harness.db, runId, { strategy: 'fedavg' });
    // The source recorded the default arithmetic; the replay records the same.
    expect((await harness.db.runs.get(runId)).config.strategyOptions).toEqual({
      arithmetic: 'float64-sequential',
    });
    expect((await harness.db.runs.get(same.id)).config.strategyOptions).toEqual({
      arithmetic: 'float64-sequential',
    });
    for (let round = 0; round <= 3; round++) {
      expect((await harness.db.rounds.checkpoint(same.id, round)).sha256).toBe(
        (await harness.db.rounds.checkpoint(runId, round)).sha256,
      );
    }
  });
});

describe('export', () => {
  it('round-trips: the CSV parses back to the recorded values', async () => {
    const exported = await readRunExport(harness.db, runId);
    const rounds: RoundRecord[] = await harness.db.rounds.list(runId);
    const [header, ...rows] = parseCsv(toCsv(exported.rounds));
    expect(header).toEqual([...ROUND_COLUMNS]);
    expect(rows).toHaveLength(3);
    const column = (name: string) => (header as string[]).indexOf(name);
    for (const [index, row] of rows.entries()) {
      const round = rounds[index] as RoundRecord;
      expect(Number(row[column('round')])).toBe(round.number);
      expect(Number(row[column('train_loss')])).toBe(round.trainLoss);
      expect(Number(row[column('num_examples')])).toBe(round.numExamples);
      expect(row[column('started_at')]).toBe(round.startedAt.toISOString());
      expect(row[column('participant_client_ids')]?.split(';')).toEqual(round.participantClientIds);
      expect(row[column('checkpoint_sha256')]).toBe(
        (await harness.db.rounds.checkpoint(runId, round.number)).sha256,
      );
    }
    const [updateHeader, ...updateRows] = parseCsv(toCsv(exported.updates));
    expect(updateHeader).toEqual([...UPDATE_COLUMNS]);
    expect(updateRows).toHaveLength(9);
    const recorded = await harness.db.rounds.allUpdates(runId);
    for (const [index, row] of updateRows.entries()) {
      const update = recorded[index];
      expect(row[UPDATE_COLUMNS.indexOf('sha256')]).toBe(update?.sha256);
      expect(Number(row[UPDATE_COLUMNS.indexOf('loss')])).toBe(update?.metrics['loss']);
      expect(row[UPDATE_COLUMNS.indexOf('organisation')]).toMatch(/^org-\d$/);
    }
    const lines = toJsonLines(exported.rounds)
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(lines.map((line) => line.central_accuracy)).toEqual(
      rounds.map((r) => r.centralAccuracy),
    );
  });
});

describe('the REST export and verify routes', () => {
  const get = async (path: string) => {
    const response = await fetch(`${harness.coordinator.url}/api${path}`);
    return {
      status: response.status,
      type: response.headers.get('content-type'),
      text: await response.text(),
    };
  };

  it('serves the same CSV and JSON Lines as the export, and refuses bad queries', async () => {
    const exported = await readRunExport(harness.db, runId);
    const csv = await get(`/runs/${runId}/export/rounds?format=csv`);
    expect(csv.status).toBe(200);
    expect(csv.type).toMatch(/^text\/csv/);
    expect(csv.text).toBe(toCsv(exported.rounds));
    const jsonl = await get(`/runs/${runId}/export/updates?format=jsonl`);
    expect(jsonl.text).toBe(toJsonLines(exported.updates));
    const bad = await get(`/runs/${runId}/export/rounds?format=xml`);
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.text).error).toMatchObject({
      code: 'INVALID_ARGUMENT',
      data: { field: 'format' },
    });
    const unknown = await get('/runs/00000000-0000-0000-0000-000000000000/export/rounds');
    expect(unknown.status).toBe(404);
  });

  it('verifies a run over REST', async () => {
    const verified = await get(`/runs/${runId}/verify`);
    expect(verified.status).toBe(200);
    expect(JSON.parse(verified.text)).toMatchObject({ identical: true, strategy: 'fedavg' });
  });
});

describe('the tessera CLI', () => {
  const cli = fileURLToPath(new URL('../apps/cli/dist/main.js', import.meta.url));
  const run = (args: string[]) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [
        cli,
        ...args,
        '--data-dir',
        join(harness.dataDir, 'pglite'),
      ]);
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk) => {
        stdout += chunk;
      });
      child.stderr.on('data', (chunk) => {
        stderr += chunk;
      });
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });

  it('exports, replays and counterfactually replays from the command line', async () => {
    // PGlite's folder belongs to one process: hand it over from the coordinator to the CLI.
    await harness.coordinator.close();
    await harness.db.close();
    const out = mkdtempSync(join(tmpdir(), 'tessera-export-'));
    try {
      const exported = await run(['export', runId, '--out', out, '--model-round', 'latest']);
      expect(exported.stderr).toBe('');
      expect(exported.code).toBe(0);
      expect(exported.stdout).toContain(
        `${join(out, 'model-round-3', 'weights.bin')}  (778.2 KiB)`,
      );
      const rounds = parseCsv(readFileSync(join(out, 'rounds.csv'), 'utf8'));
      expect(rounds).toHaveLength(4);
      expect(readFileSync(join(out, 'updates.jsonl'), 'utf8').trim().split('\n')).toHaveLength(9);
      const modelJson = JSON.parse(readFileSync(join(out, 'model-round-3', 'model.json'), 'utf8'));
      expect(modelJson.weightsManifest[0].paths).toEqual(['weights.bin']);
      expect(statSync(join(out, 'model-round-3', 'weights.bin')).size).toBe(199_210 * 4);

      const verified = await run(['replay', runId]);
      expect(verified.code).toBe(0);
      expect(verified.stdout).toMatch(/bit-identical: 3\/3 checkpoints reproduced/);
      const refused = await run(['replay', plainRunId]);
      expect(refused.code).toBe(3);
      expect(refused.stdout).toMatch(
        /kept no update bytes \(keepUpdates was off\); it can be verified, not replayed/,
      );

      const counterfactual = await run([
        'replay',
        runId,
        '--strategy',
        'trimmed-mean',
        '--option',
        'beta=0.34',
        '--out',
        out,
      ]);
      expect(counterfactual.stderr).toBe('');
      expect(counterfactual.code).toBe(0);
      expect(readFileSync(join(out, 'comparison.svg'), 'utf8')).toMatch(/^<svg/);
      expect(readFileSync(join(out, 'comparison.md'), 'utf8')).toMatch(
        /\| round \| fedavg \(recorded\) accuracy \| trimmed-mean \(replay\) accuracy/,
      );

      const bad = await run(['export', runId, '--format', 'xml']);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(/INVALID_ARGUMENT: --format must be csv, jsonl or all/);
      const missing = await run(['replay', '00000000-0000-0000-0000-000000000000']);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toMatch(/NOT_FOUND/);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
    // Seven CLI processes one after another, each loading tfjs and opening PGlite.
  }, 240_000);
});
