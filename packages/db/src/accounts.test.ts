// Console accounts on every database backend: PGlite in memory always, PostgreSQL when
// TEST_DATABASE_URL is set (a fresh schema per suite, dropped afterwards).
import { ErrorCode } from '@tessera/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword, verifyPassword } from './accounts.js';
import type { Database } from './index.js';
import { testBackends } from './test-backends.js';

const backends = testBackends('accounts');

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode, field?: string) {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error, `expected ${code}`).toMatchObject({ code });
  if (field !== undefined) expect(error).toMatchObject({ data: { field } });
}

describe('password hashing (scrypt)', () => {
  it('stores the parameters and a per-user salt, and verifies only the right password', async () => {
    const a = await hashPassword('correct horse battery');
    const b = await hashPassword('correct horse battery');
    expect(a).toMatch(/^scrypt\$32768\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
    expect(a).not.toBe(b); // different salts
    expect(await verifyPassword('correct horse battery', a)).toBe(true);
    expect(await verifyPassword('correct horse batterY', a)).toBe(false);
    expect(await verifyPassword('correct horse battery', 'plain-text')).toBe(false);
  });

  it('refuses passwords that are too short or too long', async () => {
    await rejectsWith(hashPassword('short'), ErrorCode.INVALID_ARGUMENT, 'password');
    await rejectsWith(hashPassword('x'.repeat(1025)), ErrorCode.INVALID_ARGUMENT, 'password');
  });
});

for (const backend of backends) {
  describe(`accounts on ${backend.name}`, () => {
    let db: Database;
    let dispose: () => Promise<void>;
    beforeAll(async () => {
      ({ db, dispose } = await backend.open());
    });
    afterAll(() => dispose());

    it('creates users with a normalised unique email and never returns the hash', async () => {
      const admin = await db.accounts.createUser({
        email: '  Ada@Example.org ',
        name: 'Ada',
        role: 'admin',
        password: 'a long enough password',
      });
      expect(admin).toMatchObject({ email: 'ada@example.org', name: 'Ada', role: 'admin' });
      expect(Object.keys(admin).sort()).toEqual(
        ['createdAt', 'disabledAt', 'email', 'id', 'name', 'role'].sort(),
      );
      await rejectsWith(
        db.accounts.createUser({
          email: 'ADA@example.org',
          role: 'researcher',
          password: 'another long password',
        }),
        ErrorCode.CONFLICT,
        'email',
      );
      await rejectsWith(
        db.accounts.createUser({
          email: 'not-an-email',
          role: 'admin',
          password: 'long password!',
        }),
        ErrorCode.INVALID_ARGUMENT,
        'email',
      );
      await rejectsWith(
        db.accounts.createUser({
          email: 'x@example.org',
          role: 'owner' as 'admin',
          password: 'long password!',
        }),
        ErrorCode.INVALID_ARGUMENT,
        'role',
      );
      expect(await db.accounts.countUsers()).toBe(1);
    });

    it('verifies logins: right password only, any email case, not for disabled accounts', async () => {
      const user = await db.accounts.createUser({
        email: 'grace@example.org',
        role: 'researcher',
        password: 'compilers are fun',
      });
      expect(await db.accounts.verifyLogin('GRACE@example.org', 'compilers are fun')).toEqual(user);
      expect(await db.accounts.verifyLogin('grace@example.org', 'compilers are FUN')).toBeNull();
      expect(await db.accounts.verifyLogin('nobody@example.org', 'compilers are fun')).toBeNull();
      expect(await db.accounts.verifyLogin('', '')).toBeNull();
      await db.accounts.disableUser(user.id);
      expect(await db.accounts.verifyLogin('grace@example.org', 'compilers are fun')).toBeNull();
    });

    it('opens sessions stored by token hash, finds them, and ends them on logout', async () => {
      const user = await db.accounts.createUser({
        email: 'linus@example.org',
        role: 'admin',
        password: 'kernel hacker 1991',
      });
      const { token, session } = await db.accounts.createSession(user.id, 60_000);
      expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(session.id).toMatch(/^[0-9a-f]{64}$/);
      expect(session.id).not.toContain(token);
      expect(session.csrfToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
      const found = await db.accounts.findSession(token);
      expect(found?.user).toEqual(user);
      expect(found?.session.csrfToken).toBe(session.csrfToken);
      expect(await db.accounts.findSession(`${token}x`)).toBeNull();
      expect(await db.accounts.findSession(session.id)).toBeNull(); // the stored hash is no key
      await db.accounts.deleteSession(token);
      expect(await db.accounts.findSession(token)).toBeNull();
      await db.accounts.deleteSession(token); // twice is fine
    });

    it('expires sessions, and a new password or a disabled account ends them', async () => {
      const user = await db.accounts.createUser({
        email: 'barbara@example.org',
        role: 'admin',
        password: 'abstract data types',
      });
      const short = await db.accounts.createSession(user.id, 1);
      await new Promise((resolve) => setTimeout(resolve, 5));
      expect(await db.accounts.findSession(short.token)).toBeNull();

      const a = await db.accounts.createSession(user.id, 60_000);
      await db.accounts.setPassword(user.id, 'liskov substitution');
      expect(await db.accounts.findSession(a.token)).toBeNull();
      expect(await db.accounts.verifyLogin(user.email, 'liskov substitution')).not.toBeNull();

      const b = await db.accounts.createSession(user.id, 60_000);
      await db.accounts.disableUser(user.id);
      expect(await db.accounts.findSession(b.token)).toBeNull();
      await rejectsWith(db.accounts.createSession(user.id, 0), ErrorCode.INVALID_ARGUMENT, 'ttlMs');
    });

    it('reserves login attempts atomically: of 40 concurrent ones, exactly the limit pass', async () => {
      const now = new Date('2026-12-01T10:00:00Z');
      const limits = [{ key: 'account:race@example.org', limit: 5 }];
      const outcomes = await Promise.all(
        Array.from({ length: 40 }, () => db.accounts.reserveLoginAttempt(limits, 60_000, now)),
      );
      expect(outcomes.filter((o) => o.allowed)).toHaveLength(5);
      expect(outcomes.find((o) => !o.allowed)).toEqual({
        allowed: false,
        key: 'account:race@example.org',
        retryAfterSeconds: 60,
      });
      // A new window starts the count again; a release gives one slot back; clear forgets.
      const later = new Date(now.getTime() + 60_000);
      expect((await db.accounts.reserveLoginAttempt(limits, 60_000, later)).allowed).toBe(true);
      await db.accounts.clearLoginAttempts(['account:race@example.org']);
      for (let k = 0; k < 5; k++) await db.accounts.reserveLoginAttempt(limits, 60_000, later);
      expect((await db.accounts.reserveLoginAttempt(limits, 60_000, later)).allowed).toBe(false);
      await db.accounts.clearLoginAttempts(['account:race@example.org']);
      expect(await db.accounts.purgeLoginAttempts(later)).toBe(0);
      await rejectsWith(
        db.accounts.reserveLoginAttempt(limits, 0, later),
        ErrorCode.INVALID_ARGUMENT,
        'windowMs',
      );
    });
  });
}
