import { ErrorCode, TesseraError } from '@tessera/protocol';

export interface PredictLimits {
  /** Predictions one session may have running at once. */
  maxInFlight: number;
  /** Predictions one session may start in a sliding minute. */
  perMinute: number;
}

export const DEFAULT_PREDICT_LIMITS: PredictLimits = { maxInFlight: 2, perMinute: 120 };

const MINUTE_MS = 60_000;

/**
 * Rate limits `predict` per caller (a console session, or the bearer token): requests in flight
 * and requests per minute, in memory, because a prediction loads only this process. Refusals
 * are RATE_LIMITED with `retryAfterSeconds`.
 */
export class PredictLimiter {
  private readonly inFlight = new Map<string, number>();
  private readonly started = new Map<string, number[]>();

  constructor(private readonly limits: PredictLimits = DEFAULT_PREDICT_LIMITS) {}

  /** Takes a slot for `key`; call the returned function when the prediction is done. */
  acquire(key: string, now = Date.now()): () => void {
    const running = this.inFlight.get(key) ?? 0;
    if (running >= this.limits.maxInFlight) {
      throw new TesseraError(
        ErrorCode.RATE_LIMITED,
        `at most ${this.limits.maxInFlight} predictions at a time per session; wait for one to finish`,
        { retryAfterSeconds: 1, limit: 'inFlight' },
      );
    }
    const recent = (this.started.get(key) ?? []).filter((at) => at > now - MINUTE_MS);
    if (recent.length >= this.limits.perMinute) {
      const retryAfterSeconds = Math.max(
        1,
        Math.ceil(((recent[0] ?? now) + MINUTE_MS - now) / 1000),
      );
      throw new TesseraError(
        ErrorCode.RATE_LIMITED,
        `at most ${this.limits.perMinute} predictions a minute per session; try again in ${retryAfterSeconds} s`,
        { retryAfterSeconds, limit: 'perMinute' },
      );
    }
    recent.push(now);
    this.started.set(key, recent);
    this.inFlight.set(key, running + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.inFlight.get(key) ?? 1) - 1;
      if (left > 0) this.inFlight.set(key, left);
      else this.inFlight.delete(key);
      if (this.started.size > 10_000) this.prune(Date.now());
    };
  }

  private prune(now: number): void {
    for (const [key, times] of this.started) {
      if (times.every((at) => at <= now - MINUTE_MS)) this.started.delete(key);
    }
  }
}
