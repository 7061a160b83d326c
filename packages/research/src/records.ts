import type {
  CheckpointRecord,
  ClientRepository,
  RoundRepository,
  RunRepository,
} from '@tessera/db';

/**
 * Where a run's records are read from: what export and replay need of a `Database`, and no
 * more, so that the CLI can hand them the coordinator's REST API instead (apps/cli's
 * api-client.ts) and both modes build their tables and checks by the same code.
 */
export interface RunRecords {
  runs: Pick<RunRepository, 'get'>;
  rounds: Pick<
    RoundRepository,
    'list' | 'allUpdates' | 'checkpointHashes' | 'updatesWithWeights'
  > & {
    /**
     * A checkpoint's weights. Its strategy state is not asked for: replay recomputes the
     * strategy from round 1, state included, and checks the weights against the record.
     */
    checkpoint(runId: string, round: number): Promise<Omit<CheckpointRecord, 'strategyState'>>;
  };
  clients: Pick<ClientRepository, 'list'>;
}
