import type { RateLimit } from '@tessera/protocol';

/**
 * Token buckets keyed by a string (a remote address, a presented token), in this process's
 * memory. Each key starts with `capacity` attempts and regains one every `refillMs`. The
 * scale-out work will move the counts to shared storage; the interface stays.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly limit: RateLimit,
    private readonly now: () => number = Date.now,
    /** Keys kept at most; full buckets are forgotten first (they carry no information). */
    private readonly maxKeys = 100_000,
  ) {}

  /** Takes one attempt for `key`: 0 when allowed, else the seconds until one is available. */
  take(key: string): number {
    const now = this.now();
    const bucket = this.refilled(key, now);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      this.buckets.set(key, bucket);
      if (this.buckets.size > this.maxKeys) this.prune(now);
      return 0;
    }
    this.buckets.set(key, bucket);
    return Math.max(1, Math.ceil(((1 - bucket.tokens) * this.limit.refillMs) / 1000));
  }

  private refilled(key: string, now: number): { tokens: number; at: number } {
    const bucket = this.buckets.get(key);
    if (!bucket) return { tokens: this.limit.capacity, at: now };
    const gained = (now - bucket.at) / this.limit.refillMs;
    return { tokens: Math.min(this.limit.capacity, bucket.tokens + gained), at: now };
  }

  private prune(now: number): void {
    for (const key of this.buckets.keys()) {
      if (this.refilled(key, now).tokens >= this.limit.capacity) this.buckets.delete(key);
    }
    // Still over (a flood of distinct keys): drop the oldest entries, Map order is insertion.
    for (const key of this.buckets.keys()) {
      if (this.buckets.size <= this.maxKeys) break;
      this.buckets.delete(key);
    }
  }
}

/** Loopback peers (same-host simulations, a local reverse proxy) share one address. */
export function isLoopback(address: string): boolean {
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}
