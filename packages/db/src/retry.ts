import { EventEmitter } from 'node:events';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { Database } from './database.js';
import { Prisma } from './generated/client.js';

/**
 * Database outages, survived: a decorator of `Database` that retries every repository call on
 * a transient failure (connection refused, reset or timed out; the server shutting down) with
 * exponential backoff and full jitter, for a bounded time, and a health record of the outage
 * for /healthz and /readyz. Permanent failures (constraint violations, bad input, not found)
 * are thrown at once. A retried call must be idempotent: the calls the round engine and the
 * socket edge make are (a round's commit and its evaluation record are idempotent by run and
 * round; see RoundRepository).
 */

/** How long a call is retried, and how its attempts are spaced. */
export interface RetryPolicy {
  /** A call keeps being retried for this long after its first failure, then throws. */
  retryForMs: number;
  /** The first backoff; each next one doubles, up to maxDelayMs (each drawn in [0, cap]). */
  initialDelayMs: number;
  maxDelayMs: number;
  /**
   * An attempt that has not answered in this long counts as a transient failure: a partition
   * (a black-holed connection) never answers, and the driver would wait forever.
   */
  attemptTimeoutMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  retryForMs: 180_000,
  initialDelayMs: 100,
  maxDelayMs: 5_000,
  attemptTimeoutMs: 60_000,
};

/** Prisma error codes of a lost or unreachable database (not of a refused query). */
const TRANSIENT_PRISMA_CODES = new Set([
  'P1001', // can't reach database server
  'P1002', // server reached but timed out
  'P1008', // operations timed out
  'P1017', // server has closed the connection
  'P2024', // timed out fetching a new connection from the pool
  'P2028', // transaction API error: its connection went away mid-transaction
  'P2034', // write conflict or deadlock: try again
]);

/** Driver adapter error kinds (Prisma 7's `meta.driverAdapterError.cause.kind`) that are transient. */
const TRANSIENT_ADAPTER_KINDS = new Set([
  'DatabaseNotReachable',
  'ConnectionClosed',
  'SocketTimeout',
  'TooManyConnections',
  'TransactionAlreadyClosed',
]);

/** Node socket errors of a connection that may work on the next try. */
const TRANSIENT_SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
]);

/**
 * SQLSTATEs of a connection problem or a server going away: class 08 (connection exception),
 * 57P01-57P03 (admin shutdown, crash shutdown, cannot connect now), 53300 (too many
 * connections), 40001/40P01 (serialization failure, deadlock: the transaction may be retried).
 */
function isTransientSqlState(code: string): boolean {
  return (
    /^08[0-9A-Z]{3}$/.test(code) ||
    code === '57P01' ||
    code === '57P02' ||
    code === '57P03' ||
    code === '53300' ||
    code === '40001' ||
    code === '40P01'
  );
}

/** pg's own messages for a connection lost or never made (they carry no code). */
const TRANSIENT_MESSAGES = [
  /connection terminated/i,
  /timeout exceeded when trying to connect/i,
  /server closed the connection unexpectedly/i,
  /the database system is (starting up|shutting down)/i,
];

/**
 * Whether a database call that threw this may succeed if tried again. Walks the cause chain,
 * so a transient error wrapped by a repository is still seen as transient.
 */
export function isTransientDatabaseError(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < 8 && current !== undefined && current !== null; depth++) {
    if (current instanceof AttemptTimeout) return true;
    if (current instanceof TesseraError) {
      // Any other TesseraError is our own refusal (not found, conflict, bad input): final.
      return current.code === ErrorCode.UNAVAILABLE;
    }
    if (current instanceof Prisma.PrismaClientInitializationError) {
      return true;
    } else if (current instanceof Prisma.PrismaClientKnownRequestError) {
      if (TRANSIENT_PRISMA_CODES.has(current.code)) return true;
      if (isTransientAdapterMeta(current.meta)) return true;
      return false;
    } else if (typeof current === 'object') {
      const { code, message } = current as { code?: unknown; message?: unknown };
      if (
        typeof code === 'string' &&
        (TRANSIENT_SOCKET_CODES.has(code) || isTransientSqlState(code))
      )
        return true;
      if (
        typeof message === 'string' &&
        TRANSIENT_MESSAGES.some((pattern) => pattern.test(message))
      )
        return true;
    }
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

function isTransientAdapterMeta(meta: Record<string, unknown> | undefined): boolean {
  const adapterError = meta?.['driverAdapterError'];
  if (typeof adapterError !== 'object' || adapterError === null) return false;
  const cause = (adapterError as { cause?: unknown }).cause;
  if (typeof cause !== 'object' || cause === null) return false;
  const { kind, originalCode } = cause as { kind?: unknown; originalCode?: unknown };
  if (typeof kind === 'string' && TRANSIENT_ADAPTER_KINDS.has(kind)) return true;
  return typeof originalCode === 'string' && isTransientSqlState(originalCode);
}

/** An attempt that did not answer within the policy's attemptTimeoutMs. */
class AttemptTimeout extends Error {
  constructor(call: string, ms: number) {
    super(`${call} did not answer within ${ms} ms`);
    this.name = 'AttemptTimeout';
  }
}

export interface DatabaseHealthSnapshot {
  /** `ok`: the last database call answered; `unavailable`: calls are failing and being retried. */
  status: 'ok' | 'unavailable';
  /** When the database went down (status unavailable) or came back (status ok; null if never down). */
  since: Date | null;
  /** The last transient failure of this outage, for operators. */
  lastError: string | null;
  /** Calls now waiting for the database. */
  waitingCalls: number;
}

interface HealthEvents {
  unavailable: [DatabaseHealthSnapshot];
  restored: [DatabaseHealthSnapshot & { downForMs: number }];
}

/** Whether the database answers, as the retried calls (and probes) see it. */
export class DatabaseHealth extends EventEmitter<HealthEvents> {
  private status: DatabaseHealthSnapshot['status'] = 'ok';
  private since: Date | null = null;
  private lastError: string | null = null;
  waitingCalls = 0;

  snapshot(): DatabaseHealthSnapshot {
    return {
      status: this.status,
      since: this.since,
      lastError: this.lastError,
      waitingCalls: this.waitingCalls,
    };
  }

  get available(): boolean {
    return this.status === 'ok';
  }

  reportFailure(error: unknown): void {
    this.lastError = error instanceof Error ? firstLine(error.message) : String(error);
    if (this.status === 'unavailable') return;
    this.status = 'unavailable';
    this.since = new Date();
    this.emit('unavailable', this.snapshot());
  }

  reportSuccess(): void {
    if (this.status === 'ok') return;
    const downSince = this.since ?? new Date();
    this.status = 'ok';
    this.since = new Date();
    this.emit('restored', {
      ...this.snapshot(),
      downForMs: this.since.getTime() - downSince.getTime(),
    });
    this.lastError = null;
  }
}

/** Prisma's messages start with a multi-line call site; the reason is on the last line. */
function firstLine(message: string): string {
  const lines = message
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  return (lines.at(-1) ?? message).slice(0, 300);
}

export interface RetryingDatabase extends Database {
  readonly health: DatabaseHealth;
  readonly retryPolicy: RetryPolicy;
  /**
   * Makes every call now waiting for the database throw UNAVAILABLE at once, and every later
   * one fail without retrying: for a process shutting down, which must not wait out an outage.
   */
  cancelRetries(): void;
}

export interface RetryOptions {
  policy?: Partial<RetryPolicy>;
  /** Shared with probes and other decorators of the same database; one is made otherwise. */
  health?: DatabaseHealth;
  /** For tests: the jitter source. */
  random?: () => number;
  /** Told of every call when it settles: its name (`rounds.commit`), seconds (retries included), success. */
  observe?: (call: string, seconds: number, ok: boolean) => void;
}

/** The repositories of `Database` whose calls are retried (the raw `prisma` client is not). */
const REPOSITORIES = [
  'federations',
  'clients',
  'accounts',
  'apiTokens',
  'runs',
  'rounds',
  'tasks',
  'leases',
] as const;

/** `db` with every repository call retried on transient failures (see RetryPolicy). */
export function withRetries(db: Database, options: RetryOptions = {}): RetryingDatabase {
  const policy = resolvePolicy(options.policy);
  const health = options.health ?? new DatabaseHealth();
  const random = options.random ?? Math.random;
  const cancel = new AbortController();

  const call = async <T>(name: string, attempt: () => Promise<T>): Promise<T> => {
    if (options.observe === undefined) return retried(name, attempt);
    const started = performance.now();
    let ok = false;
    try {
      const result = await retried(name, attempt);
      ok = true;
      return result;
    } finally {
      options.observe(name, (performance.now() - started) / 1000, ok);
    }
  };

  const retried = async <T>(name: string, attempt: () => Promise<T>): Promise<T> => {
    const startedAt = Date.now();
    let backoffCap = policy.initialDelayMs;
    let waiting = false;
    try {
      for (;;) {
        if (cancel.signal.aborted) throw cancelled(name);
        try {
          const result = await withTimeout(name, attempt(), policy.attemptTimeoutMs, cancel.signal);
          health.reportSuccess();
          return result;
        } catch (error) {
          if (cancel.signal.aborted) throw cancelled(name, error);
          if (!isTransientDatabaseError(error)) {
            // A refusal from the database itself means it is up (ours may come before asking it).
            if (error instanceof Prisma.PrismaClientKnownRequestError) health.reportSuccess();
            throw error;
          }
          health.reportFailure(error);
          const elapsed = Date.now() - startedAt;
          if (elapsed >= policy.retryForMs) {
            throw new TesseraError(
              ErrorCode.UNAVAILABLE,
              `database unavailable for ${Math.round(elapsed / 1000)} s (the retry bound); ${name} failed: ${firstLine((error as Error).message ?? String(error))}`,
              { call: name, retriedForMs: elapsed },
              { cause: error },
            );
          }
          if (!waiting) {
            waiting = true;
            health.waitingCalls += 1;
          }
          const delay = Math.min(random() * backoffCap, policy.retryForMs - elapsed);
          backoffCap = Math.min(backoffCap * 2, policy.maxDelayMs);
          await sleep(delay, cancel.signal);
        }
      }
    } finally {
      if (waiting) health.waitingCalls -= 1;
    }
  };

  const wrapped = Object.fromEntries(
    REPOSITORIES.map((key) => [key, retryingRepository(key, db[key], call)]),
  ) as Pick<Database, (typeof REPOSITORIES)[number]>;

  return {
    kind: db.kind,
    prisma: db.prisma,
    migrations: db.migrations,
    ...wrapped,
    health,
    retryPolicy: policy,
    cancelRetries: () => cancel.abort(),
    close: () => {
      cancel.abort();
      return db.close();
    },
  };
}

function resolvePolicy(overrides: Partial<RetryPolicy> = {}): RetryPolicy {
  const policy = { ...DEFAULT_RETRY_POLICY, ...overrides };
  for (const [field, value] of Object.entries(policy)) {
    if (!Number.isFinite(value) || value < 0) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `retry policy ${field} must be a finite number >= 0 (got ${String(value)})`,
        { field: `retryPolicy.${field}` },
      );
    }
  }
  if (policy.attemptTimeoutMs === 0) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      'retry policy attemptTimeoutMs must be > 0',
      {
        field: 'retryPolicy.attemptTimeoutMs',
      },
    );
  }
  return policy;
}

type Call = <T>(name: string, attempt: () => Promise<T>) => Promise<T>;

/** The same repository, each method call going through `call`; other properties as they are. */
function retryingRepository<R extends object>(name: string, repository: R, call: Call): R {
  return new Proxy(repository, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== 'function' || typeof property !== 'string') return value;
      const method = value as (...args: unknown[]) => unknown;
      return (...args: unknown[]) =>
        call(`${name}.${property}`, async () => method.apply(target, args));
    },
  });
}

function cancelled(name: string, cause?: unknown): TesseraError {
  return new TesseraError(
    ErrorCode.UNAVAILABLE,
    `${name} abandoned: the process is shutting down`,
    { call: name },
    cause === undefined ? undefined : { cause },
  );
}

function withTimeout<T>(
  name: string,
  promise: Promise<T>,
  ms: number,
  signal: AbortSignal,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(cancelled(name));
    const timer = setTimeout(() => reject(new AttemptTimeout(name, ms)), ms);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    });
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
