import { createRng } from '@tessera/data';
import type { Database } from '@tessera/db';
import { ErrorCode, TesseraError, weightsToBytes } from '@tessera/protocol';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type ClientSession,
  type ClientTask,
  LocalClientRegistry,
  type TimeoutBackoff,
} from './registry.js';
import { selectClients } from './sampling.js';
import { deriveSeed } from './seeds.js';
import {
  type Behaviour,
  createFederation as createTestFederation,
  type Federation,
  fakeSession,
  honest,
  PARAMS,
  type Started,
  type StartOptions,
  referenceSample as sampleOf,
  startEngine,
  useTestDatabase,
  waitFor as waitUntil,
} from './testing/engine-harness.js';
import type { SentMessage } from './testing/memory-transport.js';

/**
 * The round rules that engine.test.ts leaves loose, each pinned so that removing or inverting
 * the one line that makes it fails a test here (bench/mutate-round-rules.mjs checks this by
 * mutation). Same set-up as there: the in-memory Transport, a real ClientRegistry on a clock
 * the test moves, a real PGlite database, and fake clients answering through the calls the
 * Socket.IO edge makes (registry.touch, then engine.handleUpdate / handleEvaluation).
 *
 * A rule whose removal makes the engine wait (for a deadline, for clients) shows up as a test
 * that does not finish: these tests have a short time limit and rounds with short deadlines.
 */

/** Every test here finishes in about a second when the rules hold. */
const LIMIT_MS = 20_000;

const testDatabase = useTestDatabase('round-rules');
let db: Database;
let federationCount = 0;

beforeAll(() => {
  db = testDatabase.db;
});

const createFederation = (count: number, backoff?: TimeoutBackoff): Promise<Federation> =>
  createTestFederation(db, count, {
    name: `round rules ${++federationCount}`,
    backoff,
    clockStart: 5_000_000,
  });

const session = (
  fed: Federation,
  clientId: string,
  options: { numHoldout?: number; federationId?: string } = {},
): ClientSession =>
  fakeSession(options.federationId ?? fed.federationId, clientId, {
    numHoldout: options.numHoldout,
  });

/**
 * Starts an engine on a new run of the federation, whose clients the test has connected (or
 * not) itself.
 */
const start = (fed: Federation, options: Omit<StartOptions, 'runId'> = {}): Promise<Started> =>
  startEngine(db, fed, options);

const waitFor = <T>(check: () => T | undefined | null | false, what: string): Promise<T> =>
  waitUntil(check, what, LIMIT_MS);

const ackCodes = (fed: Federation, clientId: string, event: 'update' | 'evaluation') =>
  fed.acks.filter((a) => a.clientId === clientId && a.event === event).map((a) => a.code);

const sentOf = (fed: Federation, runId: string, event: SentMessage['event']) =>
  fed.transport.sent.filter((m) => m.event === event && m.payload.runId === runId);

/** The harness's independent copy of the sampling rule, on a generator seeded with `seed`. */
function referenceSample(ids: readonly string[], size: number, seed: number): string[] {
  const rng = createRng(seed);
  return sampleOf(ids, size, () => rng.next());
}

describe('who takes part in a round', () => {
  it(
    "samples and evaluates only idle, eligible clients of the run's federation, and leaves another run's client alone",
    async () => {
      const fed = await createFederation(4);
      const [idleA, busy, backingOff, idleB] = fed.clientIds as [string, string, string, string];
      for (const id of fed.clientIds) fed.registry.add(session(fed, id));
      // Busy in another run's round: not this run's to sample, nor to free.
      const otherTask = { runId: 'another-run', round: 3, phase: 'train' } as const;
      await fed.registry.claim([busy], otherTask);
      // Timed out earlier: backing off for 60 s on the registry's clock.
      fed.registry.timedOut(backingOff);
      // Connected to this coordinator, but a member of another federation.
      const stranger = 'client-of-another-federation';
      fed.registry.add(session(fed, stranger, { federationId: 'another-federation' }));

      const s = await start(fed, { config: { roundDeadlineMs: 1500 } });
      await s.done;
      expect(s.finished).toEqual([{ status: 'completed' }]);
      const expected = [idleA, idleB].sort();
      expect(s.started.map((e) => e.selected)).toEqual([expected]);
      const trained = sentOf(fed, s.run.id, 'train').map((m) => m.clientId);
      const evaluated = sentOf(fed, s.run.id, 'evaluate').map((m) => m.clientId);
      expect(trained.sort()).toEqual(expected);
      expect(evaluated.sort()).toEqual(expected);
      expect(fed.transport.sent.filter((m) => m.clientId === stranger)).toEqual([]);
      // The engine freed its own clients on the way out, not the other run's.
      expect(fed.registry.get(busy)?.task).toEqual(otherTask);
      expect(fed.registry.get(idleA)?.task).toBeNull();
      const record = await db.rounds.get(s.run.id, 1);
      expect(record.selectedClientIds.slice().sort()).toEqual(expected);
    },
    LIMIT_MS,
  );

  it(
    'a drawn client another process claimed in the same moment, or one gone before its claim settled, is left out of the round and the evaluation',
    async () => {
      const fed = await createFederation(4);
      const [contested, leaving, ...others] = fed.clientIds as [string, string, string, string];
      // Another coordinator's run wins one client's claim, as ClusterClientRegistry's script
      // would decide: its task replaces ours before the claim resolves. Another client's
      // claim holds, but it disconnects before the claim is settled.
      const elsewhere: ClientTask = { runId: 'run-of-another-process', round: 2, phase: 'train' };
      class ContestedRegistry extends LocalClientRegistry {
        override claim(ids: readonly string[], task: ClientTask): Promise<string[]> {
          this.assign(ids, task);
          if (ids.includes(contested)) this.assign([contested], elsewhere);
          if (ids.includes(leaving)) this.remove(leaving, `memory-${leaving}`);
          return Promise.resolve(ids.filter((id) => id !== contested));
        }
      }
      fed.registry = new ContestedRegistry({ now: () => fed.clock.now });
      for (const id of fed.clientIds) fed.registry.add(session(fed, id));

      const s = await start(fed, { config: { roundDeadlineMs: 1500 } });
      await s.done;
      expect(s.finished).toEqual([{ status: 'completed' }]);
      const expected = [...others].sort();
      expect(s.started.map((e) => e.selected.slice().sort())).toEqual([expected]);
      expect(sentOf(fed, s.run.id, 'train').map((m) => m.clientId)).toEqual(
        expect.not.arrayContaining([contested, leaving]),
      );
      expect(sentOf(fed, s.run.id, 'evaluate').map((m) => m.clientId)).toEqual(
        expect.not.arrayContaining([contested, leaving]),
      );
      const record = await db.rounds.get(s.run.id, 1);
      expect(record.selectedClientIds.slice().sort()).toEqual(expected);
      expect(record.participantClientIds.slice().sort()).toEqual(expected);
      // Nothing of this run touched the winner's task.
      expect(fed.registry.get(contested)?.task).toEqual(elsewhere);
    },
    LIMIT_MS,
  );

  it.each([
    // [clients, clientsPerRound, fractionFit, minClients, expected size, why]
    [5, 3, null, 1, 3, 'clientsPerRound 3 of the 5'],
    [5, null, 0.5, 1, 3, 'ceil(0.5 x 5) = 3'],
    [5, null, 0.1, 2, 2, 'ceil(0.1 x 5) = 1, raised to minClients 2'],
    [3, 5, null, 1, 3, 'clientsPerRound 5 capped at the 3 available'],
  ] as const)(
    'with %i eligible clients, clientsPerRound %s, fractionFit %s and minClients %i, a round asks %i (%s)',
    async (clients, clientsPerRound, fractionFit, minClients, size, _why) => {
      const fed = await createFederation(clients);
      for (const id of fed.clientIds) fed.registry.add(session(fed, id));
      const s = await start(fed, { config: { clientsPerRound, fractionFit, minClients, seed: 3 } });
      await s.done;
      expect(s.finished).toEqual([{ status: 'completed' }]);
      const expected = referenceSample(
        fed.clientIds,
        size,
        deriveSeed(2, 3, { purpose: 'sample', round: 1, attempt: 1 }),
      );
      expect(s.started.map((e) => e.selected)).toEqual([expected]);
      expect((await db.rounds.get(s.run.id, 1)).participantClientIds.slice().sort()).toEqual(
        expected,
      );
    },
    LIMIT_MS,
  );

  it('refuses minClients below 1 with INVALID_ARGUMENT naming the field', () => {
    let caught: unknown;
    try {
      selectClients(['a', 'b'], { clientsPerRound: null, fractionFit: null, minClients: 0 }, () =>
        Math.random(),
      );
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(TesseraError);
    expect((caught as TesseraError).code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect((caught as TesseraError).data).toMatchObject({ field: 'minClients' });
  });

  it(
    'keeps each sampled client busy for the run while it works, and frees it as soon as it answers',
    async () => {
      const fed = await createFederation(2);
      const [first, second] = fed.clientIds as [string, string];
      for (const id of fed.clientIds) fed.registry.add(session(fed, id));
      const seen: Record<string, unknown> = {};
      // The first client looks at itself before it answers, the second at the first after.
      const looksAtItself: Behaviour = (message, ctx) => {
        const phase = message.event === 'train' ? 'train' : 'evaluate';
        if (message.event === 'round-closed') return;
        seen[`${phase} own task`] = fed.registry.get(first)?.task;
        seen[`${phase} idle`] = fed.registry.idle(fed.federationId);
        honest(message, ctx);
      };
      const looksAtTheFirst: Behaviour = (message, ctx) => {
        if (message.event === 'round-closed') return;
        const phase = message.event === 'train' ? 'train' : 'evaluate';
        const event = phase === 'train' ? 'update' : 'evaluation';
        void waitFor(() => ackCodes(fed, first, event).length === 1, `the first ${event}`).then(
          () => {
            seen[`${phase} first after its answer`] = fed.registry.get(first)?.task;
            honest(message, ctx);
          },
        );
      };
      const s = await start(fed, { behaviours: { 0: looksAtItself, 1: looksAtTheFirst } });
      await s.done;
      expect(s.finished).toEqual([{ status: 'completed' }]);
      expect(seen).toEqual({
        'train own task': { runId: s.run.id, round: 1, phase: 'train' },
        'train idle': [],
        'train first after its answer': null,
        'evaluate own task': { runId: s.run.id, round: 1, phase: 'evaluate' },
        'evaluate idle': [],
        'evaluate first after its answer': null,
      });
      expect(ackCodes(fed, first, 'update')).toEqual(['ok']);
      expect(ackCodes(fed, second, 'evaluation')).toEqual(['ok']);
    },
    LIMIT_MS,
  );
});

describe('replies that take a client out of the round', () => {
  it(
    'a refused update frees the client at once, counts as its answer, and leaves no trace',
    async () => {
      const fed = await createFederation(2);
      const [refused, other] = fed.clientIds as [string, string];
      for (const id of fed.clientIds) fed.registry.add(session(fed, id));
      let taskAfterRefusal: unknown = 'unset';
      const sendsNaN: Behaviour = (message, ctx) => {
        if (message.event !== 'train') return honest(message, ctx);
        const weights = new Float32Array(PARAMS).fill(1);
        weights[5] = Number.NaN;
        ctx.update({ weights: new Uint8Array(weightsToBytes(weights)) });
        // Its second try is a duplicate: the refusal was its answer to the round.
        ctx.update({});
      };
      const waits: Behaviour = (message, ctx) => {
        if (message.event !== 'train') return honest(message, ctx);
        void waitFor(() => ackCodes(fed, refused, 'update').length === 2, 'the refusal').then(
          () => {
            taskAfterRefusal = fed.registry.get(refused)?.task ?? null;
            ctx.update({});
          },
        );
      };
      const s = await start(fed, { behaviours: { 0: sendsNaN, 1: waits } });
      await s.done;
      expect(ackCodes(fed, refused, 'update')).toEqual(['NON_FINITE_WEIGHTS', 'DUPLICATE_UPDATE']);
      expect(taskAfterRefusal).toBeNull();
      const record = await db.rounds.get(s.run.id, 1);
      expect(record.participantClientIds).toEqual([other]);
      expect(record.numExamples).toBe(20);
      expect(record.outcomes.find((o) => o.clientId === refused)).toMatchObject({
        outcome: 'rejected',
        code: 'NON_FINITE_WEIGHTS',
      });
      expect((await db.rounds.updates(s.run.id, 1)).map((u) => u.clientId)).toEqual([other]);
    },
    LIMIT_MS,
  );

  it(
    'a failed reply ends the client’s part at once: the round closes without waiting for its 600 s deadline',
    async () => {
      const fed = await createFederation(2);
      const [works, fails] = fed.clientIds as [string, string];
      for (const id of fed.clientIds) fed.registry.add(session(fed, id));
      const failing: Behaviour = (message, ctx) => {
        if (message.event === 'train') ctx.update('failed');
        if (message.event === 'evaluate') ctx.evaluation({});
      };
      const s = await start(fed, { behaviours: { 1: failing } });
      await s.done;
      expect(s.finished).toEqual([{ status: 'completed' }]);
      const record = await db.rounds.get(s.run.id, 1);
      expect(record.participantClientIds).toEqual([works]);
      expect(record.droppedClientIds).toEqual([]);
      expect(record.outcomes.find((o) => o.clientId === fails)).toMatchObject({
        outcome: 'failed',
        reason: 'local training failed',
      });
      // Not a time-out: no round-closed notice, no back-off.
      expect(fed.transport.sentTo(fails, 'round-closed')).toEqual([]);
      expect(fed.registry.backoffUntil(fails)).toBeNull();
    },
    LIMIT_MS,
  );
});

describe('too few updates', () => {
  it(
    'retries with a fresh sample drawn from the attempt’s own seed, and the same shuffle seed',
    async () => {
      const fed = await createFederation(4);
      for (const id of fed.clientIds) fed.registry.add(session(fed, id));
      const sampleOf = (seed: number, attempt: number) =>
        referenceSample(
          fed.clientIds,
          2,
          deriveSeed(2, seed, { purpose: 'sample', round: 1, attempt }),
        );
      // Client ids are new each time: take the first run seed whose two attempts' samples
      // differ, so that reusing attempt 1's sample would be seen.
      const seed = Array.from({ length: 100 }, (_, k) => k + 1).find(
        (candidate) => sampleOf(candidate, 2).join() !== sampleOf(candidate, 1).join(),
      ) as number;
      let s: Started | null = null;
      // Everyone fails in attempt 1, so it has no update at all; attempt 2 succeeds.
      const failsFirstAttempt: Behaviour = (message, ctx) => {
        if (message.event === 'train') ctx.update(s?.started.length === 1 ? 'failed' : {});
        if (message.event === 'evaluate') ctx.evaluation({});
      };
      const behaviours = Object.fromEntries(fed.clientIds.map((_, k) => [k, failsFirstAttempt]));
      s = await start(fed, { config: { clientsPerRound: 2, minClients: 2, seed }, behaviours });
      await s.done;
      expect(s.finished).toEqual([{ status: 'completed' }]);
      expect(s.started).toEqual([
        { round: 1, attempt: 1, selected: sampleOf(seed, 1) },
        { round: 1, attempt: 2, selected: sampleOf(seed, 2) },
      ]);
      const shuffleSeeds = sentOf(fed, s.run.id, 'train').map((m) =>
        m.event === 'train' ? m.payload.config.seed : null,
      );
      expect(shuffleSeeds).toEqual(
        Array(4).fill(deriveSeed(2, seed, { purpose: 'shuffle', round: 1, attempt: 0 })),
      );
      const record = await db.rounds.get(s.run.id, 1);
      expect(record.metrics['attempt']).toBe(2);
      expect(record.selectedClientIds).toEqual(sampleOf(seed, 2));
    },
    LIMIT_MS,
  );

  it(
    'with one update of the two minClients asks for, tries 5 times by default, then fails the run; nothing is committed',
    async () => {
      const fed = await createFederation(2);
      for (const id of fed.clientIds) fed.registry.add(session(fed, id));
      const failing: Behaviour = (message, ctx) => {
        if (message.event === 'train') ctx.update('failed');
      };
      const s = await start(fed, { config: { minClients: 2 }, behaviours: { 1: failing } });
      await s.done;
      expect(s.started.map((e) => e.attempt)).toEqual([1, 2, 3, 4, 5]);
      expect(s.finished).toEqual([
        { status: 'failed', error: 'round 1 got fewer than 2 updates in 5 attempts' },
      ]);
      const run = await db.runs.get(s.run.id);
      expect(run.status).toBe('failed');
      expect(run.error).toBe('round 1 got fewer than 2 updates in 5 attempts');
      expect(await db.rounds.list(s.run.id)).toEqual([]);
      expect(s.committed).toEqual([]);
      // Only checkpoint 0 exists.
      expect((await db.rounds.checkpointHashes(s.run.id)).map((c) => c.round)).toEqual([0]);
    },
    LIMIT_MS,
  );
});

describe('deadlines and back-off', () => {
  it(
    'closes the evaluation at its deadline: the silent evaluator is told, backs off, and its late reply is refused',
    async () => {
      const fed = await createFederation(2);
      const [answers, late] = fed.clientIds as [string, string];
      for (const id of fed.clientIds) fed.registry.add(session(fed, id));
      let lateAck = '';
      let backoffAtClose: number | null = null;
      const evaluatesTooLate: Behaviour = (message, ctx) => {
        if (message.event === 'train') ctx.update({});
        if (message.event !== 'round-closed') return;
        // Read before it answers: any frame from it ends the back-off.
        backoffAtClose = fed.registry.backoffUntil(late);
        lateAck = ctx.evaluation({ numExamples: 999 });
      };
      const s = await start(fed, {
        config: { roundDeadlineMs: 1500 },
        behaviours: { 1: evaluatesTooLate },
      });
      await s.done;
      expect(s.finished).toEqual([{ status: 'completed' }]);
      expect(fed.transport.sentTo(late, 'round-closed').map((m) => m.payload)).toEqual([
        { runId: s.run.id, round: 1, reason: 'evaluation deadline passed' },
      ]);
      expect(fed.transport.sentTo(answers, 'round-closed')).toEqual([]);
      await waitFor(() => lateAck, 'the late evaluation to be answered');
      expect(lateAck).toBe(ErrorCode.WRONG_ROUND);
      // Timed out in the evaluation: it backs off as a training time-out would.
      expect(backoffAtClose).toBe(fed.clock.now + 60_000);
      expect(fed.registry.backoffUntil(answers)).toBeNull();
      const record = await db.rounds.get(s.run.id, 1);
      expect(record.federatedNumExamples).toBe(10);
      expect(record.status).toBe('evaluated');
    },
    LIMIT_MS,
  );

  it(
    'a client that times out again backs off twice as long, at most maxMs',
    async () => {
      const fed = await createFederation(2, { baseMs: 60_000, maxMs: 90_000 });
      const sleeper = fed.clientIds[1] as string;
      for (const id of fed.clientIds) fed.registry.add(session(fed, id));
      const backoffs: (number | null)[] = [];
      const s = await start(fed, {
        config: { rounds: 3, roundDeadlineMs: 1500 },
        behaviours: { 1: () => {} },
        onEvaluated: () => {
          const until = fed.registry.backoffUntil(sleeper);
          backoffs.push(until === null ? null : until - fed.clock.now);
          // Its back-off is over by the next round: it is sampled and times out again.
          if (until !== null) fed.clock.now = until;
        },
      });
      await s.done;
      expect(s.finished).toEqual([{ status: 'completed' }]);
      expect(s.started.map((e) => e.selected.includes(sleeper))).toEqual([true, true, true]);
      // 60 s, then 120 s capped at 90 s, then 90 s again.
      expect(backoffs).toEqual([60_000, 90_000, 90_000]);
      expect(fed.transport.sentTo(sleeper, 'round-closed').map((m) => m.payload.round)).toEqual([
        1, 2, 3,
      ]);
    },
    LIMIT_MS,
  );
});

describe('evaluation', () => {
  it(
    'asks only clients with held-out data, and a failed evaluation reply is an answer',
    async () => {
      const fed = await createFederation(3);
      const [evaluates, holdsNone, cannot] = fed.clientIds as [string, string, string];
      fed.registry.add(session(fed, evaluates));
      fed.registry.add(session(fed, holdsNone, { numHoldout: 0 }));
      fed.registry.add(session(fed, cannot, { numHoldout: 5 }));
      const failsEvaluation: Behaviour = (message, ctx) => {
        if (message.event === 'train') ctx.update({});
        if (message.event === 'evaluate') ctx.evaluation('failed');
      };
      const s = await start(fed, { behaviours: { 2: failsEvaluation } });
      await s.done;
      expect(s.finished).toEqual([{ status: 'completed' }]);
      // It trains (it has training data), but is not sent the model to evaluate.
      expect(fed.transport.sentTo(holdsNone, 'train')).toHaveLength(1);
      expect(fed.transport.sentTo(holdsNone, 'evaluate')).toEqual([]);
      expect(
        sentOf(fed, s.run.id, 'evaluate')
          .map((m) => m.clientId)
          .sort(),
      ).toEqual([evaluates, cannot].sort());
      expect(ackCodes(fed, cannot, 'evaluation')).toEqual(['ok']);
      const record = await db.rounds.get(s.run.id, 1);
      // Only the one that evaluated counts (10 examples), and the 600 s deadline was not waited for.
      expect(record.status).toBe('evaluated');
      expect(record.federatedNumExamples).toBe(10);
      expect(fed.transport.sent.filter((m) => m.event === 'round-closed')).toEqual([]);
    },
    LIMIT_MS,
  );
});

describe('stop and pause', () => {
  it(
    'a pause that comes between the commit and the evaluation starts no evaluation; the round stays committed',
    async () => {
      const fed = await createFederation(2);
      for (const id of fed.clientIds) fed.registry.add(session(fed, id));
      const s = await start(fed, {
        config: { rounds: 2 },
        onCommitted: (round, engine) => {
          if (round === 1) engine.stop('paused');
        },
      });
      await s.done;
      expect(s.finished).toEqual([{ status: 'paused' }]);
      expect((await db.runs.get(s.run.id)).status).toBe('paused');
      expect(sentOf(fed, s.run.id, 'evaluate')).toEqual([]);
      expect(sentOf(fed, s.run.id, 'round-closed')).toEqual([]);
      expect(s.started.map((e) => e.round)).toEqual([1]);
      expect((await db.rounds.list(s.run.id)).map((r) => [r.number, r.status])).toEqual([
        [1, 'committed'],
      ]);
      for (const id of fed.clientIds) expect(fed.registry.get(id)?.task).toBeNull();
    },
    LIMIT_MS,
  );

  it(
    'a stop while waiting for clients ends the run as stopped without starting a round',
    async () => {
      const fed = await createFederation(2);
      // One of the two minClients is connected: the engine waits.
      fed.registry.add(session(fed, fed.clientIds[0] as string));
      const s = await start(fed, { config: { minClients: 2 } });
      await new Promise((resolve) => setTimeout(resolve, 300));
      s.engine.stop('stopped');
      await s.done;
      expect(s.finished).toEqual([{ status: 'stopped' }]);
      expect((await db.runs.get(s.run.id)).status).toBe('stopped');
      expect(s.started).toEqual([]);
      expect(fed.transport.sent).toEqual([]);
    },
    LIMIT_MS,
  );

  it(
    'the first stop wins: a shutdown after an admin stop still records the run stopped',
    async () => {
      const fed = await createFederation(2);
      for (const id of fed.clientIds) fed.registry.add(session(fed, id));
      const s = await start(fed, { behaviours: { 1: () => {} } });
      await waitFor(
        () => ackCodes(fed, fed.clientIds[0] as string, 'update').length === 1,
        'an update',
      );
      s.engine.stop('stopped');
      s.engine.stop('shutdown');
      await s.done;
      expect(s.finished).toEqual([{ status: 'stopped' }]);
      expect((await db.runs.get(s.run.id)).status).toBe('stopped');
      expect(await db.rounds.list(s.run.id)).toEqual([]);
      expect(
        fed.transport.sentTo(fed.clientIds[1] as string, 'round-closed')[0]?.payload.reason,
      ).toBe('run stopped');
    },
    LIMIT_MS,
  );
});
