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
