import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { initBackend, modelWithWeights, toTfjsArtifacts } from '@tessera/ml';
import { bytesToWeights, ErrorCode, TesseraError, zooModelOf } from '@tessera/protocol';
import { type RunRecords, readRunExport, toCsv, toJsonLines } from '@tessera/research';

export type ExportFormat = 'csv' | 'jsonl' | 'all';

/** One file an export wrote: its path, its size, and its data rows where it is a table. */
export interface WrittenFile {
  path: string;
  bytes: number;
  rows: number | null;
}

/** "/out/rounds.csv  (8 rows, 2.1 KiB)": a written file as the export lists it. */
export function describeWritten(file: WrittenFile): string {
  const size =
    file.bytes < 1024
      ? `${file.bytes} B`
      : file.bytes < 1024 * 1024
        ? `${(file.bytes / 1024).toFixed(1)} KiB`
        : `${(file.bytes / 1024 / 1024).toFixed(1)} MiB`;
  const rows = file.rows === null ? '' : `${file.rows} ${file.rows === 1 ? 'row' : 'rows'}, `;
  return `${file.path}  (${rows}${size})`;
}

export interface ExportOptions {
  outDir: string;
  format: ExportFormat;
  /** A round's global model to write in the tfjs format ('latest', a number, or null for none). */
  modelRound: number | 'latest' | null;
}

/**
 * Writes a run's record to a folder: run.json (config, seeds, status), rounds and updates as
 * CSV and/or JSON Lines (columns in docs/export.md), and optionally one round's global model as
 * tfjs model.json + weights.bin. Returns the files written, in order. The records come from the
 * database or, in the CLI's API mode, from the coordinator's REST API: the same files either way.
 */
export async function exportRun(
  db: RunRecords,
  runId: string,
  options: ExportOptions,
): Promise<WrittenFile[]> {
  const exported = await readRunExport(db, runId);
  const outDir = resolve(options.outDir);
  await mkdir(outDir, { recursive: true });
  const rounds = exported.rounds.rows.length;
  const updates = exported.updates.rows.length;
  const files: Array<[string, string | Uint8Array, number | null]> = [
    ['run.json', `${JSON.stringify(exported.run, null, 2)}\n`, null],
  ];
  if (options.format !== 'jsonl') {
    files.push(
      ['rounds.csv', toCsv(exported.rounds), rounds],
      ['updates.csv', toCsv(exported.updates), updates],
    );
  }
  if (options.format !== 'csv') {
    files.push(
      ['rounds.jsonl', toJsonLines(exported.rounds), rounds],
      ['updates.jsonl', toJsonLines(exported.updates), updates],
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
      zooModelOf(exported.run.config, 'the model export'),
      bytesToWeights(checkpoint.weights, checkpoint.paramCount),
    );
    try {
      const { modelJson, weightsBin } = await toTfjsArtifacts(model);
      const dir = `model-round-${round}`;
      await mkdir(join(outDir, dir), { recursive: true });
      files.push(
        [join(dir, 'model.json'), `${JSON.stringify(modelJson)}\n`, null],
        [join(dir, 'weights.bin'), weightsBin, null],
      );
    } finally {
      model.dispose();
    }
  }
  const written: WrittenFile[] = [];
  for (const [name, content, rows] of files) {
    const path = join(outDir, name);
    await writeFile(path, content);
    written.push({ path, bytes: Buffer.byteLength(content), rows });
  }
  return written;
}
