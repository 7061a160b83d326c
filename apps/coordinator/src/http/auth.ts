import { timingSafeEqual } from 'node:crypto';
import type { Database, SessionRecord, UserRecord, UserRole } from '@tessera/db';
import { ErrorCode, TesseraError } from '@tessera/protocol';

/** The console's session cookie (httpOnly: page scripts never see it). */
export const SESSION_COOKIE = 'tessera_session';
/** Header carrying the session's CSRF token on every state-changing request. */
export const CSRF_HEADER = 'x-csrf-token';
export const SESSION_TTL_MS = 12 * 3600_000;

/**
 * Who is calling. `user`: a person logged in to the console (cookie session). `service`: a
 * machine holding the bearer admin token (scripts, tests, the demo), with the admin role.
 * `open`: the coordinator runs without an admin token (local use), so everyone is admin.
 */
export type Principal =
  | { kind: 'user'; role: UserRole; user: UserRecord; session: SessionRecord; token: string }
  | { kind: 'service' | 'open'; role: 'admin' };

export interface AuthOptions {
  db: Database;
  /** Bearer token with the admin role; null opens the API to anyone (local tests, demo). */
  adminToken: string | null;
}

/** `a=b; c=d` as a map. Values are not URL-decoded: ours are base64url. */
export function parseCookies(header: string | undefined): Map<string, string> {
  const cookies = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const pair = part.trim();
    const at = pair.indexOf('=');
    if (at <= 0) continue;
    const name = pair.slice(0, at).trim();
    if (!cookies.has(name)) cookies.set(name, pair.slice(at + 1).trim());
  }
  return cookies;
}

export function constantTimeEquals(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Resolves the caller from the request's Authorization and Cookie headers. A bearer header is
 * checked first (a wrong one is refused, not ignored); then the session cookie; with neither,
 * an open coordinator admits the caller as admin and a closed one refuses with UNAUTHORIZED.
 */
export async function resolvePrincipal(
  options: AuthOptions,
  headers: { authorization?: string | undefined; cookie?: string | undefined },
): Promise<Principal> {
  const { authorization } = headers;
  if (authorization !== undefined && authorization !== '') {
    if (
      options.adminToken !== null &&
      authorization.startsWith('Bearer ') &&
      constantTimeEquals(authorization.slice(7), options.adminToken)
    ) {
      return { kind: 'service', role: 'admin' };
    }
    if (options.adminToken !== null) {
      throw new TesseraError(ErrorCode.UNAUTHORIZED, 'wrong admin token (Authorization: Bearer)');
    }
  }
  const token = parseCookies(headers.cookie).get(SESSION_COOKIE);
  if (token !== undefined && token !== '') {
    const found = await options.db.accounts.findSession(token);
    if (found) return { kind: 'user', role: found.user.role, token, ...found };
    if (options.adminToken !== null) {
      throw new TesseraError(ErrorCode.UNAUTHORIZED, 'session expired or unknown: log in again');
    }
  }
  if (options.adminToken === null) return { kind: 'open', role: 'admin' };
  throw new TesseraError(
    ErrorCode.UNAUTHORIZED,
    'not logged in (session cookie) and no admin token (Authorization: Bearer)',
  );
}

/** Admins may do everything; researchers read, export and predict. */
export function requireAdmin(principal: Principal, action: string): void {
  if (principal.role !== 'admin') {
    throw new TesseraError(
      ErrorCode.FORBIDDEN,
      `the ${principal.role} role may not ${action}; ask an admin`,
      { role: principal.role, action },
    );
  }
}

/**
 * Synchronizer-token CSRF check. The cookie is SameSite=Strict already; the token stops the
 * rest (a sibling subdomain, an old browser). Bearer callers need none: browsers never attach
 * an Authorization header by themselves.
 */
export function checkCsrf(principal: Principal, header: string | undefined): void {
  if (principal.kind !== 'user') return;
  if (header === undefined || !constantTimeEquals(header, principal.session.csrfToken)) {
    throw new TesseraError(
      ErrorCode.FORBIDDEN,
      `missing or wrong CSRF token (header ${CSRF_HEADER}); reload the console`,
      { reason: 'csrf' },
    );
  }
}

export function sessionCookie(token: string, options: { secure: boolean; maxAgeMs: number }) {
  const parts = [
    `${SESSION_COOKIE}=${token}`,
    'Path=/',
    'HttpOnly',
    'SameSite=Strict',
    `Max-Age=${Math.floor(options.maxAgeMs / 1000)}`,
  ];
  if (options.secure) parts.push('Secure');
  return parts.join('; ');
}

export function clearedSessionCookie(secure: boolean): string {
  return sessionCookie('', { secure, maxAgeMs: 0 });
}

interface Window {
  failures: number[];
}

/**
 * Counts failed logins in a sliding window, per (address, email) and per address, in memory.
 * Only failures count, so a user who types the password right is never slowed down, and a
 * success clears that account's count. In memory because it is per process: several
 * coordinators each allow the limit, which still caps guessing at a few per minute per process
 * (the password KDF costs 0.1-0.25 s each anyway).
 */
export class LoginRateLimiter {
  private readonly windows = new Map<string, Window>();

  constructor(
    private readonly limits = {
      windowMs: 15 * 60_000,
      perAccount: 5,
      perAddress: 30,
    },
  ) {}

  /** Throws RATE_LIMITED when either key is over its limit. */
  check(address: string, email: string, now = Date.now()): void {
    for (const [key, limit] of this.keys(address, email)) {
      const failures = this.recent(key, now);
      if (failures.length >= limit) {
        const oldest = failures[0] ?? now;
        const retryAfterSeconds = Math.max(
          1,
          Math.ceil((oldest + this.limits.windowMs - now) / 1000),
        );
        throw new TesseraError(
          ErrorCode.RATE_LIMITED,
          `too many failed logins; try again in ${retryAfterSeconds} s`,
          { retryAfterSeconds },
        );
      }
    }
  }

  recordFailure(address: string, email: string, now = Date.now()): void {
    for (const [key] of this.keys(address, email)) {
      const failures = this.recent(key, now);
      failures.push(now);
      this.windows.set(key, { failures });
    }
    if (this.windows.size > 10_000) this.prune(now);
  }

  recordSuccess(address: string, email: string): void {
    this.windows.delete(`account:${address}:${email.trim().toLowerCase()}`);
  }

  private keys(address: string, email: string): Array<[string, number]> {
    return [
      [`account:${address}:${email.trim().toLowerCase()}`, this.limits.perAccount],
      [`address:${address}`, this.limits.perAddress],
    ];
  }

  private recent(key: string, now: number): number[] {
    const failures = this.windows.get(key)?.failures ?? [];
    return failures.filter((at) => at > now - this.limits.windowMs);
  }

  private prune(now: number): void {
    for (const [key, window] of this.windows) {
      if (window.failures.every((at) => at <= now - this.limits.windowMs)) this.windows.delete(key);
    }
  }
}
