import type { ClientRepository, RoundRepository, RunRepository } from '@tessera/db';

/**
 * Where a run's records are read from: what export and replay need of a `Database`, and no
 * more, so that the CLI can hand them the coordinator's REST API instead (apps/cli's
 * api-client.ts) and both modes build their tables and checks by the same code.
 */
export interface RunRecords {
  runs: Pick<RunRepository, 'get'>;
  rounds: Pick<
    RoundRepository,
    'list' | 'allUpdates' | 'checkpointHashes' | 'checkpoint' | 'updatesWithWeights'
  >;
  clients: Pick<ClientRepository, 'list'>;
}
