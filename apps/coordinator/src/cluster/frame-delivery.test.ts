import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../testing/wait-for.js';
import { type DeliveredFrame, FrameDelivery } from './frame-delivery.js';
import { connectRedis, type RedisConnections } from './redis.js';

// Two processes' deliveries on real Redis (CI runs it at 127.0.0.1:6379), on a prefix of their own.
const redisUrl = process.env['TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';

const open: Array<{ delivery: FrameDelivery; connections: RedisConnections }> = [];
afterEach(async () => {
  for (const { delivery, connections } of open.splice(0)) {
    await delivery.close();
    await connections.close().catch(() => {});
  }
});

async function startDelivery(prefix: string, processId: string) {
  const connections = await connectRedis({ url: redisUrl, prefix });
  const received: DeliveredFrame[] = [];
  const delivery = await FrameDelivery.start({ ...connections, processId }, (frame) =>
    received.push(frame),
  );
  open.push({ delivery, connections });
  return { delivery, received };
}

/** Polls the condition for up to 10 s. */
const until = (condition: () => boolean, what: string, limitMs = 10_000) =>
  waitFor(condition, what, limitMs);

describe('FrameDelivery on Redis', () => {
  it('gives a frame to the process that holds its connections, bytes intact and in order', async () => {
    const prefix = `test:${randomUUID()}:`;
    const a = await startDelivery(prefix, 'A');
    const b = await startDelivery(prefix, 'B');
    // A 2NN-sized model in a train frame, then the notice that closes the round.
    const weights = new Uint8Array(199_210 * 4).map((_, i) => (i * 37) & 0xff);
    const train = { runId: 'r1', round: 3, deadline: 1_700_000_000_000, weights };
    expect(
      await a.delivery.send('B', { event: 'train', args: [train], connections: ['s1', 's2'] }),
    ).toBe(true);
    expect(
      await a.delivery.send('B', {
        event: 'round-closed',
        args: [{ runId: 'r1', round: 3, reason: 'deadline' }],
        connections: ['s2'],
      }),
    ).toBe(true);
    await until(() => b.received.length === 2, 'both frames on B');
    expect(a.received).toEqual([]);
    const [first, second] = b.received as [DeliveredFrame, DeliveredFrame];
    expect(first.event).toBe('train');
    expect(first.connections).toEqual(['s1', 's2']);
    const delivered = (first.args[0] as { weights: Uint8Array }).weights;
    expect(delivered).toBeInstanceOf(Uint8Array);
    expect(Buffer.compare(Buffer.from(delivered), Buffer.from(weights))).toBe(0);
    expect(first.args[0]).toMatchObject({ runId: 'r1', round: 3, deadline: 1_700_000_000_000 });
    expect(second).toEqual({
      event: 'round-closed',
      args: [{ runId: 'r1', round: 3, reason: 'deadline' }],
      connections: ['s2'],
    });
  });

  it('says when no process listens for the frame (the process is gone)', async () => {
    const prefix = `test:${randomUUID()}:`;
    const a = await startDelivery(prefix, 'A');
    const b = await startDelivery(prefix, 'B');
    await b.delivery.close();
    expect(await a.delivery.send('B', { event: 'train', args: [{}], connections: ['s1'] })).toBe(
      false,
    );
    expect(
      await a.delivery.send('nobody', { event: 'train', args: [{}], connections: ['s1'] }),
    ).toBe(false);
  });
});
