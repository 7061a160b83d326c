// Researchers' API tokens on every database backend: PGlite in memory always, PostgreSQL when
// TEST_DATABASE_URL is set.
import { createHash } from 'node:crypto';
import { ErrorCode } from '@tessera/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database, UserRecord } from './index.js';
import { testBackends } from './test-backends.js';

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode, field?: string) {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error, `expected ${code}`).toMatchObject({ code });
  if (field !== undefined) expect(error).toMatchObject({ data: { field } });
}

for (const backend of testBackends('api_tokens')) {
  describe(`API tokens on ${backend.name}`, () => {
    let db: Database;
    let dispose: () => Promise<void>;
    let ada: UserRecord;
    let bob: UserRecord;
    beforeAll(async () => {
      ({ db, dispose } = await backend.open());
      ada = await db.accounts.createUser({
        email: 'ada@example.org',
        role: 'researcher',
        password: 'a long enough password',
      });
      bob = await db.accounts.createUser({
        email: 'bob@example.org',
        role: 'admin',
        password: 'a long enough password',
      });
    });
    afterAll(() => dispose());

    it('hands the token out once and keeps only its sha256', async () => {
      const { token, record } = await db.apiTokens.create({ userId: ada.id, name: ' laptop ' });
      expect(token).toMatch(/^tsa_[A-Za-z0-9_-]{43}$/);
      expect(record).toMatchObject({
        userId: ada.id,
        name: 'laptop',
        scope: 'read',
        expiresAt: null,
      });
      expect(Object.keys(record)).not.toContain('tokenHash');
      const [row] = await db.prisma.apiToken.findMany({ where: { id: record.id } });
      expect(row?.tokenHash).toBe(createHash('sha256').update(token).digest('hex'));
      expect(JSON.stringify(row)).not.toContain(token.slice(4));

      const found = await db.apiTokens.authenticate(token);
      expect(found?.user).toMatchObject({ id: ada.id, role: 'researcher' });
      expect(found?.token.lastUsedAt).toBeInstanceOf(Date);
      // One character changed (to 'B' where it already is 'A': a 1-in-64 case).
      const altered = `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`;
      expect(await db.apiTokens.authenticate(altered)).toBeNull();
      expect(await db.apiTokens.authenticate('tsr_not-an-api-token')).toBeNull();
    });

    it('refuses bad input with the field and stores nothing', async () => {
      const before = await db.prisma.apiToken.count();
      await rejectsWith(
        db.apiTokens.create({ userId: ada.id, name: '  ' }),
        ErrorCode.INVALID_ARGUMENT,
        'name',
      );
      await rejectsWith(
        db.apiTokens.create({ userId: ada.id, name: 'x'.repeat(101) }),
        ErrorCode.INVALID_ARGUMENT,
        'name',
      );
      for (const days of [0, 1.5, 367, -1]) {
        await rejectsWith(
          db.apiTokens.create({ userId: ada.id, name: 'n', expiresInDays: days }),
          ErrorCode.INVALID_ARGUMENT,
          'expiresInDays',
        );
      }
      await rejectsWith(
        db.apiTokens.create({ userId: '00000000-0000-4000-8000-000000000000', name: 'n' }),
        ErrorCode.NOT_FOUND,
      );
      expect(await db.prisma.apiToken.count()).toBe(before);
    });

    it('stops working when it expires, is revoked, or its owner is disabled', async () => {
      const now = new Date('2026-12-01T00:00:00Z');
      const expiring = await db.apiTokens.create(
        { userId: ada.id, name: 'ci', expiresInDays: 2 },
        now,
      );
      expect(expiring.record.expiresAt).toEqual(new Date('2026-12-03T00:00:00Z'));
      expect(
        await db.apiTokens.authenticate(expiring.token, new Date('2026-12-02T23:59:59Z')),
      ).not.toBeNull();
      expect(
        await db.apiTokens.authenticate(expiring.token, new Date('2026-12-03T00:00:00Z')),
      ).toBeNull();

      const revoked = await db.apiTokens.create({ userId: ada.id, name: 'old' });
      const first = await db.apiTokens.revoke(ada.id, revoked.record.id);
      expect(first.revokedAt).toBeInstanceOf(Date);
      expect((await db.apiTokens.revoke(ada.id, revoked.record.id)).revokedAt).toEqual(
        first.revokedAt,
      );
      expect(await db.apiTokens.authenticate(revoked.token)).toBeNull();

      const carol = await db.accounts.createUser({
        email: 'carol@example.org',
        role: 'researcher',
        password: 'a long enough password',
      });
      const carols = await db.apiTokens.create({ userId: carol.id, name: 'script' });
      await db.accounts.disableUser(carol.id);
      expect(await db.apiTokens.authenticate(carols.token)).toBeNull();
    });

    it("lists and revokes one's own tokens only", async () => {
      const own = await db.apiTokens.create({ userId: bob.id, name: 'bob' });
      expect((await db.apiTokens.list(bob.id)).map((t) => t.name)).toEqual(['bob']);
      expect((await db.apiTokens.list(ada.id)).map((t) => t.name)).not.toContain('bob');
      // Ada cannot revoke Bob's token, nor learn that it exists.
      await rejectsWith(db.apiTokens.revoke(ada.id, own.record.id), ErrorCode.NOT_FOUND);
      expect(await db.apiTokens.authenticate(own.token)).not.toBeNull();
    });
  });
}
