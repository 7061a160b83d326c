import { randomUUID } from 'node:crypto';
import { FedAvg } from '@tessera/aggregation';
import { ErrorCode, TesseraError, type TrainReply, weightsToBytes } from '@tessera/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { connectRedis, type RedisConnections } from './redis.js';
import { type CollectedPartial, RemoteFold, type RemoteUpdateClaim } from './remote-fold.js';

// Two RemoteFolds on real Redis (CI runs it at 127.0.0.1:6379), each with its own connections
// as two coordinator processes would have, on a prefix of this test's own. The owner's side is
// a small stand-in for the engine's acceptRemoteUpdate: it says yes to the clients it lists.
const redisUrl = process.env['TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';

const open: Array<{ fold: RemoteFold; connections: RedisConnections }> = [];
afterEach(async () => {
  for (const { fold, connections } of open.splice(0)) {
    await fold.close();
    await connections.close();
  }
});

async function startFold(
  prefix: string,
  processId: string,
  options: { collectTimeoutMs?: number; folded?: string[] } = {},
) {
  const connections = await connectRedis({ url: redisUrl, prefix });
  const fold = await RemoteFold.start({
    ...connections,
    processId,
    ...(options.collectTimeoutMs === undefined
      ? {}
      : { collectTimeoutMs: options.collectTimeoutMs }),
    onFolded: (runId) => options.folded?.push(runId),
  });
  open.push({ fold, connections });
  return { fold, connections };
}

const reply = (round: number, values: number[], numExamples: number): TrainReply => ({
  status: 'ok',
  runId: 'run-1',
  round,
  weights: new Uint8Array(weightsToBytes(Float32Array.from(values))),
  numExamples,
  durationMs: 3,
  metrics: { loss: values[0] ?? 0 },
});

const refusalOf = async (promise: Promise<unknown>) => {
  try {
    await promise;
  } catch (error) {
    return error as TesseraError;
  }
  throw new Error('expected a refusal');
};

describe('RemoteFold on Redis', () => {
  it('folds only what the owner said yes to, and hands the owner a partial equal to folding there', async () => {
    const prefix = `test:${randomUUID()}:`;
    const { fold: owner } = await startFold(prefix, 'owner');
    const folded: string[] = [];
    const { fold: arrival } = await startFold(prefix, 'arrival', { folded });
    const claims: Array<[string, RemoteUpdateClaim]> = [];
    await owner.serve('run-1', (from, claim) => {
      if (claim.clientId === 'late')
        throw new TesseraError(ErrorCode.WRONG_ROUND, 'round 2 of run run-1 is already closed');
      claims.push([from, claim]);
      return { fold: true, key: 'attempt-key' };
    });
    expect(await arrival.tryFold('run-1', 'c1', reply(2, [1, 2, 3], 10))).toBe(true);
    expect(await arrival.tryFold('run-1', 'c2', reply(2, [4, -5, 0.5], 30))).toBe(true);
    const refusal = await refusalOf(arrival.tryFold('run-1', 'late', reply(2, [9, 9, 9], 5)));
    expect(refusal.code).toBe(ErrorCode.WRONG_ROUND);
    // Not for folding: a failed reply, non-finite weights (the owner records their refusal).
    expect(
      await arrival.tryFold('run-1', 'c3', {
        status: 'failed',
        runId: 'run-1',
        round: 2,
        error: { message: 'out of memory' },
      }),
    ).toBe(false);
    expect(await arrival.tryFold('run-1', 'c4', reply(2, [1, Number.NaN, 3], 10))).toBe(false);
    expect(folded).toEqual(['run-1', 'run-1']);
    expect(claims.map(([from, c]) => [from, c.clientId, c.numExamples, c.numParameters])).toEqual([
      ['arrival', 'c1', 10, 3],
      ['arrival', 'c2', 30, 3],
    ]);
    expect(claims[0]?.[1].sha256).toMatch(/^[0-9a-f]{64}$/);

    const collected = await owner.collect('run-1', 'attempt-key', ['arrival']);
    const partial = collected.get('arrival') as CollectedPartial;
    expect(partial.clientIds).toEqual(['c1', 'c2']);
    expect(partial.numExamples).toBe(40);
    // Merged into a round, the same bytes as folding both updates in one place.
    const direct = new FedAvg({ arithmetic: 'exact' }).beginRound(2, new Float32Array(3));
    direct.add({
      clientId: 'c1',
      numExamples: 10,
      weights: Float32Array.from([1, 2, 3]),
      metrics: {},
    });
    direct.add({
      clientId: 'c2',
      numExamples: 30,
      weights: Float32Array.from([4, -5, 0.5]),
      metrics: {},
    });
    const merged = new FedAvg({ arithmetic: 'exact' }).beginRound(2, new Float32Array(3));
    merged.addPartial?.(partial);
    expect(merged.finish().weights).toEqual(direct.finish().weights);
    // Collected once: asked again, the process has nothing for that attempt.
    expect((await owner.collect('run-1', 'attempt-key', ['arrival'])).get('arrival')).toBeNull();
  });

  it("a run that does not fold remotely is forwarded, and the owner isn't asked again", async () => {
    const prefix = `test:${randomUUID()}:`;
    const { fold: owner } = await startFold(prefix, 'owner');
    const { fold: arrival } = await startFold(prefix, 'arrival');
    let asked = 0;
    await owner.serve('run-1', () => {
      asked++;
      return { fold: false };
    });
    expect(await arrival.tryFold('run-1', 'c1', reply(1, [1], 1))).toBe(false);
    expect(await arrival.tryFold('run-1', 'c2', reply(1, [1], 1))).toBe(false);
    expect(asked).toBe(1);
  });

  it('no owner: the update goes to the relay (which answers WRONG_RUN); a process gone or silent: its partial is an UNAVAILABLE error, in bounded time', async () => {
    const prefix = `test:${randomUUID()}:`;
    const { fold: owner } = await startFold(prefix, 'owner', { collectTimeoutMs: 500 });
    const { fold: arrival } = await startFold(prefix, 'arrival');
    expect(await arrival.tryFold('run-9', 'c1', reply(1, [1], 1))).toBe(false);
    // Gone: nobody subscribes to its channel.
    const gone = (await owner.collect('run-1', 'k', ['nobody'])).get('nobody');
    expect(gone).toBeInstanceOf(TesseraError);
    expect((gone as TesseraError).code).toBe(ErrorCode.UNAVAILABLE);
    // Silent: subscribed but never answering (a stalled process): the collect timeout.
    const silent = await connectRedis({ url: redisUrl, prefix });
    open.push({ fold: { close: async () => {} } as RemoteFold, connections: silent });
    await silent.subscriber.subscribe(`${prefix}partials:stalled`, () => {});
    const started = Date.now();
    const stalled = await owner.collect('run-1', 'k', ['stalled']);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect((stalled.get('stalled') as TesseraError).code).toBe(ErrorCode.UNAVAILABLE);
  });
});
