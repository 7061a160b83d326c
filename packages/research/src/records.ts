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
     * A checkpoint's weights, and its strategy state where the source has it (the database and
     * the REST API do; a coordinator from before the state route does not): replay recomputes
     * the strategy from round 1, state included, checks the weights against the record and,
     * where given, the state too.
     */
    checkpoint(
      runId: string,
      round: number,
    ): Promise<Omit<CheckpointRecord, 'strategyState'> & { strategyState?: Uint8Array | null }>;
  };
  clients: Pick<ClientRepository, 'list'>;
}
