import { type Database, openDatabase } from '@tessera/db';
import { ErrorCode, type TesseraError } from '@tessera/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoginRateLimiter, parseCookies, sessionCookie } from './auth.js';
import { imageToMnist, sniffImage } from './predict.js';

describe('LoginRateLimiter (counts in the database)', () => {
  const limits = { windowMs: 60_000, perAddressAndAccount: 3, perAccount: 5, perAddress: 6 };
  let db: Database;
  beforeAll(async () => {
    db = await openDatabase({ inMemory: true });
  });
  afterAll(() => db?.close());
  const at = (ms: number) => new Date(1_000_000_000_000 + ms);
  const outcome = (promise: Promise<void>) =>
    promise.then(
      () => 'allowed',
      (error: TesseraError) => (error.code === ErrorCode.RATE_LIMITED ? 'limited' : error.message),
    );

  it('counts attempts in flight: of 40 concurrent ones for one account, 3 get through', async () => {
    const limiter = new LoginRateLimiter(db.accounts, limits);
    const outcomes = await Promise.all(
      Array.from({ length: 40 }, () => outcome(limiter.reserve('10.0.0.1', 'a@x.org', at(0)))),
    );
    expect(outcomes.filter((o) => o === 'allowed')).toHaveLength(3);
    expect(outcomes.filter((o) => o === 'limited')).toHaveLength(37);
    await expect(limiter.reserve('10.0.0.1', 'A@x.org ', at(1000))).rejects.toMatchObject({
      code: ErrorCode.RATE_LIMITED,
      data: { retryAfterSeconds: 59 },
    });
    // The window ends: the account may try again.
    expect(await outcome(limiter.reserve('10.0.0.1', 'a@x.org', at(60_001)))).toBe('allowed');
  });

  it('keys on the account too: a new address per attempt does not get around it', async () => {
    const limiter = new LoginRateLimiter(db.accounts, limits);
    const outcomes: string[] = [];
    for (let k = 0; k < 12; k++) {
      outcomes.push(await outcome(limiter.reserve(`192.0.2.${k}`, 'b@x.org', at(0))));
    }
    expect(outcomes.filter((o) => o === 'allowed')).toHaveLength(limits.perAccount);
  });

  it('limits an address that guesses across many accounts', async () => {
    const limiter = new LoginRateLimiter(db.accounts, limits);
    for (let k = 0; k < 6; k++) await limiter.reserve('10.0.0.9', `user${k}@x.org`, at(0));
    expect(await outcome(limiter.reserve('10.0.0.9', 'fresh@x.org', at(1)))).toBe('limited');
  });

  it('shares the counts between coordinators on one database, and a success clears them', async () => {
    const first = new LoginRateLimiter(db.accounts, limits);
    const second = new LoginRateLimiter(db.accounts, limits);
    await first.reserve('10.0.0.5', 'c@x.org', at(0));
    await second.reserve('10.0.0.5', 'c@x.org', at(0));
    await first.reserve('10.0.0.5', 'c@x.org', at(0));
    expect(await outcome(second.reserve('10.0.0.5', 'c@x.org', at(1)))).toBe('limited');
    await first.succeeded('10.0.0.5', 'c@x.org');
    expect(await outcome(second.reserve('10.0.0.5', 'c@x.org', at(2)))).toBe('allowed');
  });
});

describe('cookies', () => {
  it('parses a Cookie header, first value wins', () => {
    const cookies = parseCookies('a=1; tessera_session=abc_-; a=2; junk; =x');
    expect([...cookies]).toEqual([
      ['a', '1'],
      ['tessera_session', 'abc_-'],
    ]);
    expect(parseCookies(undefined).size).toBe(0);
  });

  it('builds the session cookie with Secure only behind https', () => {
    expect(sessionCookie('t', { secure: false, maxAgeMs: 60_000 })).toBe(
      'tessera_session=t; Path=/; HttpOnly; SameSite=Strict; Max-Age=60',
    );
    expect(sessionCookie('t', { secure: true, maxAgeMs: 60_000 })).toMatch(/; Secure$/);
  });
});

describe('images for predict', () => {
  it('tells PNG and JPEG by their magic bytes only', () => {
    expect(sniffImage(new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toBe(
      'png',
    );
    expect(sniffImage(new Uint8Array([0xff, 0xd8, 0xff, 0xe0]))).toBe('jpeg');
    expect(sniffImage(new TextEncoder().encode('<svg>'))).toBeNull();
    expect(sniffImage(new Uint8Array([0x89, 0x50]))).toBeNull();
  });

  it('rejects undecodable images with INVALID_ARGUMENT', () => {
    const header = new Uint8Array(64);
    header.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    new DataView(header.buffer).setUint32(16, 10);
    new DataView(header.buffer).setUint32(20, 10);
    expect(() => imageToMnist(header, 'png')).toThrow(
      expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }),
    );
  });
});
