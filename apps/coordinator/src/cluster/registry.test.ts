import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { testSession as session } from '../testing/sessions.js';
import { connectRedis, type RedisConnections } from './redis.js';
import { ClusterClientRegistry } from './registry.js';

// Two registries on real Redis (CI runs it at 127.0.0.1:6379), each with its own connections as
// two coordinator processes would have, on a prefix of their own so parallel tests never meet.
const redisUrl = process.env['TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const HEARTBEAT_MS = 600;

const until = async (condition: () => boolean, what: string, timeoutMs = 10_000) => {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};

const open: Array<{ registry: ClusterClientRegistry; connections: RedisConnections }> = [];
afterEach(async () => {
  for (const { registry, connections } of open.splice(0)) {
    await registry.close();
    await connections.close().catch(() => {});
  }
});

async function startRegistry(prefix: string, processId: string) {
  const connections = await connectRedis({ url: redisUrl, prefix });
  const registry = await ClusterClientRegistry.start({
    ...connections,
    processId,
    heartbeatMs: HEARTBEAT_MS,
  });
  open.push({ registry, connections });
  return { registry, connections };
}

describe('ClusterClientRegistry on Redis', () => {
  it('shares sessions, tasks and back-offs between processes; a newcomer reads the snapshot', async () => {
    const prefix = `test:${randomUUID()}:`;
    const a = await startRegistry(prefix, 'A');
    const b = await startRegistry(prefix, 'B');
    a.registry.add(session('alice'));
    b.registry.add(session('bob'));
    await until(() => a.registry.list().length === 2 && b.registry.list().length === 2, 'sync');
    expect(b.registry.homeOf('alice')).toBe('A');
    // Per-process figures (/metrics, /healthz) count only the connections a process holds.
    expect(a.registry.connectedHere().map((s) => s.clientId)).toEqual(['alice']);
    expect(b.registry.connectedHere().map((s) => s.clientId)).toEqual(['bob']);
    expect(a.registry.eligible('fed').sort()).toEqual(['alice', 'bob']);

    // B's engine takes both into its round: A sees them busy, so A's runs cannot sample them.
    b.registry.assign(['alice', 'bob'], { runId: 'r1', round: 1, phase: 'train' });
    await until(() => a.registry.idle('fed').length === 0, 'the assignment on A');
    expect(a.registry.get('alice')?.task).toEqual({ runId: 'r1', round: 1, phase: 'train' });
    b.registry.release('alice', 'r1');
    await until(() => a.registry.get('alice')?.task === null, 'the release on A');

    // A back-off set by the run's owner ends when the client's own process hears from it.
    b.registry.timedOut('alice');
    await until(() => a.registry.backoffUntil('alice') !== null, 'the back-off on A');
    a.registry.touch('alice');
    await until(() => b.registry.backoffUntil('alice') === null, 'the back-off to end on B');

    const c = await startRegistry(prefix, 'C');
    expect(
      c.registry
        .list()
        .map((s) => s.clientId)
        .sort(),
    ).toEqual(['alice', 'bob']);
    expect(c.registry.homeOf('bob')).toBe('B');
  });

  it('a process that starts while a round is open knows which clients it holds are busy', async () => {
    const prefix = `test:${randomUUID()}:`;
    const a = await startRegistry(prefix, 'A');
    a.registry.add(session('alice'));
    a.registry.add(session('bob'));
    a.registry.assign(['alice'], { runId: 'r1', round: 2, phase: 'train' });
    // A late process: it hears of no assignment, it reads the table.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const late = await startRegistry(prefix, 'late');
    expect(late.registry.get('alice')?.task).toEqual({ runId: 'r1', round: 2, phase: 'train' });
    expect(late.registry.eligible('fed')).toEqual(['bob']);
    // A release reaches it on the channel, and leaves the table.
    a.registry.release('alice', 'r1');
    await until(() => late.registry.get('alice')?.task === null, 'the release on the late one');
    // The release's HDEL is asynchronous: the table is read a moment after it.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await a.connections.commands.hGetAll(`${prefix}tasks`)).toEqual({});
    a.registry.assign(['bob'], { runId: 'r1', round: 3, phase: 'train' });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const third = await startRegistry(prefix, 'third');
    expect(third.registry.eligible('fed')).toEqual(['alice']);
  });

  it('a newer connection on another process replaces the old one everywhere', async () => {
    const prefix = `test:${randomUUID()}:`;
    const a = await startRegistry(prefix, 'A');
    const b = await startRegistry(prefix, 'B');
    const goneOnA: string[] = [];
    a.registry.on('disconnected', (s) => goneOnA.push(s.connectionId));
    a.registry.add(session('alice', 'socket-on-a'));
    await until(() => b.registry.get('alice') !== undefined, 'alice on B');
    b.registry.add(session('alice', 'socket-on-b'));
    await until(() => a.registry.get('alice')?.connectionId === 'socket-on-b', 'the new one on A');
    expect(goneOnA).toEqual(['socket-on-a']);
    // The old socket's own disconnect, on A, no longer removes the newer session.
    expect(a.registry.remove('alice', 'socket-on-a')).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(b.registry.get('alice')?.connectionId).toBe('socket-on-b');
    expect(a.registry.homeOf('alice')).toBe('B');
  });

  it('a process that dies without a word loses its clients and the tasks it assigned', async () => {
    const prefix = `test:${randomUUID()}:`;
    const a = await startRegistry(prefix, 'A');
    const b = await startRegistry(prefix, 'B');
    a.registry.add(session('on-a'));
    b.registry.add(session('on-b'));
    await until(() => b.registry.list().length === 2 && a.registry.list().length === 2, 'sync');
    // A owns a run and takes B's client into its round, then dies: its connections are cut.
    a.registry.assign(['on-b', 'on-a'], { runId: 'r1', round: 3, phase: 'train' });
    await until(() => b.registry.idle('fed').length === 0, 'the assignment on B');
    const dropped: string[] = [];
    b.registry.on('disconnected', (s) => dropped.push(s.clientId));
    a.connections.commands.destroy();
    a.connections.subscriber.destroy();

    await until(() => b.registry.get('on-a') === undefined, "A's client to leave B", 10_000);
    expect(dropped).toEqual(['on-a']);
    // Freed: the new owner of A's run may sample it again.
    expect(b.registry.eligible('fed')).toEqual(['on-b']);
  });
});
