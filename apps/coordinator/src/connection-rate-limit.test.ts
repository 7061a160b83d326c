import { describe, expect, it } from 'vitest';
import { isLoopback, RateLimiter } from './connection-rate-limit.js';

describe('RateLimiter', () => {
  it('allows `capacity` attempts at once, then one per refill period, per key', () => {
    let now = 0;
    const limiter = new RateLimiter({ capacity: 3, refillMs: 5000 }, () => now);
    expect([1, 2, 3].map(() => limiter.take('a'))).toEqual([0, 0, 0]);
    expect(limiter.take('a')).toBe(5);
    expect(limiter.take('b')).toBe(0);
    now = 2000;
    expect(limiter.take('a')).toBe(3);
    now = 5000;
    expect(limiter.take('a')).toBe(0);
    expect(limiter.take('a')).toBe(5);
    now = 1_000_000;
    expect([1, 2, 3, 4].map(() => limiter.take('a'))).toEqual([0, 0, 0, 5]);
  });

  it('keeps at most maxKeys keys, forgetting full buckets first', () => {
    let now = 0;
    const limiter = new RateLimiter({ capacity: 2, refillMs: 1000 }, () => now, 2);
    limiter.take('old');
    now = 10_000; // 'old' is full again
    limiter.take('x');
    limiter.take('x');
    limiter.take('y');
    // 'x' is still empty, so it was kept.
    expect(limiter.take('x')).toBe(1);
  });

  it('knows loopback addresses', () => {
    expect(['127.0.0.1', '::1', '::ffff:127.0.0.1', '127.3.2.1'].every(isLoopback)).toBe(true);
    expect(['10.0.0.1', '::ffff:10.0.0.1', '192.0.2.2', '1270::1'].some(isLoopback)).toBe(false);
  });
});
