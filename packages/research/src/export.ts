import type { RunRecord } from '@tessera/db';
import type { RunRecords } from './records.js';
import { roundsTable, type Table, updatesTable } from './tables.js';

export interface RunExport {
  /**
   * The run's record: config, status, and for a task with a statistics round its combined
   * statistics and the resolved task's reference (`statistics`, `resolvedTask`).
   */
  run: RunRecord;
  /** One row per committed round (ROUND_COLUMNS). */
  rounds: Table;
  /** One row per client update, by round then arrival (UPDATE_COLUMNS). */
  updates: Table;
}

/** A run's rounds table: the rounds and their checkpoints' sha256 (NOT_FOUND for an unknown run). */
export async function readRoundsTable(db: RunRecords, runId: string): Promise<Table> {
  const [rounds, hashes] = await Promise.all([
    db.rounds.list(runId),
    db.rounds.checkpointHashes(runId),
  ]);
  const checkpointSha = new Map(hashes.map((hash) => [hash.round, hash.sha256]));
  return roundsTable(runId, rounds, checkpointSha);
}

/** A run's updates table, with each client's organisation. */
export async function readUpdatesTable(db: RunRecords, run: RunRecord): Promise<Table> {
  const [updates, clients] = await Promise.all([
    db.rounds.allUpdates(run.id),
    db.clients.list(run.federationId),
  ]);
  const organisations = new Map(clients.map((client) => [client.id, client.organisation]));
  return updatesTable(run.id, updates, organisations);
}

/** Reads everything an export writes about a run: its record, its rounds and its updates. */
export async function readRunExport(db: RunRecords, runId: string): Promise<RunExport> {
  const run = await db.runs.get(runId);
  const [rounds, updates] = await Promise.all([
    readRoundsTable(db, runId),
    readUpdatesTable(db, run),
  ]);
  return { run, rounds, updates };
}
