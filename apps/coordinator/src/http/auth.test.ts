import { ErrorCode } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import { LoginRateLimiter, parseCookies, sessionCookie } from './auth.js';
import { imageToMnist, sniffImage } from './predict.js';

describe('LoginRateLimiter', () => {
  const limits = { windowMs: 60_000, perAccount: 3, perAddress: 5 };

  it('counts failures per address and account in a sliding window', () => {
    const limiter = new LoginRateLimiter(limits);
    for (let k = 0; k < 3; k++) limiter.recordFailure('10.0.0.1', 'a@x.org', 1000 + k);
    expect(() => limiter.check('10.0.0.1', 'A@x.org ', 2000)).toThrow(
      expect.objectContaining({ code: ErrorCode.RATE_LIMITED, data: { retryAfterSeconds: 59 } }),
    );
    // Another account from the address, and the account from another address, still may try.
    expect(() => limiter.check('10.0.0.1', 'b@x.org', 2000)).not.toThrow();
    expect(() => limiter.check('10.0.0.2', 'a@x.org', 2000)).not.toThrow();
    // The window slides: a minute after the failures, the account may try again.
    expect(() => limiter.check('10.0.0.1', 'a@x.org', 61_003)).not.toThrow();
  });

  it('limits an address that guesses across many accounts', () => {
    const limiter = new LoginRateLimiter(limits);
    for (let k = 0; k < 5; k++) limiter.recordFailure('10.0.0.9', `user${k}@x.org`, 1000);
    expect(() => limiter.check('10.0.0.9', 'fresh@x.org', 1001)).toThrow(
      expect.objectContaining({ code: ErrorCode.RATE_LIMITED }),
    );
  });

  it('forgets an account’s failures after a successful login', () => {
    const limiter = new LoginRateLimiter(limits);
    for (let k = 0; k < 2; k++) limiter.recordFailure('10.0.0.1', 'a@x.org', 1000);
    limiter.recordSuccess('10.0.0.1', 'a@x.org');
    limiter.recordFailure('10.0.0.1', 'a@x.org', 1001);
    expect(() => limiter.check('10.0.0.1', 'a@x.org', 1002)).not.toThrow();
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
