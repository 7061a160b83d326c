import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Database } from '@tessera/db';
import { initBackend, modelWithWeights, toTfjsArtifacts } from '@tessera/ml';
import { bytesToWeights, ErrorCode, TesseraError } from '@tessera/protocol';
import { readRunExport, toCsv, toJsonLines } from '@tessera/research';

export type ExportFormat = 'csv' | 'jsonl' | 'all';

export interface ExportOptions {
  outDir: string;
  format: ExportFormat;
  /** A round's global model to write in the tfjs format ('latest', a number, or null for none). */
  modelRound: number | 'latest' | null;
}

/**
 * Writes a run's record to a folder: run.json (config, seeds, status), rounds and updates as
 * CSV and/or JSON Lines (columns in docs/export.md), and optionally one round's global model as
 * tfjs model.json + weights.bin. Returns the paths written.
 */
export async function exportRun(
  db: Database,
  runId: string,
  options: ExportOptions,
): Promise<string[]> {
  const exported = await readRunExport(db, runId);
  const outDir = resolve(options.outDir);
  await mkdir(outDir, { recursive: true });
  const files: Array<[string, string | Uint8Array]> = [
    ['run.json', `${JSON.stringify(exported.run, null, 2)}\n`],
  ];
  if (options.format !== 'jsonl') {
    files.push(['rounds.csv', toCsv(exported.rounds)], ['updates.csv', toCsv(exported.updates)]);
  }
  if (options.format !== 'csv') {
    files.push(
      ['rounds.jsonl', toJsonLines(exported.rounds)],
      ['updates.jsonl', toJsonLines(exported.updates)],
    );
  }
  if (options.modelRound !== null) {
    const round = options.modelRound === 'latest' ? exported.run.currentRound : options.modelRound;
    if (round > exported.run.currentRound) {
      throw new TesseraError(
        ErrorCode.NOT_FOUND,
        `run ${runId} has committed ${exported.run.currentRound} rounds; no model for round ${round}`,
        { field: 'model-round' },
      );
    }
    const checkpoint = await db.rounds.checkpoint(runId, round);
    await initBackend();
    const model = modelWithWeights(
      exported.run.config.model,
      bytesToWeights(checkpoint.weights, checkpoint.paramCount),
    );
    try {
      const { modelJson, weightsBin } = await toTfjsArtifacts(model);
      const dir = `model-round-${round}`;
      await mkdir(join(outDir, dir), { recursive: true });
      files.push(
        [join(dir, 'model.json'), `${JSON.stringify(modelJson)}\n`],
        [join(dir, 'weights.bin'), weightsBin],
      );
    } finally {
      model.dispose();
    }
  }
  for (const [name, content] of files) await writeFile(join(outDir, name), content);
  return files.map(([name]) => join(outDir, name));
}
