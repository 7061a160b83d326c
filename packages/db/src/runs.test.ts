// Run status transitions on every database backend: PGlite in memory always, PostgreSQL when
// TEST_DATABASE_URL is set (a fresh schema, dropped afterwards). The conditional transition is
// what keeps two coordinators on one database from both starting a run.
import { ErrorCode } from '@tessera/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from './index.js';
import { testBackends, testRunConfig } from './test-backends.js';

const backends = testBackends('runs');

const config = testRunConfig();

for (const backend of backends) {
  describe(`run transitions on ${backend.name}`, () => {
    let db: Database;
    let dispose: () => Promise<void>;
    let federationId: string;
    beforeAll(async () => {
      ({ db, dispose } = await backend.open());
      federationId = (await db.federations.create({ name: 'transitions' })).id;
    });
    afterAll(() => dispose?.());

    it('lets exactly one of 5 concurrent starts win; the others get CONFLICT', async () => {
      const run = await db.runs.create({ federationId, config });
      const results = await Promise.allSettled(
        Array.from({ length: 5 }, () =>
          db.runs.transition(run.id, 'running', ['created', 'stopped', 'paused']),
        ),
      );
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      for (const result of results) {
        if (result.status === 'rejected') {
          expect(result.reason).toMatchObject({
            code: ErrorCode.CONFLICT,
            data: { from: 'running', to: 'running' },
          });
        }
      }
      const running = await db.runs.get(run.id);
      expect(running.status).toBe('running');
      expect(running.startedAt).not.toBeNull();
    });

    it('never treats the current status as a no-op, and keeps startedAt on a resume', async () => {
      const run = await db.runs.create({ federationId, config });
      const first = await db.runs.transition(run.id, 'running', ['created']);
      await expect(
        db.runs.transition(run.id, 'running', ['created', 'stopped']),
      ).rejects.toMatchObject({
        code: ErrorCode.CONFLICT,
      });
      // A pause is the resumable end: resuming keeps startedAt.
      await db.runs.transition(run.id, 'paused', ['running']);
      const resumed = await db.runs.transition(run.id, 'running', ['paused']);
      expect(resumed.startedAt).toEqual(first.startedAt);
      expect(resumed.finishedAt).toBeNull();
      // An allowed `from` that the transition table forbids (completed is final) never matches.
      await db.runs.transition(run.id, 'completed', ['running']);
      await expect(db.runs.transition(run.id, 'running', ['completed'])).rejects.toMatchObject({
        code: ErrorCode.CONFLICT,
      });
      await expect(db.runs.transition('missing-run', 'running', ['created'])).rejects.toMatchObject(
        {
          code: ErrorCode.NOT_FOUND,
        },
      );
    });
  });
}

for (const backend of backends) {
  describe(`a run's statistics round on ${backend.name}`, () => {
    let db: Database;
    let dispose: () => Promise<void>;
    let federationId: string;
    beforeAll(async () => {
      ({ db, dispose } = await backend.open());
      federationId = (await db.federations.create({ name: 'statistics' })).id;
    });
    afterAll(() => dispose?.());

    const statistics = { rows: 4, columns: [{ name: 'age', type: 'numeric', count: 4 }] };
    const resolved = (sha256: string) => ({
      sha256,
      definition: { name: 'resolved', input: { kind: 'tabular' } },
      paramCount: 34,
    });
    const sha = (digit: string) => digit.repeat(64);

    it('records it once: the run shows both, and its federation may fetch the resolved task', async () => {
      const run = await db.runs.create({ federationId, config });
      expect(run).toMatchObject({ statistics: null, resolvedTask: null });
      expect(await db.runs.federationTrains(federationId, sha('a'))).toBe(false);
      const recorded = await db.runs.recordStatistics(run.id, {
        statistics,
        resolved: resolved(sha('a')),
      });
      expect(recorded.statistics).toEqual(statistics);
      // The resolved task keeps its source's name and version.
      expect(recorded.resolvedTask).toEqual({ ...run.config.task, sha256: sha('a') });
      expect(await db.runs.get(run.id)).toEqual(recorded);
      expect(await db.runs.federationTrains(federationId, sha('a'))).toBe(true);
      expect(await db.tasks.resolved(sha('a'))).toMatchObject({
        sourceSha256: run.config.task.sha256,
        paramCount: 34,
      });
      expect(await db.tasks.definition(sha('a'))).toEqual(resolved(sha('a')).definition);
      // The task's own definition is served the same way.
      expect(await db.tasks.definition(run.config.task.sha256)).toEqual(
        (await db.tasks.get(run.config.task.sha256)).definition,
      );
      // A second record is a CONFLICT and changes nothing.
      await expect(
        db.runs.recordStatistics(run.id, {
          statistics: { rows: 9, columns: [] },
          resolved: resolved(sha('b')),
        }),
      ).rejects.toMatchObject({ code: ErrorCode.CONFLICT });
      expect(await db.runs.get(run.id)).toEqual(recorded);
      await expect(db.tasks.resolved(sha('b'))).rejects.toMatchObject({
        code: ErrorCode.NOT_FOUND,
      });
      // Another run resolving to the same content shares the record.
      const other = await db.runs.create({ federationId, config });
      const again = await db.runs.recordStatistics(other.id, {
        statistics,
        resolved: resolved(sha('a')),
      });
      expect(again.resolvedTask?.sha256).toBe(sha('a'));
    });

    it.each([
      ['statistics', { statistics: [] as unknown as Record<string, unknown> }],
      ['resolved.sha256', { resolved: resolved('not-hex') }],
      ['resolved.definition', { resolved: { ...resolved(sha('c')), definition: null } }],
      ['resolved.paramCount', { resolved: { ...resolved(sha('c')), paramCount: 0 } }],
    ])('refuses a bad %s (INVALID_ARGUMENT, the field) and stores nothing', async (field, bad) => {
      const run = await db.runs.create({ federationId, config });
      await expect(
        db.runs.recordStatistics(run.id, {
          statistics,
          resolved: resolved(sha('c')),
          ...(bad as object),
        } as Parameters<Database['runs']['recordStatistics']>[1]),
      ).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT, data: { field } });
      expect(await db.runs.get(run.id)).toMatchObject({ statistics: null, resolvedTask: null });
      await expect(db.tasks.resolved(sha('c'))).rejects.toMatchObject({
        code: ErrorCode.NOT_FOUND,
      });
    });

    it('refuses a resolved sha256 stored for another task, and a stale lease; nothing is written', async () => {
      const first = await db.runs.create({ federationId, config });
      await db.runs.recordStatistics(first.id, { statistics, resolved: resolved(sha('d')) });
      const otherTask = await db.runs.create({
        federationId,
        config: { ...config, model: 'mlp' },
      });
      await expect(
        db.runs.recordStatistics(otherTask.id, { statistics, resolved: resolved(sha('d')) }),
      ).rejects.toMatchObject({
        code: ErrorCode.INVALID_ARGUMENT,
        data: { field: 'resolved.sha256' },
      });
      expect(await db.runs.get(otherTask.id)).toMatchObject({ resolvedTask: null });

      const leased = await db.runs.create({ federationId, config });
      await db.leases.acquire(leased.id, 'new-owner', 60_000);
      await expect(
        db.runs.recordStatistics(leased.id, {
          statistics,
          resolved: resolved(sha('e')),
          fence: { owner: 'old-owner', token: 1 },
        }),
      ).rejects.toMatchObject({ data: { lease: 'lost' } });
      expect(await db.runs.get(leased.id)).toMatchObject({ statistics: null, resolvedTask: null });
      await expect(db.tasks.resolved(sha('e'))).rejects.toMatchObject({
        code: ErrorCode.NOT_FOUND,
      });
    });
  });
}
