// Run leases on every database backend: one owner at a time, judged by the database's clock;
// the fencing token grows on every change of hands, and a commit with a stale token writes
// nothing. Also the strategy state kept with each checkpoint.
import { ErrorCode } from '@tessera/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database, RoundCommit } from './index.js';
import { testBackends, testRunConfig } from './test-backends.js';

const config = testRunConfig({ rounds: 5 });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const bytes = (values: number[]) => new Uint8Array(new Float32Array(values).buffer);

/** A round with no client updates: enough to exercise the commit's own rules. */
function emptyRound(runId: string, round: number, extra: Partial<RoundCommit> = {}): RoundCommit {
  return {
    runId,
    round,
    startedAt: new Date(1_000),
    finishedAt: new Date(2_000),
    selectedClientIds: [],
    participantClientIds: [],
    droppedClientIds: [],
    numExamples: 0,
    trainLoss: null,
    trainAccuracy: null,
    metrics: {},
    updates: [],
    checkpoint: bytes([round, 0]),
    ...extra,
  };
}

for (const backend of testBackends('leases')) {
  describe(`run leases on ${backend.name}`, () => {
    let db: Database;
    let dispose: () => Promise<void>;
    let federationId: string;
    beforeAll(async () => {
      ({ db, dispose } = await backend.open());
      federationId = (await db.federations.create({ name: 'leases' })).id;
    });
    afterAll(() => dispose?.());

    async function runningRun(): Promise<string> {
      const run = await db.runs.create({ federationId, config });
      await db.runs.transition(run.id, 'running', ['created']);
      await db.rounds.saveInitialCheckpoint(run.id, bytes([0, 0]));
      return run.id;
    }

    it('has one owner at a time; the token grows only when the lease changes hands', async () => {
      const runId = await runningRun();
      const a = await db.leases.acquire(runId, 'a', 60_000);
      expect(a).toMatchObject({ owner: 'a', token: 1 });
      expect(await db.leases.acquire(runId, 'b', 60_000)).toBeNull();
      // Renewing by acquiring again keeps the token.
      expect(await db.leases.acquire(runId, 'a', 60_000)).toMatchObject({ token: 1 });
      expect(await db.leases.renew(runId, { owner: 'a', token: 1 }, 60_000)).toMatchObject({
        owner: 'a',
        token: 1,
      });
      // Released: b takes it at once, with the next token; a's renewals now fail.
      expect(await db.leases.release(runId, { owner: 'a', token: 1 })).toBe(true);
      expect(await db.leases.acquire(runId, 'b', 60_000)).toMatchObject({ owner: 'b', token: 2 });
      expect(await db.leases.renew(runId, { owner: 'a', token: 1 }, 60_000)).toBeNull();
      expect(await db.leases.release(runId, { owner: 'a', token: 1 })).toBe(false);
      expect(await db.leases.get(runId)).toMatchObject({ owner: 'b', token: 2 });
    });

    it('passes an expired lease to whoever asks, never while it is held', async () => {
      const runId = await runningRun();
      await db.leases.acquire(runId, 'a', 150);
      expect(await db.leases.acquire(runId, 'b', 60_000)).toBeNull();
      expect(await db.leases.orphanedRunningRuns()).not.toContain(runId);
      await sleep(300);
      expect(await db.leases.orphanedRunningRuns()).toContain(runId);
      expect(await db.leases.acquire(runId, 'b', 60_000)).toMatchObject({ owner: 'b', token: 2 });
      // Taken again by the same owner after it expired: a new token too.
      await db.leases.release(runId, { owner: 'b', token: 2 });
      expect(await db.leases.acquire(runId, 'b', 60_000)).toMatchObject({ token: 3 });
    });

    it('never offers a running replay for takeover: the CLI computes it, not a coordinator', async () => {
      const sourceRunId = await runningRun();
      const replay = await db.runs.create({ federationId, config, origin: 'replay', sourceRunId });
      await db.runs.setStatus(replay.id, 'running');
      const orphans = await db.leases.orphanedRunningRuns();
      expect(orphans).toContain(sourceRunId);
      expect(orphans).not.toContain(replay.id);
    });

    it('lets exactly one of 6 processes racing for an expired lease win', async () => {
      const runId = await runningRun();
      await db.leases.acquire(runId, 'dead', 1);
      await sleep(20);
      const results = await Promise.all(
        ['p1', 'p2', 'p3', 'p4', 'p5', 'p6'].map((owner) =>
          db.leases.acquire(runId, owner, 60_000),
        ),
      );
      const winners = results.filter((lease) => lease !== null);
      expect(winners).toHaveLength(1);
      expect(winners[0]?.token).toBe(2);
    });

    it('refuses a commit with a stale token and writes nothing; the owner commits', async () => {
      const runId = await runningRun();
      await db.leases.acquire(runId, 'old', 60_000);
      await db.leases.release(runId, { owner: 'old', token: 1 });
      await db.leases.acquire(runId, 'new', 60_000);
      await expect(
        db.rounds.commit(emptyRound(runId, 1, { fence: { owner: 'old', token: 1 } })),
      ).rejects.toMatchObject({ code: ErrorCode.CONFLICT, data: { lease: 'lost' } });
      // The right owner with a wrong token is refused too.
      await expect(
        db.rounds.commit(emptyRound(runId, 1, { fence: { owner: 'new', token: 1 } })),
      ).rejects.toMatchObject({ data: { lease: 'lost' } });
      expect(await db.rounds.list(runId)).toEqual([]);
      expect((await db.runs.get(runId)).currentRound).toBe(0);
      await db.rounds.commit(emptyRound(runId, 1, { fence: { owner: 'new', token: 2 } }));
      expect((await db.runs.get(runId)).currentRound).toBe(1);
    });

    it("refuses a stale owner's evaluation record and run status; the owner writes them", async () => {
      const runId = await runningRun();
      await db.leases.acquire(runId, 'old', 60_000);
      await db.rounds.commit(emptyRound(runId, 1, { fence: { owner: 'old', token: 1 } }));
      await db.leases.release(runId, { owner: 'old', token: 1 });
      await db.leases.acquire(runId, 'new', 60_000);
      const stale = { fence: { owner: 'old', token: 1 } };
      const evaluation = { federated: { loss: 0.5, accuracy: 0.75, numExamples: 10 } };
      await expect(db.rounds.recordEvaluation(runId, 1, evaluation, stale)).rejects.toMatchObject({
        code: ErrorCode.CONFLICT,
        data: { lease: 'lost' },
      });
      await expect(
        db.runs.setStatus(runId, 'failed', { ...stale, error: 'the old owner gave up' }),
      ).rejects.toMatchObject({ code: ErrorCode.CONFLICT, data: { lease: 'lost' } });
      // Nothing was written.
      expect(await db.rounds.get(runId, 1)).toMatchObject({
        status: 'committed',
        federatedLoss: null,
      });
      expect(await db.runs.get(runId)).toMatchObject({ status: 'running', error: null });

      const owner = { fence: { owner: 'new', token: 2 } };
      await db.rounds.recordEvaluation(runId, 1, evaluation, owner);
      expect((await db.rounds.get(runId, 1)).federatedLoss).toBe(0.5);
      await db.runs.setStatus(runId, 'completed', owner);
      expect((await db.runs.get(runId)).status).toBe('completed');
    });

    it('keeps the strategy state with each checkpoint', async () => {
      const runId = await runningRun();
      const state = new Uint8Array([1, 2, 3, 250]);
      await db.rounds.commit(emptyRound(runId, 1, { strategyState: state }));
      await db.rounds.commit(emptyRound(runId, 2));
      expect((await db.rounds.checkpoint(runId, 0)).strategyState).toBeNull();
      expect((await db.rounds.checkpoint(runId, 1)).strategyState).toEqual(state);
      expect((await db.rounds.latestCheckpoint(runId))?.strategyState).toBeNull();
    });
  });
}
