import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  decodeStrategyState,
  type EvaluationResult,
  ExactWeightedSum,
  encodeStrategyState,
  WeightedSum,
} from '@tessera/aggregation';
import { createRng } from '@tessera/data';
import {
  type Database,
  defaultMigrationsDir,
  openDatabase,
  type RunConfigInput,
} from '@tessera/db';
import { bytesToWeights, ErrorCode, TesseraError, weightsToBytes } from '@tessera/protocol';
import { verifyRun } from '@tessera/research';
import { beforeAll, describe, expect, it } from 'vitest';
import type { CentralEvaluator, RunEngine } from './engine.js';
import type { TimeoutBackoff } from './registry.js';
import { deriveSeed } from './seeds.js';
import {
  type Behaviour,
  baseConfig,
  connect,
  constantWeights,
  contextFor as contextOf,
  createFederation as createTestFederation,
  type Federation,
  honest,
  PARAMS,
  referenceSample,
  type Started,
  type StartOptions,
  silent,
  startEngine,
  useTestDatabase,
  waitFor,
} from './testing/engine-harness.js';
import type { SentMessage } from './testing/memory-transport.js';

/**
 * The round engine's rules, each pinned over the in-memory Transport, a real ClientRegistry
 * and a real PGlite database in a temporary folder. Fake clients are plain functions that
 * answer the messages the transport delivers, through the same calls the Socket.IO edge
 * makes (registry.touch, then engine.handleUpdate / handleEvaluation).
 */

const testDatabase = useTestDatabase('engine');
let db: Database;
let federationCount = 0;

beforeAll(() => {
  db = testDatabase.db;
});

interface Setup extends Omit<StartOptions, 'logLevel' | 'evaluationExamples'> {
  clients?: number;
  backoff?: TimeoutBackoff;
  federation?: Federation;
}

const createFederation = (count: number, backoff?: TimeoutBackoff): Promise<Federation> =>
  createTestFederation(db, count, { name: `engine test ${++federationCount}`, backoff });

/**
 * Starts an engine on a new (or the given) run; a new federation's clients are connected
 * first. Its log lines (debug) go to `fed.logs`; every evaluation reply counts 10 examples.
 */
async function start(setup: Setup = {}): Promise<Started> {
  const fed = setup.federation ?? (await createFederation(setup.clients ?? 2, setup.backoff));
  if (setup.federation === undefined) for (const clientId of fed.clientIds) connect(fed, clientId);
  return startEngine(db, fed, { ...setup, logLevel: 'debug', evaluationExamples: () => 10 });
}

/** `start` on an existing federation whose clients are connected already. */
const startWith = (fed: Federation, options: Omit<Setup, 'federation' | 'clients'>) =>
  start({ ...options, federation: fed });

const contextFor = (
  fed: Federation,
  engine: RunEngine,
  clientId: string,
  index: number,
  message: SentMessage,
) => contextOf(fed, engine, clientId, index, message, () => 10);

const acksOf = (fed: Federation, clientId: string) =>
  fed.acks.filter((ack) => ack.clientId === clientId).map((ack) => ack.code);

describe('RunEngine over an in-memory transport', () => {
  it('samples clientsPerRound eligible clients per round, reproducibly from the run seed', async () => {
    const s = await start({ clients: 6, config: { rounds: 2, clientsPerRound: 3, seed: 11 } });
    await s.done;
    expect(s.finished).toEqual([{ status: 'completed' }]);
    const ids = s.fed.clientIds;
    for (const round of [1, 2]) {
      const rng = createRng(deriveSeed(2, 11, { purpose: 'sample', round, attempt: 1 }));
      const expected = referenceSample(ids, 3, () => rng.next());
      expect(s.started[round - 1]).toEqual({ round, attempt: 1, selected: expected });
      const record = await db.rounds.get(s.run.id, round);
      expect(new Set(record.participantClientIds)).toEqual(new Set(expected));
      // Only the sampled clients were sent the model to train.
      const trained = s.fed.transport.sent
        .filter((m) => m.event === 'train' && m.payload.round === round)
        .map((m) => m.clientId);
      expect(trained.sort()).toEqual(expected);
    }
    // The whole federation was asked to evaluate each round.
    expect(s.fed.transport.sent.filter((m) => m.event === 'evaluate')).toHaveLength(12);
  });

  it('asks for ceil(fractionFit x eligible) clients, at least minClients, and waits until that many are connected', async () => {
    const fed = await createFederation(5);
    const [first, ...others] = fed.clientIds as [string, ...string[]];
    connect(fed, first);
    const s = await startWith(fed, { config: { rounds: 2, fractionFit: 0.1, minClients: 2 } });
    // One client is not enough for minClients 2: no round starts (the engine re-checks every second).
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(s.started).toEqual([]);
    expect(fed.transport.sent).toEqual([]);
    for (const id of others) connect(fed, id);
    await s.done;
    // ceil(0.1 x 5) = 1, raised to minClients = 2.
    expect(s.started.map((e) => e.selected.length)).toEqual([2, 2]);
    const wide = await startWith(fed, { config: { rounds: 1, fractionFit: 0.5, minClients: 1 } });
    await wide.done;
    // ceil(0.5 x 5) = 3.
    expect(wide.started.map((e) => e.selected.length)).toEqual([3]);
  });

  it('aggregates the updates by examples and records the round (FedAvg, hand-computed)', async () => {
    const s = await start({ clients: 2 });
    await s.done;
    const record = await db.rounds.get(s.run.id, 1);
    // Client 0 sends weights of 1 with 10 examples, client 1 weights of 2 with 20.
    expect(record.numExamples).toBe(30);
    expect(record.trainLoss).toBeCloseTo((10 * 1 + 20 * 2) / 30, 12);
    const checkpoint = await db.rounds.checkpoint(s.run.id, 1);
    const weights = bytesToWeights(checkpoint.weights, PARAMS);
    expect(weights[0]).toBeCloseTo(5 / 3, 6);
    expect(weights[PARAMS - 1]).toBeCloseTo(5 / 3, 6);
    expect(record.status).toBe('evaluated');
    expect(record.federatedNumExamples).toBe(20);
  });

  it("records each update's sha256 of the bytes the client sent, whether its bytes are kept or not", async () => {
    const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
    for (const keepUpdates of [false, true]) {
      const s = await start({ clients: 3, config: { keepUpdates } });
      await s.done;
      const updates = await db.rounds.updates(s.run.id, 1);
      expect(updates).toHaveLength(3);
      // Client k sent weights of k + 1 (its organisation is org-k).
      const expected = new Map(
        s.fed.clientIds.map((id, k) => [id, sha256(constantWeights(k + 1))] as const),
      );
      for (const update of updates) expect(update.sha256).toBe(expected.get(update.clientId));
    }
  });

  it("records each round's phases back to back, with central evaluation beside the next round", async () => {
    const TRAIN_MS = 300;
    const EVALUATE_MS = 200;
    // Longer than the federated evaluation: the loop would wait for it, were it on its path.
    const CENTRAL_MS = 600;
    const LATE_MS = 250;
    const slow: Behaviour = (message, ctx) => {
      if (message.event === 'train') setTimeout(() => ctx.update({}), TRAIN_MS);
      if (message.event === 'evaluate') setTimeout(() => ctx.evaluation({}), EVALUATE_MS);
    };
    const central: CentralEvaluator = {
      evaluate: () =>
        new Promise((resolve) =>
          setTimeout(() => resolve({ loss: 0.25, accuracy: 0.5, numExamples: 100 }), CENTRAL_MS),
        ),
    };
    // The second client connects a while after round 1 began to wait for it (clientsPerRound 2).
    const fed = await createFederation(2);
    const [early, late] = fed.clientIds as [string, string];
    connect(fed, early);
    const began = performance.now();
    const s = await startWith(fed, {
      config: { rounds: 2, clientsPerRound: 2, minClients: 2 },
      behaviours: { 0: slow, 1: slow },
      centralEvaluator: central,
    });
    await waitFor(() => fed.logs.some((line) => line.includes('waiting for clients')), 'a wait');
    setTimeout(() => connect(fed, late), LATE_MS);
    const at = { started: [] as number[], committed: [] as number[], evaluated: [] as number[] };
    s.engine.on('round-started', () => at.started.push(performance.now()));
    s.engine.on('round-committed', () => at.committed.push(performance.now()));
    s.engine.on('round-evaluated', () => at.evaluated.push(performance.now()));
    await s.done;
    expect(s.finished).toEqual([{ status: 'completed' }]);
    const time = (what: keyof typeof at, index: number) => at[what][index] as number;

    // Round 2 began before round 1's central evaluation was done: it ran beside round 2.
    expect(time('started', 1)).toBeLessThan(time('evaluated', 0));
    const rounds = await db.rounds.list(s.run.id);
    for (const [index, record] of rounds.entries()) {
      const phases = record.phases;
      if (phases === null) throw new Error(`round ${record.number} has no phases`);
      // The announced record is the stored one, phases included.
      expect(s.evaluated[index]?.record).toEqual(record);
      // The commit's own record was written before the commit and evaluation were timed.
      expect(s.committed[index]?.record.phases).toEqual({
        ...phases,
        commitMs: null,
        evaluationMs: null,
        centralEvaluationMs: null,
      });
      // Less a millisecond per phase: setTimeout may fire up to 1 ms early, and each is rounded.
      expect(phases.trainingMs).toBeGreaterThanOrEqual(TRAIN_MS - 2);
      expect(phases.evaluationMs).toBeGreaterThanOrEqual(EVALUATE_MS - 2);
      expect(phases.centralEvaluationMs).toBeGreaterThanOrEqual(CENTRAL_MS - 2);
      expect(phases.commitMs).toBeGreaterThan(0);
      const sum =
        phases.waitingMs +
        phases.distributionMs +
        phases.trainingMs +
        phases.aggregationMs +
        (phases.commitMs ?? 0) +
        (phases.evaluationMs ?? 0);
      // Back to back, the central evaluation not among them: round 1's phases end before
      // round 2 is sampled, round 2's begin after round 1's commit and end before its own
      // evaluation is recorded; never more than that.
      const [from, to] =
        index === 0 ? [began, time('started', 1)] : [time('committed', 0), time('evaluated', 1)];
      expect(sum).toBeLessThanOrEqual(to - from + 6);
      expect(sum).toBeGreaterThanOrEqual(TRAIN_MS + EVALUATE_MS - 4);
    }
    expect(rounds[0]?.phases?.waitingMs).toBeGreaterThanOrEqual(LATE_MS - 2);
  });

  it('commits a round only with minClients updates, and retries it with a new sample', async () => {
    let attempts = 0;
    const flaky: Behaviour = (message, ctx) => {
      if (message.event === 'train') {
        attempts++;
        ctx.update(attempts === 1 ? 'failed' : {});
      } else honest(message, ctx);
    };
    const s = await start({ clients: 2, config: { minClients: 2 }, behaviours: { 1: flaky } });
    await s.done;
    expect(s.finished).toEqual([{ status: 'completed' }]);
    expect(s.started.map(({ round, attempt }) => [round, attempt])).toEqual([
      [1, 1],
      [1, 2],
    ]);
    expect(s.committed).toHaveLength(1);
    const record = await db.rounds.get(s.run.id, 1);
    expect(record.metrics['attempt']).toBe(2);
    expect(record.participantClientIds).toHaveLength(2);
    // Every attempt of a round carries the same shuffle seed.
    const seeds = s.fed.transport.sent
      .filter((m) => m.event === 'train')
      .map((m) => (m.event === 'train' ? m.payload.config.seed : null));
    expect(new Set(seeds).size).toBe(1);
  });

  it('gives the run up as failed after maxRoundAttempts attempts with too few updates; nothing is committed', async () => {
    const failing: Behaviour = (message, ctx) => {
      if (message.event === 'train') ctx.update('failed');
      if (message.event === 'evaluate') ctx.evaluation({});
    };
    const s = await start({
      clients: 2,
      config: { minClients: 2 },
      maxRoundAttempts: 3,
      behaviours: { 1: failing },
    });
    await s.done;
    expect(s.started.map((e) => e.attempt)).toEqual([1, 2, 3]);
    expect(s.finished).toEqual([
      { status: 'failed', error: 'round 1 got fewer than 2 updates in 3 attempts' },
    ]);
    expect(await db.rounds.list(s.run.id)).toEqual([]);
    expect((await db.runs.get(s.run.id)).status).toBe('failed');
  });

  it('closes a round at its deadline: the silent client is dropped, told round-closed, and its late update refused', async () => {
    let lateAck: string | null = null;
    const late: Behaviour = (message, ctx) => {
      if (message.event === 'round-closed') lateAck = ctx.update({});
    };
    const s = await start({
      clients: 2,
      config: { roundDeadlineMs: 2500 },
      behaviours: { 1: late },
    });
    await s.done;
    const [, lateId] = s.fed.clientIds as [string, string];
    const record = await db.rounds.get(s.run.id, 1);
    expect(record.participantClientIds).toEqual([s.fed.clientIds[0]]);
    expect(record.droppedClientIds).toEqual([lateId]);
    expect(s.fed.transport.sentTo(lateId, 'round-closed')[0]?.payload).toMatchObject({
      round: 1,
      reason: 'training deadline passed',
    });
    await waitFor(() => lateAck, 'the late update to be answered');
    expect(lateAck).toBe('WRONG_ROUND');
    const updates = await db.rounds.updates(s.run.id, 1);
    expect(updates.map((u) => u.clientId)).toEqual([s.fed.clientIds[0]]);
  });

  it('leaves a client that timed out out of the next evaluation and rounds (back-off)', async () => {
    const s = await start({
      clients: 3,
      config: { rounds: 3, roundDeadlineMs: 2500 },
      behaviours: { 2: silent },
    });
    await s.done;
    const silentId = s.fed.clientIds[2] as string;
    expect(s.finished).toEqual([{ status: 'completed' }]);
    // Round 1 waited for it once; from then on it was neither asked to evaluate nor sampled.
    expect(s.started.map((e) => e.selected.includes(silentId))).toEqual([true, false, false]);
    expect(s.fed.transport.sentTo(silentId, 'evaluate')).toEqual([]);
    expect(s.fed.transport.sentTo(silentId, 'train')).toHaveLength(1);
    expect(s.fed.registry.backoffUntil(silentId)).toBe(s.fed.clock.now + 60_000);
  });

  it.each([
    ['it sends any frame (e.g. progress)', (fed: Federation, id: string) => fed.registry.touch(id)],
    [
      'its back-off time has passed',
      (fed: Federation) => {
        fed.clock.now += 60_000;
      },
    ],
  ])('samples a timed-out client again once %s', async (_what, revive) => {
    let trainCount = 0;
    const wakesUp: Behaviour = (message, ctx) => {
      if (message.event === 'train' && ++trainCount > 1) ctx.update({});
      if (message.event === 'evaluate') ctx.evaluation({});
    };
    const fed = await createFederation(2);
    for (const id of fed.clientIds) connect(fed, id);
    const sleeperId = fed.clientIds[1] as string;
    const s = await startWith(fed, {
      config: { rounds: 2, roundDeadlineMs: 2500 },
      behaviours: { 1: wakesUp },
      onCommitted: (round) => {
        if (round !== 1) return;
        expect(fed.registry.backoffUntil(sleeperId)).not.toBeNull();
        revive(fed, sleeperId);
      },
    });
    await s.done;
    expect(fed.registry.backoffUntil(sleeperId)).toBeNull();
    expect(s.started.map((e) => e.selected.includes(sleeperId))).toEqual([true, true]);
    expect(fed.transport.sentTo(sleeperId, 'evaluate')).toHaveLength(2);
    expect((await db.rounds.get(s.run.id, 2)).participantClientIds).toContain(sleeperId);
  });

  it('refuses a duplicate update and a reply from a client that was not sampled; neither is stored', async () => {
    const fed = await createFederation(3);
    const [a, b, outsider] = fed.clientIds as [string, string, string];
    // The outsider is not connected, so it is never sampled; it replies all the same.
    connect(fed, a);
    connect(fed, b);
    let firstAck = '';
    let taskOfAWhileOpen: unknown = 'unset';
    const twice: Behaviour = (message, ctx) => {
      if (message.event === 'train') {
        firstAck = ctx.update({});
        ctx.update({ weights: constantWeights(1000) });
      } else honest(message, ctx);
    };
    // The other client answers only once the duplicate was refused, so the round is still open.
    const waits: Behaviour = (message, ctx) => {
      if (message.event === 'train')
        void waitFor(() => acksOf(fed, a).length === 2, 'the duplicate').then(() => {
          // The round is still open, but a client whose update is in is free again.
          taskOfAWhileOpen = fed.registry.get(a)?.task ?? null;
          ctx.update({});
        });
      else honest(message, ctx);
    };
    const s = await startWith(fed, {
      config: { minClients: 2 },
      behaviours: { 0: twice, 1: waits },
    });
    const train = await waitFor(
      () => fed.transport.sent.find((m) => m.event === 'train'),
      'the round to start',
    );
    const ctx = contextFor(fed, s.engine, outsider, 2, { ...train, clientId: outsider });
    expect(ctx.update({})).toBe('NOT_SELECTED');
    await s.done;
    expect(firstAck).toBe('ok');
    expect(taskOfAWhileOpen).toBeNull();
    expect(acksOf(fed, a).slice(0, 2)).toEqual(['ok', 'DUPLICATE_UPDATE']);
    const updates = await db.rounds.updates(s.run.id, 1);
    expect(updates.map((u) => u.clientId).sort()).toEqual([a, b].sort());
    const checkpoint = await db.rounds.checkpoint(s.run.id, 1);
    // (10 * 1 + 20 * 2) / 30: the duplicate's weights of 1000 were not folded in.
    expect(bytesToWeights(checkpoint.weights, PARAMS)[0]).toBeCloseTo(5 / 3, 5);
  });

  it('drops a client that disconnects mid-round and closes the round without waiting for the deadline', async () => {
    const fed = await createFederation(3);
    for (const id of fed.clientIds) connect(fed, id);
    const [stays, leaver, leavesAfterUpdate] = fed.clientIds as [string, string, string];
    const leaves: Behaviour = (message) => {
      if (message.event === 'train') fed.registry.remove(leaver, `memory-${leaver}`);
    };
    // Its update was accepted before it left: it still counts.
    const updatesThenLeaves: Behaviour = (message, ctx) => {
      if (message.event === 'train') {
        ctx.update({});
        fed.registry.remove(leavesAfterUpdate, `memory-${leavesAfterUpdate}`);
      }
    };
    const s = await startWith(fed, { behaviours: { 1: leaves, 2: updatesThenLeaves } });
    await s.done;
    const record = await db.rounds.get(s.run.id, 1);
    expect(record.droppedClientIds).toEqual([leaver]);
    expect(record.participantClientIds.slice().sort()).toEqual([stays, leavesAfterUpdate].sort());
    // Dropped, not timed out: it is not backing off, and it was not told round-closed.
    expect(fed.registry.backoffUntil(leaver)).toBeNull();
    expect(fed.transport.sentTo(leaver, 'round-closed')).toEqual([]);
    // The deadline is 600 s: the round closed on the drop-out, not on the clock.
    expect(record.durationMs).toBeLessThan(60_000);
  });

  it("records each selected client's outcome with its reason: failed (its message, clipped, and its code), rejected (the refusal's code), dropped, timed out", async () => {
    const fed = await createFederation(5);
    for (const id of fed.clientIds) connect(fed, id);
    const [honestId, failerId, nanId, leaverId, silentId] = fed.clientIds as [
      string,
      string,
      string,
      string,
      string,
    ];
    // The decoder allows 2,000 characters; the record keeps 500.
    const longReason = `the CSV has 30 features; fedavg-2nn expects 784 ${'x'.repeat(1900)}`;
    const fails: Behaviour = (message, ctx) => {
      if (message.event !== 'train') return;
      const { runId, round } = message.payload;
      s.engine.handleUpdate(ctx.clientId, {
        status: 'failed',
        runId,
        round,
        error: { message: longReason, code: 'DATA_SHAPE_MISMATCH' },
      });
    };
    const sendsNaN: Behaviour = (message, ctx) => {
      if (message.event !== 'train') return;
      const weights = new Float32Array(PARAMS);
      weights[3] = Number.NaN;
      ctx.update({ weights: new Uint8Array(weightsToBytes(weights)) });
    };
    const leaves: Behaviour = (message) => {
      if (message.event === 'train') fed.registry.remove(leaverId, `memory-${leaverId}`);
    };
    const s = await startWith(fed, {
      config: { roundDeadlineMs: 2500 },
      behaviours: { 1: fails, 2: sendsNaN, 3: leaves, 4: silent },
    });
    await s.done;
    expect(acksOf(fed, nanId)).toEqual(['NON_FINITE_WEIGHTS']);
    const record = await db.rounds.get(s.run.id, 1);
    const byClient = new Map(record.outcomes.map((entry) => [entry.clientId, entry]));
    expect(record.outcomes.map((entry) => entry.clientId).sort()).toEqual(
      [...fed.clientIds].sort(),
    );
    expect(byClient.get(honestId)).toEqual({
      clientId: honestId,
      outcome: 'updated',
      code: null,
      reason: null,
    });
    const failed = byClient.get(failerId);
    expect(failed).toMatchObject({ outcome: 'failed', code: 'DATA_SHAPE_MISMATCH' });
    expect(failed?.reason).toHaveLength(500);
    expect(failed?.reason?.startsWith('the CSV has 30 features; fedavg-2nn expects 784')).toBe(
      true,
    );
    expect(byClient.get(nanId)).toMatchObject({ outcome: 'rejected', code: 'NON_FINITE_WEIGHTS' });
    expect(byClient.get(nanId)?.reason).toMatch(/finite/i);
    expect(byClient.get(leaverId)).toMatchObject({ outcome: 'dropped', reason: 'disconnected' });
    expect(byClient.get(silentId)).toMatchObject({
      outcome: 'timed-out',
      reason: 'deadline passed',
    });
    // The same record as the one announced at commit, and consistent with the id lists.
    expect(s.committed[0]?.record.outcomes).toEqual(record.outcomes);
    expect(record.participantClientIds).toEqual([honestId]);
    expect(record.droppedClientIds.slice().sort()).toEqual([leaverId, silentId].sort());
  });

  it('stops: closes the open round, tells pending clients "run stopped", commits nothing', async () => {
    const fed = await createFederation(3);
    for (const id of fed.clientIds) connect(fed, id);
    const [answered, ...pending] = fed.clientIds as [string, ...string[]];
    // One update is in (enough for minClients 1) when the stop comes: still nothing is committed.
    const s = await startWith(fed, { behaviours: { 1: silent, 2: silent } });
    await waitFor(() => acksOf(fed, answered).length === 1, 'the first update');
    s.engine.stop('stopped');
    await s.done;
    expect(s.finished).toEqual([{ status: 'stopped' }]);
    expect((await db.runs.get(s.run.id)).status).toBe('stopped');
    expect(await db.rounds.list(s.run.id)).toEqual([]);
    expect(s.committed).toEqual([]);
    for (const id of pending) {
      expect(fed.transport.sentTo(id, 'round-closed')[0]?.payload.reason).toBe('run stopped');
      // A stop is not the client's fault: no back-off.
      expect(fed.registry.backoffUntil(id)).toBeNull();
    }
    for (const id of fed.clientIds) expect(fed.registry.get(id)?.task).toBeNull();
  });

  it('waits for an eligible client instead of starting a round without one', async () => {
    const fed = await createFederation(1);
    connect(fed, fed.clientIds[0] as string);
    let trains = 0;
    // Silent in attempt 1 (it times out and backs off), answers from then on.
    const slowStarter: Behaviour = (message, ctx) => {
      if (message.event === 'train' && ++trains > 1) ctx.update({});
      if (message.event === 'evaluate') ctx.evaluation({});
    };
    const s = await startWith(fed, {
      config: { roundDeadlineMs: 2500 },
      behaviours: { 0: slowStarter },
    });
    await waitFor(
      () => s.started.length === 1 && fed.registry.backoffUntil(fed.clientIds[0] as string),
      'the timeout',
    );
    // Backing off, the only client is not eligible: attempt 2 must not start (the engine
    // re-checks every second).
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(s.started).toHaveLength(1);
    fed.clock.now += 60_000;
    await s.done;
    expect(s.finished).toEqual([{ status: 'completed' }]);
    expect(s.started.map((e) => [e.attempt, e.selected.length])).toEqual([
      [1, 1],
      [2, 1],
    ]);
  });

  it('pauses between rounds, and a new engine resumes from the next round', async () => {
    const fed = await createFederation(2);
    for (const id of fed.clientIds) connect(fed, id);
    const first = await startWith(fed, {
      config: { rounds: 3 },
      onEvaluated: (round, engine) => {
        if (round === 1) engine.stop('paused');
      },
    });
    await first.done;
    expect(first.finished).toEqual([{ status: 'paused' }]);
    expect((await db.rounds.list(first.run.id)).map((r) => r.number)).toEqual([1]);
    const second = await startWith(fed, { runId: first.run.id });
    await second.done;
    expect(second.finished).toEqual([{ status: 'completed' }]);
    expect(second.started.map((e) => e.round)).toEqual([2, 3]);
    expect((await db.rounds.list(first.run.id)).map((r) => r.status)).toEqual([
      'evaluated',
      'evaluated',
      'evaluated',
    ]);
  });

  it('refuses replies for another run or round, and takes a client with bad weights out of the round', async () => {
    const fed = await createFederation(2);
    for (const id of fed.clientIds) connect(fed, id);
    const codes: string[] = [];
    const confused: Behaviour = (message, ctx) => {
      if (message.event === 'evaluate') ctx.evaluation({});
      if (message.event !== 'train') return;
      const { runId, round } = message.payload;
      const weights = constantWeights(9);
      const reply = { status: 'ok' as const, numExamples: 5, durationMs: 1, metrics: {}, weights };
      const edge = (work: () => void) => {
        try {
          work();
          codes.push('ok');
        } catch (error) {
          codes.push((error as TesseraError).code);
        }
      };
      edge(() => s.engine.handleUpdate(ctx.clientId, { ...reply, runId: 'another-run', round }));
      edge(() => s.engine.handleUpdate(ctx.clientId, { ...reply, runId, round: round + 1 }));
      edge(() =>
        s.engine.handleEvaluation(ctx.clientId, {
          status: 'ok',
          runId,
          round,
          numExamples: 1,
          loss: 1,
          accuracy: 1,
        }),
      );
      // Still pending after those: the bad weights are its first reply that reaches the round.
      edge(() =>
        s.engine.handleUpdate(ctx.clientId, { ...reply, runId, round, weights: new Uint8Array(8) }),
      );
      edge(() => s.engine.handleUpdate(ctx.clientId, { ...reply, runId, round }));
    };
    const s = await startWith(fed, { behaviours: { 1: confused } });
    await s.done;
    expect(codes).toEqual([
      'WRONG_RUN',
      'WRONG_ROUND',
      'WRONG_ROUND',
      'WEIGHTS_LENGTH_MISMATCH',
      'DUPLICATE_UPDATE',
    ]);
    const record = await db.rounds.get(s.run.id, 1);
    expect(record.participantClientIds).toEqual([fed.clientIds[0]]);
    expect(record.metrics['rejected']).toBe(1);
    expect(record.numExamples).toBe(10);
    expect((await db.rounds.updates(s.run.id, 1)).map((u) => u.clientId)).toEqual([
      fed.clientIds[0],
    ]);
  });

  it('drops a revoked client from the open training round and evaluation; nothing it sends afterwards is kept', async () => {
    const fed = await createFederation(2);
    for (const id of fed.clientIds) connect(fed, id);
    const revokedId = fed.clientIds[1] as string;
    const afterRevocation: string[] = [];
    const revokedMidRound: Behaviour = (message, ctx) => {
      if (message.event === 'train') {
        // What Coordinator.revokeClient does once the token is revoked in the database.
        fed.registry.revoke(revokedId);
        afterRevocation.push(ctx.update({}));
      }
    };
    const s = await startWith(fed, {
      config: { rounds: 2 },
      behaviours: { 1: revokedMidRound },
    });
    await s.done;
    expect(s.finished).toEqual([{ status: 'completed' }]);
    expect(afterRevocation).toEqual(['NOT_SELECTED']);
    const round1 = await db.rounds.get(s.run.id, 1);
    expect(round1.droppedClientIds).toEqual([revokedId]);
    expect((await db.rounds.updates(s.run.id, 1)).map((u) => u.clientId)).toEqual([
      fed.clientIds[0],
    ]);
    // Gone from the registry: never asked to evaluate, never sampled again.
    expect(fed.registry.get(revokedId)).toBeUndefined();
    expect(fed.transport.sentTo(revokedId, 'evaluate')).toEqual([]);
    expect(s.started[1]?.selected).toEqual([fed.clientIds[0]]);
  });

  it('drops a client revoked during evaluation; its reply is refused and not counted', async () => {
    const fed = await createFederation(2);
    for (const id of fed.clientIds) connect(fed, id);
    const revokedId = fed.clientIds[1] as string;
    let ack = '';
    const revokedWhileEvaluating: Behaviour = (message, ctx) => {
      if (message.event === 'train') ctx.update({});
      if (message.event === 'evaluate') {
        fed.registry.revoke(revokedId);
        ack = ctx.evaluation({ numExamples: 1000, loss: 99 });
      }
    };
    const s = await startWith(fed, { behaviours: { 1: revokedWhileEvaluating } });
    await s.done;
    expect(ack).toBe('NOT_SELECTED');
    const record = await db.rounds.get(s.run.id, 1);
    expect(record.federatedNumExamples).toBe(10);
    expect(record.federatedLoss).toBe(0.5);
  });

  it('on resume, evaluates (federated and central) a round committed without its evaluation before training the next', async () => {
    const fed = await createFederation(2);
    for (const id of fed.clientIds) connect(fed, id);
    let firstEngine: RunEngine | null = null;
    // The first process dies while the round's evaluation is open: its record is never written.
    const dies: Behaviour = (message, ctx) => {
      if (message.event === 'train') ctx.update({});
      if (message.event === 'evaluate') firstEngine?.stop('shutdown');
    };
    const first = await startWith(fed, {
      config: { rounds: 2 },
      behaviours: { 0: dies, 1: dies },
    });
    firstEngine = first.engine;
    await first.done;
    expect(first.finished).toEqual([]);
    expect((await db.rounds.get(first.run.id, 1)).status).toBe('committed');
    expect((await db.runs.get(first.run.id)).status).toBe('running');

    const central: CentralEvaluator = {
      evaluate: async (): Promise<EvaluationResult> => ({
        loss: 0.25,
        accuracy: 0.875,
        numExamples: 10_000,
      }),
    };
    const sentBefore = fed.transport.sent.length;
    const second = await startWith(fed, { runId: first.run.id, centralEvaluator: central });
    await second.done;
    expect(second.finished).toEqual([{ status: 'completed' }]);
    const resumed = fed.transport.sent.slice(sentBefore);
    // Round 1 is evaluated first, then round 2 trains.
    expect(resumed[0]).toMatchObject({ event: 'evaluate', payload: { round: 1 } });
    const firstTrain = resumed.findIndex((m) => m.event === 'train');
    expect(resumed.slice(0, firstTrain).every((m) => m.event === 'evaluate')).toBe(true);
    expect(resumed[firstTrain]).toMatchObject({ payload: { round: 2 } });
    const round1 = await db.rounds.get(first.run.id, 1);
    expect(round1).toMatchObject({
      status: 'evaluated',
      federatedNumExamples: 20,
      federatedLoss: 0.5,
      centralLoss: 0.25,
      centralAccuracy: 0.875,
      centralNumExamples: 10_000,
    });
    expect(second.evaluated.map((e) => e.round)).toEqual([1, 2]);
    // Round 1's commit was the first process's: the second one timed only its evaluation.
    expect(round1.phases).toMatchObject({ commitMs: null, evaluationMs: null });
    expect((await db.rounds.get(first.run.id, 2)).phases?.evaluationMs).toEqual(expect.any(Number));
  });

  it('logs a commit and an evaluation record that are still running, so that a stall is not silence', async () => {
    const fed = await createFederation(2);
    for (const id of fed.clientIds) connect(fed, id, 0);
    const delay = <T>(value: T) =>
      new Promise<T>((resolve) => setTimeout(() => resolve(value), 250));
    // The database's commits and the central evaluation each take 250 ms; 60 ms counts as slow.
    const slowRounds = new Proxy(db.rounds, {
      get(target, property) {
        const value = Reflect.get(target, property, target) as unknown;
        if (typeof value !== 'function') return value;
        if (property !== 'commit') return value.bind(target);
        return async (...args: unknown[]) => delay(await value.apply(target, args));
      },
    });
    const slowDb = { ...db, rounds: slowRounds } as Database;
    const central: CentralEvaluator = {
      evaluate: () => delay({ loss: 1, accuracy: 0.5, numExamples: 10 }),
    };
    const s = await startEngine(slowDb, fed, {
      config: { rounds: 2 },
      centralEvaluator: central,
      slowStepMs: 60,
      logLevel: 'debug',
    });
    await s.done;
    expect(s.finished).toEqual([{ status: 'completed' }]);
    const still = fed.logs
      .filter((line) => line.includes('still running'))
      .map(
        (line) => JSON.parse(line) as { msg: string; runId: string; round?: number; ms: number },
      );
    for (const round of [1, 2]) {
      const commits = still.filter(
        (l) => l.msg === 'round commit still running' && l.round === round,
      );
      expect(commits.length, `round ${round}`).toBeGreaterThanOrEqual(2);
      expect(commits[0]?.runId).toBe(s.run.id);
      expect(commits[0]?.ms).toBeGreaterThanOrEqual(55);
    }
    expect(still.some((l) => l.msg === 'evaluation record still running')).toBe(true);
  });

  it('on resume, evaluates both rounds a process left unevaluated when it died with a central evaluation beside the next round', async () => {
    const fed = await createFederation(2);
    for (const id of fed.clientIds) connect(fed, id, 0);
    // The first process's central evaluations never finish; it dies after round 2's commit.
    const stuck: CentralEvaluator = { evaluate: () => new Promise(() => {}) };
    const first = await startWith(fed, {
      config: { rounds: 3 },
      centralEvaluator: stuck,
      onCommitted: (round, engine) => {
        if (round === 2) engine.stop('shutdown');
      },
    });
    // A shutdown does not wait for a central evaluation it would not record.
    await first.done;
    expect(first.finished).toEqual([]);
    expect((await db.rounds.list(first.run.id)).map((r) => [r.number, r.status])).toEqual([
      [1, 'committed'],
      [2, 'committed'],
    ]);

    const evaluatedModels: number[] = [];
    const central: CentralEvaluator = {
      evaluate: async (_run, weights): Promise<EvaluationResult> => {
        evaluatedModels.push(weights[0] as number);
        return { loss: 0.25, accuracy: 0.875, numExamples: 10_000 };
      },
    };
    const second = await startWith(fed, { runId: first.run.id, centralEvaluator: central });
    await second.done;
    expect(second.finished).toEqual([{ status: 'completed' }]);
    // Rounds 1 and 2 in order, each with its own checkpoint, then round 3 trains.
    expect(second.evaluated.map((e) => e.round)).toEqual([1, 2, 3]);
    expect(second.started.map((e) => e.round)).toEqual([3]);
    const checkpoints = await Promise.all(
      [1, 2, 3].map(async (round) => {
        const bytes = (await db.rounds.checkpoint(first.run.id, round)).weights;
        return bytesToWeights(bytes, PARAMS)[0] as number;
      }),
    );
    expect(evaluatedModels).toEqual(checkpoints);
    for (const round of [1, 2, 3]) {
      expect(await db.rounds.get(first.run.id, round)).toMatchObject({
        status: 'evaluated',
        centralAccuracy: 0.875,
      });
    }
  });

  it('a central evaluation that fails beside the next round fails the run before that round commits', async () => {
    const fed = await createFederation(2);
    for (const id of fed.clientIds) connect(fed, id, 0);
    const slow: Behaviour = (message, ctx) => {
      if (message.event === 'train') setTimeout(() => ctx.update({}), 300);
    };
    const failing: CentralEvaluator = {
      evaluate: () =>
        new Promise((_, reject) =>
          setTimeout(
            () => reject(new TesseraError(ErrorCode.INTERNAL, 'evaluation worker crashed')),
            50,
          ),
        ),
    };
    const s = await startWith(fed, {
      config: { rounds: 3 },
      behaviours: { 0: slow, 1: slow },
      centralEvaluator: failing,
    });
    await s.done;
    expect(s.finished).toEqual([{ status: 'failed', error: 'evaluation worker crashed' }]);
    // Round 2 trained while round 1's evaluation failed; it was never committed.
    expect(s.started.map((e) => e.round)).toEqual([1, 2]);
    expect((await db.rounds.list(s.run.id)).map((r) => [r.number, r.status])).toEqual([
      [1, 'committed'],
    ]);
  });

  it('runs one central evaluation at a time, in round order, however long each takes', async () => {
    const fed = await createFederation(2);
    for (const id of fed.clientIds) connect(fed, id, 0);
    // Round 1's evaluation is the slowest, round 3's the fastest; rounds train in ~no time.
    const times = [500, 250, 0];
    let calls = 0;
    let running = 0;
    let mostAtOnce = 0;
    const central: CentralEvaluator = {
      evaluate: () => {
        const ms = times[calls++] ?? 0;
        running++;
        mostAtOnce = Math.max(mostAtOnce, running);
        return new Promise((resolve) =>
          setTimeout(() => {
            running--;
            resolve({ loss: 0.5, accuracy: 0.75, numExamples: 100 });
          }, ms),
        );
      },
    };
    const s = await startWith(fed, { config: { rounds: 3 }, centralEvaluator: central });
    await s.done;
    expect(s.finished).toEqual([{ status: 'completed' }]);
    expect(s.evaluated.map((e) => e.round)).toEqual([1, 2, 3]);
    expect(mostAtOnce).toBe(1);
  });

  it('a pause asked for during a round ends the run once that round is committed and evaluated', async () => {
    const fed = await createFederation(2);
    for (const id of fed.clientIds) connect(fed, id, 0);
    const central: CentralEvaluator = {
      evaluate: () =>
        new Promise((resolve) =>
          setTimeout(() => resolve({ loss: 0.5, accuracy: 0.75, numExamples: 100 }), 200),
        ),
    };
    const s = await startWith(fed, { config: { rounds: 3 }, centralEvaluator: central });
    s.engine.on('round-started', () => s.engine.endAfterRound('paused'));
    await s.done;
    expect(s.finished).toEqual([{ status: 'paused' }]);
    expect(s.started.map((e) => e.round)).toEqual([1]);
    // Its central evaluation ran to the end and was recorded before the run paused.
    expect(await db.rounds.get(s.run.id, 1)).toMatchObject({
      status: 'evaluated',
      centralAccuracy: 0.75,
    });
    expect((await db.runs.get(s.run.id)).status).toBe('paused');
  });

  it('derives round seeds by the run recorded derivation: version 2 for new runs, version 1 kept for old ones', async () => {
    const fed = await createFederation(4);
    for (const id of fed.clientIds) connect(fed, id);
    const config = { rounds: 2, seed: 1, clientsPerRound: 2 };
    const modern = await startWith(fed, { config });
    await modern.done;
    expect(modern.run.seedDerivation).toBe(2);

    const legacyRun = await db.runs.create({
      federationId: fed.federationId,
      config: { ...baseConfig, ...config },
    });
    // What the migration gives runs created before version 2.
    await db.prisma.run.update({ where: { id: legacyRun.id }, data: { seedDerivation: 1 } });
    const legacy = await startWith(fed, { runId: legacyRun.id });
    await legacy.done;
    expect(legacy.run.seedDerivation).toBe(1);

    const shuffleSeeds = (s: Started) =>
      s.fed.transport.sent
        .filter((m) => m.event === 'train' && m.payload.runId === s.run.id)
        .map((m) => (m.event === 'train' ? [m.payload.round, m.payload.config.seed] : []));
    // Version 1's round-2 seed for run seed 1 is issue 12's colliding 3601063660.
    expect(new Map(shuffleSeeds(legacy) as [number, number][]).get(2)).toBe(3_601_063_660);
    expect(new Map(shuffleSeeds(modern) as [number, number][])).toEqual(
      new Map([
        [1, deriveSeed(2, 1, { purpose: 'shuffle', round: 1, attempt: 0 })],
        [2, deriveSeed(2, 1, { purpose: 'shuffle', round: 2, attempt: 0 })],
      ]),
    );
    for (const [s, version] of [
      [modern, 2],
      [legacy, 1],
    ] as const) {
      for (const round of [1, 2]) {
        const rng = createRng(deriveSeed(version, 1, { purpose: 'sample', round, attempt: 1 }));
        expect(s.started[round - 1]?.selected).toEqual(
          referenceSample(fed.clientIds, 2, () => rng.next()),
        );
      }
    }
  });

  it('records rounds whose totals pass 2^31 and metrics of 1e308: nothing a member sends fails the run', async () => {
    const huge: Behaviour = (message, ctx) => {
      if (message.event === 'train')
        ctx.update({ numExamples: 1_000_000_000, metrics: { loss: 1e308, accuracy: 1 } });
      if (message.event === 'evaluate')
        ctx.evaluation({ numExamples: 2 ** 31, loss: 1e308, accuracy: 1 });
    };
    const s = await start({ clients: 3, behaviours: { 0: huge, 1: huge, 2: huge } });
    await s.done;
    expect(s.finished).toEqual([{ status: 'completed' }]);
    const record = await db.rounds.get(s.run.id, 1);
    expect(record.numExamples).toBe(3_000_000_000);
    expect(Number.isFinite(record.trainLoss)).toBe(true);
    expect((record.trainLoss as number) / 1e308).toBeCloseTo(1, 12);
    expect(record.federatedNumExamples).toBe(3 * 2 ** 31);
    expect((record.federatedLoss as number) / 1e308).toBeCloseTo(1, 12);
    expect(record.status).toBe('evaluated');
  });
});

describe('strategy state through the engine', () => {
  /** Replies that change from round to round, so that FedAdam's moments shape every step. */
  const drifting =
    (scale: number): Behaviour =>
    (message, ctx) => {
      if (message.event === 'evaluate') ctx.evaluation({});
      if (message.event !== 'train') return;
      const { round } = message.payload;
      const weights = new Float32Array(PARAMS);
      for (let i = 0; i < PARAMS; i++) weights[i] = Math.sin(i * 0.001 + round) * scale;
      ctx.update({ weights: new Uint8Array(weightsToBytes(weights)) });
    };
  const fedAdam: Partial<RunConfigInput> = {
    rounds: 5,
    strategy: 'fedadam',
    strategyOptions: { serverLearningRate: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3 },
    keepUpdates: true,
  };

  async function checkpointsOf(runId: string) {
    const hashes = await db.rounds.checkpointHashes(runId);
    const states = await Promise.all(
      hashes.map(async ({ round }) => (await db.rounds.checkpoint(runId, round)).strategyState),
    );
    // States compared by digest: toEqual over megabytes of typed array takes minutes.
    return hashes.map(({ round, sha256 }, i) => ({
      round,
      sha256,
      state: states[i] ?? null,
      stateSha256: states[i] ? createHash('sha256').update(states[i]).digest('hex') : null,
    }));
  }

  it('commits the state with every round, and a FedAdam run resumed after round 2 commits rounds 3..5 bit-identical to an uninterrupted run', async () => {
    const fed = await createFederation(2);
    for (const id of fed.clientIds) connect(fed, id);
    const behaviours = { 0: drifting(1), 1: drifting(2) };
    const whole = await startWith(fed, { config: fedAdam, behaviours });
    await whole.done;
    expect(whole.finished).toEqual([{ status: 'completed' }]);
    const reference = await checkpointsOf(whole.run.id);
    expect(reference.map((c) => c.round)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(reference[0]?.state).toBeNull();
    for (const { round, state } of reference.slice(1)) {
      const decoded = decodeStrategyState(state as Uint8Array);
      expect(decoded).toMatchObject({ strategy: 'fedadam', version: 1, round });
      expect(decoded.scalars).toEqual({ step: round });
    }

    // The process goes away right after round 2 commits; a new engine picks the run up.
    const first = await startWith(fed, {
      config: fedAdam,
      behaviours,
      onCommitted: (round, engine) => {
        if (round === 2) engine.stop('shutdown');
      },
    });
    await first.done;
    expect((await db.runs.get(first.run.id)).status).toBe('running');
    expect((await db.rounds.list(first.run.id)).map((r) => r.number)).toEqual([1, 2]);
    const second = await startWith(fed, { runId: first.run.id, behaviours });
    await second.done;
    expect(second.finished).toEqual([{ status: 'completed' }]);
    expect(second.started.map((e) => e.round)).toEqual([3, 4, 5]);
    const resumed = await checkpointsOf(first.run.id);
    expect(resumed.map((c) => c.sha256)).toEqual(reference.map((c) => c.sha256));
    expect(resumed.map((c) => c.stateSha256)).toEqual(reference.map((c) => c.stateSha256));

    // A replay runs FedAdam from round 1 and recomputes the same weights and states.
    for (const runId of [whole.run.id, first.run.id]) {
      const report = await verifyRun(db, runId);
      expect(report.identical).toBe(true);
      expect(report.checks.map((c) => [c.round, c.match, c.stateMatch])).toEqual(
        [1, 2, 3, 4, 5].map((round) => [round, true, true]),
      );
    }
    // Three runs and two replays of a 199,210-parameter FedAdam: over a minute on a loaded
    // 2-core machine (a fresh-clone CI run timed out at 60 s).
  }, 240_000);

  it('replays a FedAvgM run bit-identically, velocity included; a stored state that differs fails the verify', async () => {
    const fed = await createFederation(2);
    for (const id of fed.clientIds) connect(fed, id);
    const s = await startWith(fed, {
      config: {
        rounds: 3,
        strategy: 'fedavgm',
        strategyOptions: { serverLearningRate: 1, momentum: 0.9 },
        keepUpdates: true,
      },
      behaviours: { 0: drifting(1), 1: drifting(3) },
    });
    await s.done;
    const report = await verifyRun(db, s.run.id);
    expect(report.identical).toBe(true);
    expect(report.checks.map((c) => [c.match, c.stateMatch])).toEqual([
      [true, true],
      [true, true],
      [true, true],
    ]);
    // One velocity value of round 2's stored state changed: that round's state no longer
    // matches, while its weights (computed before the state was stored) still do.
    const stored = decodeStrategyState(
      (await db.rounds.checkpoint(s.run.id, 2)).strategyState as Uint8Array,
    );
    const [name] = Object.keys(stored.arrays) as [string];
    const changed = Float64Array.from(stored.arrays[name] as Float64Array);
    changed[7] = (changed[7] as number) + 1e-12;
    await db.prisma.checkpoint.update({
      where: { runId_round: { runId: s.run.id, round: 2 } },
      data: {
        strategyState: new Uint8Array(
          encodeStrategyState({ ...stored, arrays: { ...stored.arrays, [name]: changed } }),
        ),
      },
    });
    const tampered = await verifyRun(db, s.run.id);
    expect(tampered.identical).toBe(false);
    expect(tampered.checks.map((c) => [c.match, c.stateMatch])).toEqual([
      [true, true],
      [true, false],
      [true, true],
    ]);
  });

  it("keeps a stateless strategy's checkpoints without a state; its replay has no state to compare", async () => {
    const s = await start({ config: { rounds: 2, keepUpdates: true } });
    await s.done;
    const report = await verifyRun(db, s.run.id);
    expect(report.identical).toBe(true);
    expect(report.checks.map((c) => c.stateMatch)).toEqual([null, null]);
    expect((await checkpointsOf(s.run.id)).map((c) => c.stateSha256)).toEqual([null, null, null]);
  });

  for (const [what, corrupt, reason] of [
    [
      'does not decode',
      () => new Uint8Array([1, 2, 3]),
      /cannot be resumed from round 2: strategy state: not a Tessera strategy state/,
    ],
    [
      'belongs to another round',
      (bytes: Uint8Array) => encodeStrategyState({ ...decodeStrategyState(bytes), round: 1 }),
      /cannot be resumed from round 2: strategy state: taken after round 1, stored with checkpoint 2/,
    ],
    [
      'is for another model size',
      (bytes: Uint8Array) => {
        const state = decodeStrategyState(bytes);
        return encodeStrategyState({
          ...state,
          arrays: { m: new Float64Array(3), v: new Float64Array(3) },
        });
      },
      /cannot be resumed from round 2: strategy state: array m has 3 values; the model has 199210/,
    ],
    [
      'belongs to another strategy',
      (bytes: Uint8Array) =>
        encodeStrategyState({ ...decodeStrategyState(bytes), strategy: 'fedyogi' }),
      /cannot be resumed from round 2: strategy state: written by fedyogi, cannot restore into fedadam/,
    ],
  ] as const) {
    it(`fails a run whose stored state ${what}, with the reason; nothing more is committed`, async () => {
      const fed = await createFederation(2);
      for (const id of fed.clientIds) connect(fed, id);
      const first = await startWith(fed, {
        config: fedAdam,
        onCommitted: (round, engine) => {
          if (round === 2) engine.stop('shutdown');
        },
      });
      await first.done;
      const stored = (await db.rounds.checkpoint(first.run.id, 2)).strategyState as Uint8Array;
      await db.prisma.checkpoint.update({
        where: { runId_round: { runId: first.run.id, round: 2 } },
        data: { strategyState: new Uint8Array(corrupt(stored)) },
      });
      const second = await startWith(fed, { runId: first.run.id });
      await second.done;
      expect(second.finished).toHaveLength(1);
      expect(second.finished[0]?.status).toBe('failed');
      expect(second.finished[0]?.error).toMatch(reason);
      const run = await db.runs.get(first.run.id);
      expect(run.status).toBe('failed');
      expect(run.error).toMatch(reason);
      expect(second.started).toEqual([]);
      expect((await db.rounds.list(first.run.id)).map((r) => r.number)).toEqual([1, 2]);
    });
  }
});

describe('the aggregation arithmetic recorded with each run', () => {
  /**
   * Clients 0 and 2 send ±2^40 everywhere, client 1 small values, ten examples each: summed in
   * float64 in arrival order the small values lose low bits to the large ones, summed exactly
   * they survive, so the two arithmetics give other checkpoints and a replay in the wrong one
   * would not verify.
   */
  const cancelling: Record<number, Behaviour> = Object.fromEntries(
    [2 ** 40, 0, -(2 ** 40)].map((large, index) => [
      index,
      ((message, ctx) => {
        if (message.event === 'evaluate') ctx.evaluation({});
        if (message.event !== 'train') return;
        const weights = new Float32Array(PARAMS);
        for (let i = 0; i < PARAMS; i++) weights[i] = large !== 0 ? large : Math.sin(i) * 1e-3;
        const reply = () =>
          ctx.update({ weights: new Uint8Array(weightsToBytes(weights)), numExamples: 10 });
        // The small values first, then the large ones: an order in which float64 loses bits
        // (had both large ones come first, they would cancel exactly before the small ones).
        if (large === 0) reply();
        else setTimeout(reply, large > 0 ? 200 : 400);
      }) satisfies Behaviour,
    ]),
  );

  async function foldsOfRound1(runId: string) {
    const kept = await db.rounds.updatesWithWeights(runId, 1);
    expect(kept).toHaveLength(3);
    expect(kept.map((u) => u.numExamples)).toEqual([10, 10, 10]);
    const float64 = new WeightedSum(PARAMS);
    for (const u of kept) float64.add(bytesToWeights(u.weights, PARAMS), u.numExamples);
    const exact = new ExactWeightedSum(PARAMS);
    for (const u of kept.slice().reverse())
      exact.add(bytesToWeights(u.weights, PARAMS), u.numExamples);
    const checkpoint = (await db.rounds.checkpoint(runId, 1)).weights;
    return {
      checkpoint: createHash('sha256').update(checkpoint).digest('hex'),
      float64: createHash('sha256').update(weightsToBytes(float64.mean())).digest('hex'),
      exact: createHash('sha256').update(weightsToBytes(exact.mean())).digest('hex'),
    };
  }

  it('a run recording arithmetic exact commits the exact mean, whatever the order; one recorded without it (before it existed) sums in float64; both replay bit-identically', async () => {
    const fed = await createFederation(3);
    for (const id of fed.clientIds) connect(fed, id);
    const exactRun = await startWith(fed, {
      config: {
        rounds: 1,
        minClients: 3,
        strategyOptions: { arithmetic: 'exact' },
        keepUpdates: true,
      },
      behaviours: cancelling,
    });
    await exactRun.done;
    const legacyRun = await startWith(fed, {
      config: { rounds: 1, minClients: 3, strategyOptions: {}, keepUpdates: true },
      behaviours: cancelling,
    });
    await legacyRun.done;

    const exact = await foldsOfRound1(exactRun.run.id);
    expect(exact.float64).not.toBe(exact.exact);
    expect(exact.checkpoint).toBe(exact.exact);
    const legacy = await foldsOfRound1(legacyRun.run.id);
    expect(legacy.checkpoint).toBe(legacy.float64);
    for (const runId of [exactRun.run.id, legacyRun.run.id]) {
      const report = await verifyRun(db, runId);
      expect(report.identical).toBe(true);
      expect(report.checks.map((c) => [c.round, c.match])).toEqual([[1, true]]);
    }
    expect((await db.runs.get(exactRun.run.id)).config.strategyOptions).toEqual({
      arithmetic: 'exact',
    });
  }, 240_000);
});

describe('the seed derivation recorded with each run', () => {
  const MIGRATION = '20261201110000_round_totals_bigint_seed_derivation';

  it('is 1 for runs that existed before its migration and 2 for runs created after', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'tessera-migrate-'));
    try {
      // A database migrated up to just before this change, holding one run.
      const before = join(folder, 'migrations');
      for (const name of readdirSync(defaultMigrationsDir())) {
        if (name < MIGRATION || name === 'migration_lock.toml')
          cpSync(join(defaultMigrationsDir(), name), join(before, name), { recursive: true });
      }
      const pglite = join(folder, 'pglite');
      const old = await openDatabase({ dataDir: pglite, migrationsDir: before });
      await old.prisma.$executeRawUnsafe(
        `INSERT INTO "Federation" ("id", "name") VALUES ('fed-old', 'old')`,
      );
      await old.prisma.$executeRawUnsafe(
        `INSERT INTO "Run" ("id", "federationId", "name", "model", "strategy", "strategyOptions",
          "rounds", "minClients", "roundDeadlineMs", "localEpochs", "batchSize", "learningRate",
          "seed", "data") VALUES ('run-old', 'fed-old', 'old', 'fedavg-2nn', 'fedavg', '{}', 1, 1,
          1000, 1, 10, 0.1, 1, '{}')`,
      );
      await old.close();

      const current = await openDatabase({ dataDir: pglite });
      try {
        expect(current.migrations.applied).toContain(MIGRATION);
        expect((await current.runs.get('run-old')).seedDerivation).toBe(1);
        const created = await current.runs.create({ federationId: 'fed-old', config: baseConfig });
        expect(created.seedDerivation).toBe(2);
      } finally {
        await current.close();
      }
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });
});

describe('RunEngine under dp-fedavg: Poisson sampling, as the accountant assumes it', () => {
  const dpConfig: Partial<RunConfigInput> = {
    strategy: 'dp-fedavg',
    strategyOptions: {
      noiseMultiplier: 1,
      clipNorm: 1,
      expectedClientsPerRound: 5,
      samplingRate: 0.25,
      innerStrategy: 'fedavg',
      innerOptions: {},
    },
    rounds: 6,
    // The same seed in both runs: the sample must not follow from it.
    seed: 3,
  };

  it('draws each eligible client independently with probability q from the CSPRNG, not the run seed, and commits rounds of whatever size arrived', async () => {
    const runs: Started[] = [];
    for (let k = 0; k < 2; k++) {
      const s = await start({ clients: 20, config: dpConfig });
      await s.done;
      expect(s.finished).toEqual([{ status: 'completed' }]);
      runs.push(s);
    }
    const sizes: number[] = [];
    for (const s of runs) {
      const firstAttempts = s.started.filter((r) => r.attempt === 1);
      expect(firstAttempts.map((r) => r.round)).toEqual([1, 2, 3, 4, 5, 6]);
      let included = 0;
      for (const { round, selected } of firstAttempts) {
        // A fixed-size or whole-federation sample would not be what the accountant composes.
        expect(selected.length).toBeLessThan(20);
        included += selected.length;
        sizes.push(selected.length);
        const record = await db.rounds.get(s.run.id, round);
        expect(record.selectedClientIds).toEqual(selected);
        expect(record.privacy).toMatchObject({ samplingRate: 0.25, denominator: 5 });
      }
      // 120 independent draws at q = 0.25: mean 30, standard deviation 4.7.
      expect(included).toBeGreaterThanOrEqual(10);
      expect(included).toBeLessThanOrEqual(50);
    }
    // Round sizes vary (a fixed size would repeat), and the two runs of the same seed were
    // sampled differently (a seeded draw would repeat them exactly).
    expect(new Set(sizes).size).toBeGreaterThan(1);
    const samples = (s: Started) => s.started.map((r) => r.selected.join(','));
    expect(samples(runs[0] as Started)).not.toEqual(samples(runs[1] as Started));
  }, 120_000);

  it('never retries a round: one whose sample brought no update commits the noise alone as one step', async () => {
    const failing: Behaviour = (message, ctx) => {
      if (message.event === 'train') ctx.update('failed');
      if (message.event === 'evaluate') ctx.evaluation({});
    };
    const s = await start({
      clients: 4,
      behaviours: { 0: failing, 1: failing, 2: failing, 3: failing },
      config: { ...dpConfig, rounds: 3 },
    });
    await s.done;
    expect(s.finished).toEqual([{ status: 'completed' }]);
    expect(s.started.map((r) => [r.round, r.attempt])).toEqual([
      [1, 1],
      [2, 1],
      [3, 1],
    ]);
    for (const round of [1, 2, 3]) {
      const record = await db.rounds.get(s.run.id, round);
      expect(record.participantClientIds).toEqual([]);
      expect(record.privacy).toMatchObject({ steps: round, clippedCount: 0, denominator: 5 });
    }
  }, 120_000);

  it('under secure aggregation trains no one when the Poisson sample is above the 255 clients one SecAgg round holds: the noise alone, one step, the reason recorded', async () => {
    const s = await start({
      clients: 256,
      config: {
        ...dpConfig,
        strategyOptions: {
          ...dpConfig.strategyOptions,
          samplingRate: 1,
          expectedClientsPerRound: 256,
        },
        secureAggregation: { clipRange: 1 },
        minClients: 2,
        rounds: 1,
      },
    });
    await s.done;
    expect(s.finished).toEqual([{ status: 'completed' }]);
    // q = 1 samples all 256; not trimmed (that would change the sampling), not re-drawn.
    expect(s.started).toEqual([{ round: 1, attempt: 1, selected: [] }]);
    expect(s.fed.transport.sent.filter((m) => m.event === 'train')).toEqual([]);
    const record = await db.rounds.get(s.run.id, 1);
    expect(record.privacy).toMatchObject({
      unmasked: false,
      sampled: 256,
      steps: 1,
      endReason: 'Poisson sample above the 255 clients one secure aggregation holds',
    });
  }, 180_000);
});
