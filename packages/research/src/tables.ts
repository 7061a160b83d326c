import type { ClientUpdateRecord, RoundRecord } from '@tessera/db';
import { roundTotalMs } from '@tessera/protocol';

/**
 * The export formats: one row per round and one row per client update, with fixed, documented
 * columns (docs/export.md). CSV follows RFC 4180 (comma, CRLF-free "\n" line ends, fields with
 * a comma, quote or newline quoted); empty means null; lists are joined with ";". JSON Lines
 * carry the same columns with native types (lists as arrays, null as null).
 */
export type Cell = string | number | boolean | null | readonly string[];
export type Row = Record<string, Cell>;

export interface Table {
  columns: readonly string[];
  rows: Row[];
}

export const ROUND_COLUMNS = [
  'run_id',
  'round',
  'status',
  'started_at',
  'finished_at',
  'duration_ms',
  'num_selected',
  'num_participants',
  'num_dropped',
  'num_examples',
  'train_loss',
  'train_accuracy',
  'federated_loss',
  'federated_accuracy',
  'federated_num_examples',
  'central_loss',
  'central_accuracy',
  'central_num_examples',
  'checkpoint_sha256',
  'selected_client_ids',
  'participant_client_ids',
  'dropped_client_ids',
  'dp_epsilon',
  'dp_delta',
  'dp_steps',
  'dp_clip_norm',
  'dp_noise_std',
  'dp_clipped_count',
  'waiting_ms',
  'distribution_ms',
  'training_ms',
  'aggregation_ms',
  'commit_ms',
  'evaluation_ms',
  'round_ms',
  'central_evaluation_ms',
  // Kept last, where readers found it before the phase columns came.
  'client_outcomes',
] as const;

export const UPDATE_COLUMNS = [
  'run_id',
  'round',
  'arrival_index',
  'client_id',
  'organisation',
  'runtime',
  'backend',
  'num_examples',
  'duration_ms',
  'size_bytes',
  'sha256',
  'kept',
  'loss',
  'accuracy',
] as const;

export function roundsTable(
  runId: string,
  rounds: readonly RoundRecord[],
  checkpointSha: ReadonlyMap<number, string>,
): Table {
  return {
    columns: ROUND_COLUMNS,
    rows: rounds.map((round) => ({
      run_id: runId,
      round: round.number,
      status: round.status,
      started_at: round.startedAt.toISOString(),
      finished_at: round.finishedAt.toISOString(),
      duration_ms: round.durationMs,
      num_selected: round.selectedClientIds.length,
      num_participants: round.participantClientIds.length,
      num_dropped: round.droppedClientIds.length,
      num_examples: round.numExamples,
      train_loss: round.trainLoss,
      train_accuracy: round.trainAccuracy,
      federated_loss: round.federatedLoss,
      federated_accuracy: round.federatedAccuracy,
      federated_num_examples: round.federatedNumExamples,
      central_loss: round.centralLoss,
      central_accuracy: round.centralAccuracy,
      central_num_examples: round.centralNumExamples,
      checkpoint_sha256: checkpointSha.get(round.number) ?? null,
      selected_client_ids: round.selectedClientIds,
      participant_client_ids: round.participantClientIds,
      dropped_client_ids: round.droppedClientIds,
      // JSON text in both formats, so `json.loads` (or pandas' `.apply(json.loads)`) reads it.
      client_outcomes: JSON.stringify(round.outcomes),
      // dp-fedavg's accounting after the round (null for runs without DP).
      dp_epsilon: privacyNumber(round, 'epsilon'),
      dp_delta: privacyNumber(round, 'delta'),
      dp_steps: privacyNumber(round, 'steps'),
      dp_clip_norm: privacyNumber(round, 'clipNorm'),
      dp_noise_std: privacyNumber(round, 'noiseStd'),
      dp_clipped_count: privacyNumber(round, 'clippedCount'),
      // Where the round's time went (null for rounds recorded before phases were).
      waiting_ms: round.phases?.waitingMs ?? null,
      distribution_ms: round.phases?.distributionMs ?? null,
      training_ms: round.phases?.trainingMs ?? null,
      aggregation_ms: round.phases?.aggregationMs ?? null,
      commit_ms: round.phases?.commitMs ?? null,
      evaluation_ms: round.phases?.evaluationMs ?? null,
      round_ms: roundTotalMs(round.phases),
      central_evaluation_ms: round.phases?.centralEvaluationMs ?? null,
    })),
  };
}

function privacyNumber(round: RoundRecord, key: string): number | null {
  const value = round.privacy?.[key];
  return typeof value === 'number' ? value : null;
}

export function updatesTable(
  runId: string,
  updates: readonly ClientUpdateRecord[],
  organisations: ReadonlyMap<string, string>,
): Table {
  return {
    columns: UPDATE_COLUMNS,
    rows: updates.map((update) => ({
      run_id: runId,
      round: update.round,
      arrival_index: update.arrivalIndex,
      client_id: update.clientId,
      organisation: organisations.get(update.clientId) ?? null,
      runtime: update.runtime,
      backend: update.backend,
      num_examples: update.numExamples,
      duration_ms: update.durationMs,
      size_bytes: update.sizeBytes,
      sha256: update.sha256,
      kept: update.kept,
      loss: update.metrics['loss'] ?? null,
      accuracy: update.metrics['accuracy'] ?? null,
    })),
  };
}

function csvField(cell: Cell): string {
  if (cell === null) return '';
  const text = Array.isArray(cell) ? cell.join(';') : String(cell);
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** RFC 4180 CSV with a header row. Numbers are written in their shortest round-trip form. */
export function toCsv(table: Table): string {
  const lines = [table.columns.join(',')];
  for (const row of table.rows) {
    lines.push(table.columns.map((column) => csvField(row[column] ?? null)).join(','));
  }
  return `${lines.join('\n')}\n`;
}

/** One JSON object per line, keys in column order. */
export function toJsonLines(table: Table): string {
  return table.rows
    .map(
      (row) =>
        `${JSON.stringify(Object.fromEntries(table.columns.map((c) => [c, row[c] ?? null])))}\n`,
    )
    .join('');
}

/** Parses what toCsv writes (for round-trip checks and for tools that read exports back). */
export function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let field = '';
  let record: string[] = [];
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const char = text[i] as string;
    if (quoted) {
      if (char === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (char === '"') quoted = false;
      else field += char;
    } else if (char === '"') quoted = true;
    else if (char === ',') {
      record.push(field);
      field = '';
    } else if (char === '\n') {
      record.push(field);
      records.push(record);
      record = [];
      field = '';
    } else if (char !== '\r') field += char;
  }
  if (field !== '' || record.length > 0) {
    record.push(field);
    records.push(record);
  }
  return records;
}
