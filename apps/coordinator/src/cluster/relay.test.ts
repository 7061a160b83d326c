import { randomUUID } from 'node:crypto';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { connectRedis, type RedisConnections } from './redis.js';
import { type ForwardedFrame, ReplyRelay } from './relay.js';

// Two relays on real Redis (CI runs it at 127.0.0.1:6379), each with its own connections as two
// coordinator processes would have, on a prefix of this test's own.
const redisUrl = process.env['TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';

const open: Array<{ relay: ReplyRelay; connections: RedisConnections }> = [];
afterEach(async () => {
  for (const { relay, connections } of open.splice(0)) {
    await relay.close();
    await connections.close();
  }
});

async function startRelay(prefix: string, processId: string, answerTimeoutMs?: number) {
  const connections = await connectRedis({ url: redisUrl, prefix });
  const relay = await ReplyRelay.start({
    ...connections,
    processId,
    ...(answerTimeoutMs === undefined ? {} : { answerTimeoutMs }),
  });
  open.push({ relay, connections });
  return relay;
}

const refusalOf = async (promise: Promise<unknown>) => {
  try {
    await promise;
  } catch (error) {
    return error as TesseraError;
  }
  throw new Error('expected a refusal');
};

describe('ReplyRelay on Redis', () => {
  it("gives a reply to its run's owner with its bytes unchanged, and brings the owner's verdict back", async () => {
    const prefix = `test:${randomUUID()}:`;
    const owner = await startRelay(prefix, 'owner');
    const other = await startRelay(prefix, 'other');
    const received: ForwardedFrame[] = [];
    await owner.serve('run-1', (forwarded) => {
      const frame = forwarded.frame as { round: number };
      if (frame.round !== 3)
        throw new TesseraError(ErrorCode.WRONG_ROUND, `round ${frame.round} is not open`, {
          openRound: 3,
        });
      received.push(forwarded);
    });
    const weights = new Uint8Array(new Float32Array([1.5, -2, 3.25, Number.MIN_VALUE]).buffer);
    await other.forward({
      runId: 'run-1',
      event: 'update',
      clientId: 'c1',
      frame: { runId: 'run-1', round: 3, weights },
    });
    expect(received).toHaveLength(1);
    const got = received[0]?.frame as { weights: Uint8Array };
    expect(Buffer.from(got.weights).equals(Buffer.from(weights))).toBe(true);
    expect(received[0]).toMatchObject({ runId: 'run-1', event: 'update', clientId: 'c1' });

    // The owner's refusal reaches the sender with its code, message and data.
    const refusal = await refusalOf(
      other.forward({ runId: 'run-1', event: 'update', clientId: 'c1', frame: { round: 2 } }),
    );
    expect(refusal).toBeInstanceOf(TesseraError);
    expect(refusal.toWire()).toEqual({
      code: ErrorCode.WRONG_ROUND,
      message: 'round 2 is not open',
      data: { openRound: 3 },
    });
    expect(received).toHaveLength(1);
  });

  it("relays a SecAgg message with its masked vector's bytes intact; the owner's asynchronous verdict is the ack", async () => {
    const prefix = `test:${randomUUID()}:`;
    const owner = await startRelay(prefix, 'owner');
    const other = await startRelay(prefix, 'other');
    const received: ForwardedFrame[] = [];
    // As the owner's engine answers a `secagg` frame: after the SecAgg server's (async) check.
    await owner.serve('run-s', async (forwarded) => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      const { message } = forwarded.frame as { message: { roundId: string } };
      if (message.roundId !== 'run-s/1/1')
        throw new TesseraError(ErrorCode.WRONG_ROUND, 'the secure aggregation open is of round 1', {
          openRound: 1,
        });
      received.push(forwarded);
    });
    // A masked vector of a 2NN's size, 4·(199,210 + 1) B of every byte value: as raw bytes.
    const maskedVector = new Uint8Array(4 * 199_211).map((_, i) => (i * 131 + 7) % 256);
    const frame = {
      runId: 'run-s',
      round: 1,
      step: 'mask',
      message: { roundId: 'run-s/1/1', maskedVector },
    };
    await other.forward({ runId: 'run-s', event: 'secagg', clientId: 'c2', frame });
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({
      runId: 'run-s',
      event: 'secagg',
      clientId: 'c2',
      frame: { runId: 'run-s', round: 1, step: 'mask', message: { roundId: 'run-s/1/1' } },
    });
    const relayed = received[0]?.frame as { message: { maskedVector: unknown } } | undefined;
    const got = relayed?.message.maskedVector;
    expect(got).toBeInstanceOf(Uint8Array);
    expect(Buffer.from(got as Uint8Array).equals(Buffer.from(maskedVector))).toBe(true);

    // The owner's refusal comes back, after its check, with its code and data.
    const refusal = await refusalOf(
      other.forward({
        runId: 'run-s',
        event: 'secagg',
        clientId: 'c2',
        frame: { ...frame, message: { roundId: 'run-s/0/1', maskedVector } },
      }),
    );
    expect(refusal.toWire()).toEqual({
      code: ErrorCode.WRONG_ROUND,
      message: 'the secure aggregation open is of round 1',
      data: { openRound: 1 },
    });
    expect(received).toHaveLength(1);
  });

  it('a run no process drives is WRONG_RUN at once; an owner that does not answer is UNAVAILABLE', async () => {
    const prefix = `test:${randomUUID()}:`;
    const owner = await startRelay(prefix, 'owner');
    const other = await startRelay(prefix, 'other', 300);
    const nobody = await refusalOf(
      other.forward({ runId: 'run-x', event: 'evaluation', clientId: 'c1', frame: {} }),
    );
    expect(nobody.code).toBe(ErrorCode.WRONG_RUN);

    await owner.serve('run-2', () => {});
    await owner.unserve('run-2');
    expect(
      (
        await refusalOf(
          other.forward({ runId: 'run-2', event: 'update', clientId: 'c1', frame: {} }),
        )
      ).code,
    ).toBe(ErrorCode.WRONG_RUN);

    // Subscribed but silent (a process frozen mid-round): the sender gives up after its timeout.
    const connections = await connectRedis({ url: redisUrl, prefix });
    await connections.subscriber.subscribe(`${prefix}run:run-3`, () => {}, true);
    try {
      const silent = await refusalOf(
        other.forward({ runId: 'run-3', event: 'update', clientId: 'c1', frame: {} }),
      );
      expect(silent.code).toBe(ErrorCode.UNAVAILABLE);
    } finally {
      await connections.close();
    }
  });

  it('keeps at most maxInFlightBytes of unanswered replies on the wire: the rest wait their turn', async () => {
    const prefix = `test:${randomUUID()}:`;
    const other = await startRelay(prefix, 'other', 400);
    // Room for one reply at a time (one always goes, whatever its size).
    const narrowConnections = await connectRedis({ url: redisUrl, prefix });
    const narrow = await ReplyRelay.start({
      ...narrowConnections,
      processId: 'narrow',
      answerTimeoutMs: 400,
      maxInFlightBytes: 1,
    });
    open.push({ relay: narrow, connections: narrowConnections });
    // An owner that is subscribed but never answers: each reply stays in flight until it times out.
    const heard: number[] = [];
    const silent = await connectRedis({ url: redisUrl, prefix });
    await silent.subscriber.subscribe(`${prefix}run:run-4`, () => heard.push(Date.now()), true);
    try {
      const frame = { weights: new Uint8Array(1024) };
      const sent = [0, 1, 2].map(() =>
        refusalOf(narrow.forward({ runId: 'run-4', event: 'update', clientId: 'c', frame })),
      );
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(heard).toHaveLength(1);
      const refusals = await Promise.all(sent);
      expect(refusals.map((r) => r.code)).toEqual(Array(3).fill(ErrorCode.UNAVAILABLE));
      expect(heard).toHaveLength(3);
      // The default window lets them all go at once.
      heard.length = 0;
      const wide = [0, 1, 2].map(() =>
        refusalOf(other.forward({ runId: 'run-4', event: 'update', clientId: 'c', frame })),
      );
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(heard).toHaveLength(3);
      await Promise.all(wide);
    } finally {
      await silent.close();
    }
  });
});
