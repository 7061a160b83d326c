import type { Database, RunRecord } from '@tessera/db';
import { roundsTable, type Table, updatesTable } from './tables.js';

export interface RunExport {
  run: RunRecord;
  /** One row per committed round (ROUND_COLUMNS). */
  rounds: Table;
  /** One row per client update, by round then arrival (UPDATE_COLUMNS). */
  updates: Table;
}

/** Reads everything an export writes about a run: its record, its rounds and its updates. */
export async function readRunExport(db: Database, runId: string): Promise<RunExport> {
  const run = await db.runs.get(runId);
  const [rounds, updates, hashes, clients] = await Promise.all([
    db.rounds.list(runId),
    db.rounds.allUpdates(runId),
    db.rounds.checkpointHashes(runId),
    db.clients.list(run.federationId),
  ]);
  const checkpointSha = new Map(hashes.map((hash) => [hash.round, hash.sha256]));
  const organisations = new Map(clients.map((client) => [client.id, client.organisation]));
  return {
    run,
    rounds: roundsTable(runId, rounds, checkpointSha),
    updates: updatesTable(runId, updates, organisations),
  };
}
