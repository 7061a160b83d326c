import { timingSafeEqual } from 'node:crypto';
import {
  type AccountRepository,
  API_TOKEN_PREFIX,
  type ApiTokenRecord,
  type Database,
  type SessionRecord,
  type UserRecord,
  type UserRole,
} from '@tessera/db';
import { ErrorCode, TesseraError } from '@tessera/protocol';

/** The console's session cookie (httpOnly: page scripts never see it). */
export const SESSION_COOKIE = 'tessera_session';
/** Header carrying the session's CSRF token on every state-changing request. */
export const CSRF_HEADER = 'x-csrf-token';
export const SESSION_TTL_MS = 12 * 3600_000;

/**
 * Who is calling. `user`: a person logged in to the console (cookie session). `apiToken`: a
 * script or the CLI holding a user's API token (Bearer tsa_...): the researcher role with the
 * read scope, whatever its owner's role, so a leaked token can read but never change anything.
 * `service`: a machine holding the bearer admin token (scripts, tests, the demo), with the
 * admin role. `open`: the coordinator runs without an admin token (local use), so everyone is
 * admin.
 */
export type Principal =
  | { kind: 'user'; role: UserRole; user: UserRecord; session: SessionRecord; token: string }
  | {
      kind: 'apiToken';
      role: 'researcher';
      scope: 'read';
      user: UserRecord;
      apiToken: ApiTokenRecord;
    }
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
 * checked first (a wrong one is refused, not ignored): the admin token, else an API token
 * (tsa_..., looked up by its sha256, on an open coordinator too: a token presented keeps its
 * read scope); then the session cookie; with neither, an open coordinator admits the caller as
 * admin and a closed one refuses with UNAUTHORIZED.
 */
export async function resolvePrincipal(
  options: AuthOptions,
  headers: { authorization?: string | undefined; cookie?: string | undefined },
): Promise<Principal> {
  const { authorization } = headers;
  if (authorization !== undefined && authorization !== '') {
    const bearer = authorization.startsWith('Bearer ') ? authorization.slice(7) : null;
    if (
      options.adminToken !== null &&
      bearer !== null &&
      constantTimeEquals(bearer, options.adminToken)
    ) {
      return { kind: 'service', role: 'admin' };
    }
    if (bearer?.startsWith(API_TOKEN_PREFIX)) {
      const found = await options.db.apiTokens.authenticate(bearer);
      if (found === null) {
        throw new TesseraError(
          ErrorCode.UNAUTHORIZED,
          "API token unknown, revoked or expired, or its account is disabled: create a new one on the console's API tokens page (or POST /api/me/tokens)",
          { reason: 'api-token' },
        );
      }
      return {
        kind: 'apiToken',
        role: 'researcher',
        scope: 'read',
        user: found.user,
        apiToken: found.token,
      };
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

/** A read-scoped API token may call GET routes only: every state-changing request is refused. */
export function refuseReadOnlyToken(principal: Principal): void {
  if (principal.kind !== 'apiToken') return;
  throw new TesseraError(
    ErrorCode.FORBIDDEN,
    `API tokens are read-only (scope ${principal.scope}): they read and export, and may not change anything; log in to the console to do that`,
    { reason: 'read-only-token', scope: principal.scope },
  );
}

/**
 * The guard of every state-changing request (routes.ts calls it for each method but GET, HEAD
 * and OPTIONS, before the role check): a read-scoped API token is refused outright
 * (refuseReadOnlyToken), then a session's synchronizer CSRF token is checked. The cookie is
 * SameSite=Strict already; the CSRF token stops the rest (a sibling subdomain, an old
 * browser). Other bearer callers need none: browsers never attach an Authorization header by
 * themselves.
 */
export function checkCsrf(principal: Principal, header: string | undefined): void {
  refuseReadOnlyToken(principal);
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

/** Login attempts allowed per window, by key. */
export interface LoginLimits {
  windowMs: number;
  /** One address guessing one account's password. */
  perAddressAndAccount: number;
  /** One account, from anywhere: what a new X-Forwarded-For per attempt cannot get around. */
  perAccount: number;
  /** One address, across accounts. */
  perAddress: number;
}

export const DEFAULT_LOGIN_LIMITS: LoginLimits = {
  windowMs: 15 * 60_000,
  perAddressAndAccount: 5,
  perAccount: 20,
  perAddress: 30,
};

type LoginThrottleStore = Pick<
  AccountRepository,
  'reserveLoginAttempt' | 'clearLoginAttempts' | 'releaseLoginAttempt' | 'purgeLoginAttempts'
>;

/**
 * Limits logins per (address, account), per account and per address in a fixed window, with
 * the counts in the database so that every coordinator on it shares them. A slot is reserved
 * before the password is hashed, so 40 concurrent guesses get 5 hashes, not 40; a successful
 * login clears its account's counts and gives its address's slot back, so someone who types the
 * password right is not slowed down by their own earlier typos, nor an office by its logins.
 */
export class LoginRateLimiter {
  private lastPurge = 0;

  constructor(
    private readonly store: LoginThrottleStore,
    private readonly limits: LoginLimits = DEFAULT_LOGIN_LIMITS,
  ) {}

  /** Reserves an attempt; RATE_LIMITED (with retryAfterSeconds) when any key is over. */
  async reserve(address: string, email: string, now = new Date()): Promise<void> {
    this.purgeNowAndThen(now);
    const account = normaliseLoginEmail(email);
    const reservation = await this.store.reserveLoginAttempt(
      [
        { key: `pair:${address}:${account}`, limit: this.limits.perAddressAndAccount },
        { key: `account:${account}`, limit: this.limits.perAccount },
        { key: `address:${address}`, limit: this.limits.perAddress },
      ],
      this.limits.windowMs,
      now,
    );
    if (!reservation.allowed) {
      const { retryAfterSeconds } = reservation;
      throw new TesseraError(
        ErrorCode.RATE_LIMITED,
        `too many login attempts; try again in ${retryAfterSeconds} s`,
        { retryAfterSeconds },
      );
    }
  }

  /** A login succeeded: its account's counts start again, and it does not count for its address. */
  async succeeded(address: string, email: string): Promise<void> {
    const account = normaliseLoginEmail(email);
    await this.store.clearLoginAttempts([`pair:${address}:${account}`, `account:${account}`]);
    await this.store.releaseLoginAttempt([`address:${address}`]);
  }

  /** Old windows are deleted at most once a window, in the background. */
  private purgeNowAndThen(now: Date): void {
    if (now.getTime() - this.lastPurge < this.limits.windowMs) return;
    this.lastPurge = now.getTime();
    this.store.purgeLoginAttempts(new Date(now.getTime() - this.limits.windowMs)).catch(() => {});
  }
}

function normaliseLoginEmail(email: string): string {
  return email.trim().toLowerCase();
}
