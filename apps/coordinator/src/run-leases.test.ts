import type { Database } from '@tessera/db';
import { weightsToBytes } from '@tessera/protocol';
import { beforeAll, describe, expect, it } from 'vitest';
import { RunEngine } from './engine.js';
import { createLogger } from './logger.js';
import { LocalClientRegistry } from './registry.js';
import { processOwnerId, RunLeases } from './run-leases.js';
import {
  baseConfig,
  fakeSession,
  PARAMS,
  useTestDatabase,
  waitFor,
} from './testing/engine-harness.js';
import { InMemoryTransport, type SentMessage } from './testing/memory-transport.js';

/**
 * Run leases in the coordinator: the manager's renewals (kept, lost, released) and the fence
 * an engine carries, over a real PGlite database. The real-process failover (two coordinators,
 * SIGKILL) is test/failover.test.ts.
 */

const testDatabase = useTestDatabase('leases');
let db: Database;

beforeAll(() => {
  db = testDatabase.db;
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A running run with one connected (fake) client that answers only when told to. */
async function runningRunWithClient() {
  const federation = await db.federations.create({ name: `leases ${Math.random()}` });
  const { client } = await db.clients.issueToken({
    federationId: federation.id,
    organisation: 'org-0',
  });
  const run = await db.runs.create({ federationId: federation.id, config: baseConfig });
  const registry = new LocalClientRegistry();
  const transport = new InMemoryTransport();
  const received: SentMessage[] = [];
  transport.connect(client.id, (message) => received.push(message));
  registry.add(fakeSession(federation.id, client.id));
  return { run, clientId: client.id, registry, transport, received };
}

describe('a former owner whose lease was taken over', () => {
  it('cannot commit: its commit is refused, nothing is written, the run stays running for the new owner', async () => {
    const { run, clientId, registry, transport, received } = await runningRunWithClient();
    await db.runs.transition(run.id, 'running', ['created']);
    const fenceA = await db.leases.acquire(run.id, 'coordinator-a', 1_000);
    expect(fenceA).not.toBeNull();
    const logs: string[] = [];
    const engineA = new RunEngine(
      {
        db,
        registry,
        transport,
        logger: createLogger('debug', (line) => logs.push(line)),
        centralEvaluator: null,
        fence: { owner: 'coordinator-a', token: fenceA?.token ?? 0 },
      },
      await db.runs.get(run.id),
    );
    // Evaluations are answered at once (failed: no data), so that a commit that went through
    // (the fence ignored) ends the run quickly instead of waiting out the deadline.
    transport.connect(clientId, (message) => {
      received.push(message);
      if (message.event !== 'evaluate') return;
      registry.touch(clientId);
      engineA.handleEvaluation(clientId, {
        status: 'failed',
        runId: run.id,
        round: message.payload.round,
        error: { message: 'no held-out data' },
      });
    });
    const finished: unknown[] = [];
    engineA.on('run-finished', (event) => finished.push(event));
    const doneA = engineA.execute();
    const train = await waitFor(
      () => received.find((message) => message.event === 'train'),
      'the round to start',
    );

    // A is "paused" mid-round (nothing renews its lease): it expires, and B takes the run over.
    await sleep(1_100);
    const taken = await db.leases.acquire(run.id, 'coordinator-b', 60_000);
    expect(taken).toMatchObject({ owner: 'coordinator-b', token: (fenceA?.token ?? 0) + 1 });

    // A wakes up: the client's update closes the round, and A tries to commit it.
    registry.touch(clientId);
    engineA.handleUpdate(clientId, {
      status: 'ok',
      runId: run.id,
      round: train.payload.round,
      weights: new Uint8Array(weightsToBytes(new Float32Array(PARAMS).fill(1))),
      numExamples: 10,
      durationMs: 5,
      metrics: { loss: 1 },
    });
    await doneA;

    expect(await db.rounds.list(run.id)).toEqual([]);
    expect((await db.rounds.latestCheckpoint(run.id))?.round).toBe(0);
    const stored = await db.runs.get(run.id);
    expect(stored.status).toBe('running');
    expect(stored.currentRound).toBe(0);
    expect(finished).toEqual([]);
    expect(logs.some((line) => line.includes('run taken over by another coordinator'))).toBe(true);
    expect(logs.some((line) => line.includes('run failed'))).toBe(false);
    // B's lease is untouched by A's attempt.
    expect(await db.leases.get(run.id)).toMatchObject({ owner: 'coordinator-b', token: 2 });
  });
});

describe('RunLeases', () => {
  it('keeps a held lease past its ttl by renewing it, and releases it for another owner at once', async () => {
    const { run } = await runningRunWithClient();
    await db.runs.transition(run.id, 'running', ['created']);
    const leases = new RunLeases(db.leases, processOwnerId(), 1_200, createLogger('error'));
    const fence = await leases.acquire(run.id);
    expect(fence).toMatchObject({ owner: leases.owner, token: 1 });
    if (fence === null) return;
    let lost = 0;
    leases.hold(run.id, fence, () => lost++);
    await sleep(2_500);
    expect(await db.leases.acquire(run.id, 'someone-else', 60_000)).toBeNull();
    expect(await db.leases.orphanedRunningRuns()).not.toContain(run.id);
    expect(lost).toBe(0);
    await leases.release(run.id);
    expect(await db.leases.orphanedRunningRuns()).toContain(run.id);
    expect(await db.leases.acquire(run.id, 'someone-else', 60_000)).toMatchObject({ token: 2 });
  });

  it('calls onLost once when a renewal finds the lease taken over, and stops renewing', async () => {
    const { run } = await runningRunWithClient();
    await db.runs.transition(run.id, 'running', ['created']);
    const logs: string[] = [];
    const leases = new RunLeases(
      db.leases,
      'owner-a',
      1_500,
      createLogger('warn', (line) => logs.push(line)),
    );
    const fence = await leases.acquire(run.id);
    if (fence === null) throw new Error('no lease');
    let lost = 0;
    leases.hold(run.id, fence, () => lost++);
    // Taken over behind its back (released as if expired, then acquired by B).
    await db.leases.release(run.id, fence);
    await db.leases.acquire(run.id, 'owner-b', 60_000);
    await waitFor(() => lost === 1, 'the lost lease to be noticed');
    await sleep(1_200);
    expect(lost).toBe(1);
    expect(leases.fenceOf(run.id)).toBeUndefined();
    expect(logs.some((line) => line.includes('run lease lost to another coordinator'))).toBe(true);
    expect(await db.leases.get(run.id)).toMatchObject({ owner: 'owner-b', token: 2 });
  });
});
