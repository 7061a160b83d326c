import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { testSession as session } from '../testing/sessions.js';
import { waitFor } from '../testing/wait-for.js';
import { connectRedis, type RedisConnections } from './redis.js';
import { ClusterClientRegistry } from './registry.js';

// Two registries on real Redis (CI runs it at 127.0.0.1:6379), each with its own connections as
// two coordinator processes would have, on a prefix of their own so parallel tests never meet.
const redisUrl = process.env['TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const HEARTBEAT_MS = 600;

/** Polls the condition for up to 10 s. */
const until = (condition: () => boolean, what: string, limitMs = 10_000) =>
  waitFor(condition, what, limitMs);

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
    expect(
      await b.registry.claim(['alice', 'bob'], { runId: 'r1', round: 1, phase: 'train' }),
    ).toEqual(['alice', 'bob']);
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
    await a.registry.claim(['alice'], { runId: 'r1', round: 2, phase: 'train' });
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
    await a.registry.claim(['bob'], { runId: 'r1', round: 3, phase: 'train' });
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
    await a.registry.claim(['on-b', 'on-a'], { runId: 'r1', round: 3, phase: 'train' });
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

  it('two processes that sample the same idle clients at once: each client is claimed once', async () => {
    const prefix = `test:${randomUUID()}:`;
    const a = await startRegistry(prefix, 'A');
    const b = await startRegistry(prefix, 'B');
    const ids = Array.from({ length: 40 }, (_, i) => `client-${i}`);
    for (const [i, id] of ids.entries()) (i % 2 === 0 ? a : b).registry.add(session(id));
    await until(
      () => a.registry.list().length === ids.length && b.registry.list().length === ids.length,
      'sync',
    );
    const onA = { runId: 'run-owned-by-a', round: 1, phase: 'train' } as const;
    const onB = { runId: 'run-owned-by-b', round: 4, phase: 'train' } as const;
    // Both see every client idle and draw them in the same turn (two runs of one federation).
    expect(a.registry.eligible('fed')).toHaveLength(ids.length);
    expect(b.registry.eligible('fed')).toHaveLength(ids.length);
    // Opposite orders, so each script wins some fields before the other runs (Redis runs one
    // script at a time: whichever runs first takes all, unless their requests interleave).
    const [wonByA, wonByB] = await Promise.all([
      a.registry.claim(ids, onA),
      b.registry.claim([...ids].reverse(), onB),
    ]);
    expect(wonByA.length + wonByB.length).toBe(ids.length);
    expect(wonByA.filter((id) => wonByB.includes(id))).toEqual([]);
    // Once the winners' news has crossed, both processes agree on every client's task.
    const expected = (id: string) => (wonByA.includes(id) ? onA : onB);
    for (const registry of [a.registry, b.registry])
      await until(
        () => ids.every((id) => registry.get(id)?.task?.runId === expected(id).runId),
        'the winners everywhere',
      );
    expect(a.registry.eligible('fed')).toEqual([]);
    const table = await a.connections.commands.hGetAll(`${prefix}tasks`);
    for (const id of ids)
      expect((JSON.parse(table[id] ?? 'null') as { task: unknown }).task).toEqual(expected(id));
    // A loser's claim after the winner released: free again, and claimed.
    const first = wonByA[0] ?? (wonByB[0] as string);
    const winner = wonByA.includes(first) ? a.registry : b.registry;
    const loser = winner === a.registry ? b.registry : a.registry;
    expect(await loser.claim([first], { runId: 'late', round: 9, phase: 'evaluate' })).toEqual([]);
    // The lost claim gave the client back the winner's task, as the loser knew it.
    expect(loser.get(first)?.task).toEqual(expected(first));
    winner.release(first, expected(first).runId);
    // The release is told after its field is deleted (one connection, in order): once the
    // loser hears it, its claim finds the field free.
    await until(() => loser.get(first)?.task === null, 'the release');
    expect(await loser.claim([first], { runId: 'late', round: 9, phase: 'evaluate' })).toEqual([
      first,
    ]);
  });

  it('a task field left by a dead process or by a closed connection does not hold a client', async () => {
    const prefix = `test:${randomUUID()}:`;
    const a = await startRegistry(prefix, 'A');
    a.registry.add(session('alice'));
    a.registry.add(session('bob'));
    const task = { runId: 'r1', round: 1, phase: 'train' } as const;
    // Left in the table: alice by a process whose liveness key is gone, bob before his
    // connection opened (a task of the connection he had before).
    const stale = (assigner: string, at: number) => JSON.stringify({ task, assigner, at });
    await a.connections.commands.hSet(`${prefix}tasks`, {
      alice: stale('gone-process', Date.now()),
      bob: stale('A', 0),
    });
    expect(await a.registry.claim(['alice', 'bob'], task)).toEqual(['alice', 'bob']);
    // A live claim holds: a second one finds both taken.
    const b = await startRegistry(prefix, 'B');
    await until(() => b.registry.idle('fed').length === 0, 'the claims on B');
    expect(await b.registry.claim(['alice'], { ...task, runId: 'r2' })).toEqual([]);
  });
});
