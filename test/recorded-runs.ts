import { createHash } from 'node:crypto';
import { createStrategy, encodeStrategyState } from '@tessera/aggregation';
import type { ClientUpdateInput, Database, RunConfigInput } from '@tessera/db';
import { modelSpec } from '@tessera/ml';
import { weightsToBytes } from '@tessera/protocol';

/**
 * Runs recorded by hand into a database, for the research tests: no training is needed, since
 * export reads records and replay only re-aggregates the kept updates. The weights have the
 * real fedavg-2nn shape, so a round's model can be exported in the tfjs format too.
 */
export const PARAMS = modelSpec('fedavg-2nn').paramCount;

export interface RecordedRuns {
  federationId: string;
  /** keepUpdates off: verifiable, not replayable. */
  plain: string;
  /** keepUpdates on, checkpoints FedAvg of the updates: replays bit-identically. */
  faithful: string;
  /** keepUpdates on, checkpoints not what the updates give. */
  tampered: string;
  /**
   * SCAFFOLD with keepUpdates: each update kept with its Δc_i, each checkpoint with the c the
   * strategy committed; replays bit-identically, states included.
   */
  scaffold: string;
  /** Created, never started. */
  created: string;
}

const weightsOf = (seed: number) => {
  const weights = new Float32Array(PARAMS);
  for (let i = 0; i < PARAMS; i++) weights[i] = Math.sin(seed * 7919 + i) / 10;
  return weights;
};
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

export async function recordRuns(db: Database, name = 'research'): Promise<RecordedRuns> {
  const federation = await db.federations.create({ name });
  const clientIds: string[] = [];
  for (const organisation of ['org-a', 'org "b", with a comma']) {
    clientIds.push(
      (await db.clients.issueToken({ federationId: federation.id, organisation })).client.id,
    );
  }
  const config = (overrides: Partial<RunConfigInput>): RunConfigInput => ({
    model: 'fedavg-2nn',
    strategy: 'fedavg',
    strategyOptions: {},
    rounds: 2,
    clientsPerRound: 2,
    fractionFit: null,
    minClients: 2,
    roundDeadlineMs: 60_000,
    localEpochs: 1,
    batchSize: 10,
    learningRate: 0.1,
    seed: 0,
    data: {},
    ...overrides,
  });
  const record = async (overrides: Partial<RunConfigInput>, rounds: number, faithful: boolean) => {
    const run = await db.runs.create({ federationId: federation.id, config: config(overrides) });
    let global: Float32Array = weightsOf(0);
    await db.rounds.saveInitialCheckpoint(run.id, weightsToBytes(global));
    await db.runs.setStatus(run.id, 'running');
    const { strategy: name, strategyOptions } = run.config;
    const strategy = createStrategy(name, strategyOptions);
    for (let round = 1; round <= rounds; round++) {
      const aggregator = strategy.beginRound(round, global);
      // A SCAFFOLD aggregator has a c, and takes each client's Δc_i with its update.
      const foldsControlDeltas = aggregator.controlVariate !== undefined;
      const updates: ClientUpdateInput[] = clientIds.map((clientId, index) => {
        const weights = weightsOf(round * 10 + index);
        const controlDelta = foldsControlDeltas ? weightsOf(500 + round * 10 + index) : undefined;
        const numExamples = 100 + 50 * index;
        aggregator.add({
          clientId,
          numExamples,
          weights,
          metrics: {},
          ...(controlDelta === undefined ? {} : { controlDelta }),
        });
        const bytes = weightsToBytes(weights);
        return {
          ...(controlDelta === undefined ? {} : { controlDelta: weightsToBytes(controlDelta) }),
          clientId,
          arrivalIndex: index,
          numExamples,
          durationMs: 100 + index,
          sizeBytes: bytes.byteLength,
          sha256: sha256(bytes),
          metrics: { loss: 0.5 - index / 10, accuracy: 0.8 },
          weights: bytes,
          runtime: 'node',
          backend: 'cpu',
        };
      });
      const aggregated = aggregator.finish().weights;
      if (aggregated === null) throw new Error(`${name} of two updates gave nothing`);
      const state = strategy.state();
      global = faithful ? aggregated : weightsOf(1000 + round);
      await db.rounds.commit({
        runId: run.id,
        round,
        startedAt: new Date(Date.UTC(2026, 11, 1, 10, round)),
        finishedAt: new Date(Date.UTC(2026, 11, 1, 10, round, 30)),
        selectedClientIds: clientIds,
        participantClientIds: clientIds,
        droppedClientIds: [],
        numExamples: 250,
        trainLoss: 0.45,
        trainAccuracy: 0.8,
        metrics: {},
        updates,
        checkpoint: weightsToBytes(global),
        strategyState: state === null ? null : encodeStrategyState(state),
      });
    }
    await db.runs.setStatus(run.id, 'completed');
    return run.id;
  };
  return {
    federationId: federation.id,
    plain: await record({ keepUpdates: false }, 2, true),
    faithful: await record({ keepUpdates: true }, 2, true),
    tampered: await record({ keepUpdates: true, rounds: 1 }, 1, false),
    scaffold: await record(
      { keepUpdates: true, strategy: 'scaffold', strategyOptions: { clientCount: 2 } },
      2,
      true,
    ),
    created: (await db.runs.create({ federationId: federation.id, config: config({}) })).id,
  };
}
