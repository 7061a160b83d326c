import { simulate } from '@tessera/cli';
import { createLogger } from '@tessera/coordinator';
import { type Database, openDatabase } from '@tessera/db';
import { verifyRun } from '@tessera/research';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NODE_AUTO_BACKEND } from './harness.js';

let db: Database;
const logs: string[] = [];
beforeEach(async () => {
  db = await openDatabase({ inMemory: true });
});
afterEach(async () => {
  await db.close();
});

const run = {
  model: 'fedavg-2nn',
  strategy: 'fedavg',
  strategyOptions: {},
  rounds: 3,
  clientsPerRound: null,
  fractionFit: 0.25,
  minClients: 5,
  roundDeadlineMs: 120_000,
  localEpochs: 1,
  batchSize: 50,
  learningRate: 0.1,
  seed: 11,
};

describe('simulation mode', () => {
  it('runs 20 virtual clients in 2 processes through the real coordinator, recorded and replayable', async () => {
    const seen: number[] = [];
    const result = await simulate({
      db,
      logger: createLogger('warn', (line) => logs.push(line)),
      clients: 20,
      processes: 2,
      partition: 'iid',
      partitionSeed: 3,
      holdoutFraction: 0,
      run,
      onRound: (round) => seen.push(round.number),
    });
    expect(seen).toEqual([1, 2, 3]);
    expect(result.run).toMatchObject({
      origin: 'simulation',
      status: 'completed',
      currentRound: 3,
      config: { keepUpdates: true, data: { numClients: 20, partition: 'iid' } },
    });
    const everyone = new Set<string>();
    for (const round of result.rounds) {
      // C = 0.25 of 20 clients; each holds 60000 / 20 examples and trains on all of them.
      expect(round.participantClientIds).toHaveLength(5);
      expect(round.numExamples).toBe(5 * 3000);
      expect(round.centralNumExamples).toBe(10_000);
      // Without held-out data the clients are not asked for federated evaluation.
      expect(round.federatedNumExamples).toBeNull();
      for (const id of round.selectedClientIds) everyone.add(id);
    }
    expect(result.rounds.at(-1)?.centralAccuracy).toBeGreaterThan(0.85);
    expect(everyone.size).toBeGreaterThan(5);
    expect((await db.clients.list(result.run.federationId)).length).toBe(20);
    const updates = await db.rounds.allUpdates(result.run.id);
    expect(
      updates.every((u) => u.kept && u.runtime === 'node' && u.backend === NODE_AUTO_BACKEND),
    ).toBe(true);
    expect((await verifyRun(db, result.run.id)).identical).toBe(true);
  });

  it('stops as completed at the first round that reaches the target accuracy', async () => {
    const result = await simulate({
      db,
      logger: createLogger('warn', (line) => logs.push(line)),
      clients: 20,
      processes: 2,
      partition: 'iid',
      partitionSeed: 3,
      holdoutFraction: 0,
      run: { ...run, rounds: 50 },
      targetAccuracy: 0.5,
    });
    expect(result.roundsToTarget).toBe(1);
    expect(result.run).toMatchObject({ status: 'completed', currentRound: 1 });
  });
});
