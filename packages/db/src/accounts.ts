import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { PrismaClient, Session, User } from './generated/client.js';
import { isRecordNotFound, isUniqueViolation, notFound } from './internal.js';
import { invalid, requireId, requireString } from './validate.js';

export const USER_ROLES = ['admin', 'researcher'] as const;
export type UserRole = (typeof USER_ROLES)[number];

/** A console account. The password hash never leaves this module. */
export interface UserRecord {
  id: string;
  email: string;
  name: string;
  role: UserRole;
  createdAt: Date;
  disabledAt: Date | null;
}

export interface SessionRecord {
  /** sha256 (hex) of the session token: safe to log, useless as a cookie. */
  id: string;
  userId: string;
  /** Sent back by the console in a header on every state-changing request. */
  csrfToken: string;
  createdAt: Date;
  expiresAt: Date;
  lastSeenAt: Date;
}

export interface CreateUserInput {
  email: string;
  name?: string;
  role: UserRole;
  password: string;
}

/** One key of the login limiter (e.g. `account:<email>`) and the attempts it allows per window. */
export interface LoginLimit {
  key: string;
  limit: number;
}

export type LoginReservation =
  | { allowed: true }
  | { allowed: false; key: string; retryAfterSeconds: number };

export const PASSWORD_MIN_LENGTH = 10;
/** scrypt reads the whole password; a bound keeps a login request from becoming a CPU sink. */
export const PASSWORD_MAX_LENGTH = 1024;

/**
 * scrypt cost: N = 2^15, r = 8, p = 1 uses 32 MiB and 0.1-0.25 s per hash on these 2-core machines,
 * the OWASP baseline. The parameters are stored with each hash, so raising them later only
 * affects new hashes.
 */
const SCRYPT = { N: 2 ** 15, r: 8, p: 1, keyLength: 32, saltLength: 16 } as const;
const SESSION_TOKEN_BYTES = 32;
/** lastSeenAt is written at most this often per session: reads should not all become writes. */
const TOUCH_INTERVAL_MS = 60_000;

function scryptAsync(
  password: string,
  salt: Buffer,
  params: { N: number; r: number; p: number; keyLength: number },
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(
      password.normalize('NFKC'),
      salt,
      params.keyLength,
      // maxmem must exceed 128 * N * r bytes, or Node refuses the parameters.
      { N: params.N, r: params.r, p: params.p, maxmem: 256 * params.N * params.r },
      (error, key) => (error ? reject(error) : resolve(key)),
    );
  });
}

/** `scrypt$N$r$p$salt$hash`, salt and hash in base64url: self-describing, so it can evolve. */
export async function hashPassword(password: string): Promise<string> {
  checkPassword(password);
  const salt = randomBytes(SCRYPT.saltLength);
  const key = await scryptAsync(password, salt, SCRYPT);
  return [
    'scrypt',
    SCRYPT.N,
    SCRYPT.r,
    SCRYPT.p,
    salt.toString('base64url'),
    key.toString('base64url'),
  ].join('$');
}

/** Constant-time comparison of a password with a stored hash; false for a malformed hash. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  const salt = Buffer.from(parts[4] ?? '', 'base64url');
  const expected = Buffer.from(parts[5] ?? '', 'base64url');
  if (![N, r, p].every(Number.isSafeInteger) || expected.length === 0) return false;
  if (typeof password !== 'string' || password.length > PASSWORD_MAX_LENGTH) return false;
  const key = await scryptAsync(password, salt, { N, r, p, keyLength: expected.length });
  return timingSafeEqual(key, expected);
}

function checkPassword(password: unknown): asserts password is string {
  if (typeof password !== 'string' || password.length < PASSWORD_MIN_LENGTH) {
    throw invalid('password', `must be at least ${PASSWORD_MIN_LENGTH} characters`);
  }
  if (password.length > PASSWORD_MAX_LENGTH) {
    throw invalid('password', `must be at most ${PASSWORD_MAX_LENGTH} characters`);
  }
}

function normaliseEmail(email: unknown): string {
  const value = requireString('email', email, 320).trim().toLowerCase();
  // Deliberately loose: one @ with something on each side. Delivery is not this module's job.
  if (!/^[^\s@]+@[^\s@]+$/.test(value)) throw invalid('email', 'is not an email address', value);
  return value;
}

function requireRole(role: unknown): UserRole {
  if (!(USER_ROLES as readonly unknown[]).includes(role)) {
    throw invalid('role', `must be one of ${USER_ROLES.join(', ')}`, role);
  }
  return role as UserRole;
}

export function hashSessionToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/**
 * Console accounts and their sessions. Sessions are looked up by the sha256 of the cookie's
 * token (256 random bits, so a fast hash is enough and the lookup leaks nothing useful).
 */
export class AccountRepository {
  /** Hashed once, lazily: a login for an unknown email still pays for one scrypt. */
  private dummyHash: Promise<string> | undefined;

  constructor(private readonly prisma: PrismaClient) {}

  async createUser(input: CreateUserInput): Promise<UserRecord> {
    const email = normaliseEmail(input.email);
    const role = requireRole(input.role);
    const name = input.name === undefined ? email : requireString('name', input.name, 200).trim();
    const passwordHash = await hashPassword(input.password);
    try {
      return toUserRecord(
        await this.prisma.user.create({ data: { email, name, role, passwordHash } }),
      );
    } catch (error) {
      if (isUniqueViolation(error)) {
        throw new TesseraError(ErrorCode.CONFLICT, `a user with email ${email} already exists`, {
          field: 'email',
        });
      }
      throw error;
    }
  }

  async getUser(id: string): Promise<UserRecord> {
    requireId('userId', id);
    const row = await this.prisma.user.findUnique({ where: { id } });
    if (row === null) throw notFound('user', id);
    return toUserRecord(row);
  }

  async listUsers(): Promise<UserRecord[]> {
    const rows = await this.prisma.user.findMany({
      orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
    });
    return rows.map(toUserRecord);
  }

  async countUsers(): Promise<number> {
    return this.prisma.user.count();
  }

  /**
   * The user whose email and password these are, or null (unknown email, wrong password or
   * disabled account: the caller cannot tell which, and neither can a stopwatch).
   */
  async verifyLogin(email: string, password: string): Promise<UserRecord | null> {
    let normalised: string;
    try {
      normalised = normaliseEmail(email);
    } catch {
      return null;
    }
    const row = await this.prisma.user.findUnique({ where: { email: normalised } });
    if (row === null) {
      this.dummyHash ??= hashPassword(randomBytes(16).toString('hex'));
      await verifyPassword(String(password), await this.dummyHash);
      return null;
    }
    const matches = await verifyPassword(String(password), row.passwordHash);
    return matches && row.disabledAt === null ? toUserRecord(row) : null;
  }

  async setPassword(userId: string, password: string): Promise<void> {
    requireId('userId', userId);
    const passwordHash = await hashPassword(password);
    try {
      await this.prisma.user.update({ where: { id: userId }, data: { passwordHash } });
    } catch (error) {
      if (isRecordNotFound(error)) throw notFound('user', userId);
      throw error;
    }
    // A new password ends every open session of the account.
    await this.prisma.session.deleteMany({ where: { userId } });
  }

  /** Disables an account and ends its sessions; it can no longer log in. */
  async disableUser(userId: string): Promise<UserRecord> {
    requireId('userId', userId);
    await this.prisma.user.updateMany({
      where: { id: userId, disabledAt: null },
      data: { disabledAt: new Date() },
    });
    await this.prisma.session.deleteMany({ where: { userId } });
    return this.getUser(userId);
  }

  /** Opens a session; the token (for the cookie) is returned here only. */
  async createSession(
    userId: string,
    ttlMs: number,
  ): Promise<{ token: string; session: SessionRecord }> {
    requireId('userId', userId);
    if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) {
      throw invalid('ttlMs', 'must be a positive integer', ttlMs);
    }
    const token = randomBytes(SESSION_TOKEN_BYTES).toString('base64url');
    const now = new Date();
    const row = await this.prisma.session.create({
      data: {
        id: hashSessionToken(token),
        userId,
        csrfToken: randomBytes(SESSION_TOKEN_BYTES).toString('base64url'),
        createdAt: now,
        lastSeenAt: now,
        expiresAt: new Date(now.getTime() + ttlMs),
      },
    });
    return { token, session: toSessionRecord(row) };
  }

  /**
   * The live session of a cookie token and its user, or null when the token is unknown or
   * expired or the account is disabled. Marks the session seen (at most once a minute).
   */
  async findSession(token: string): Promise<{ session: SessionRecord; user: UserRecord } | null> {
    if (typeof token !== 'string' || token.length === 0 || token.length > 200) return null;
    const row = await this.prisma.session.findUnique({
      where: { id: hashSessionToken(token) },
      include: { user: true },
    });
    const now = new Date();
    if (row === null || row.user.disabledAt !== null) return null;
    if (row.expiresAt <= now) {
      await this.prisma.session.deleteMany({ where: { id: row.id } });
      return null;
    }
    let session = row;
    if (now.getTime() - row.lastSeenAt.getTime() > TOUCH_INTERVAL_MS) {
      await this.prisma.session.updateMany({ where: { id: row.id }, data: { lastSeenAt: now } });
      session = { ...row, lastSeenAt: now };
    }
    return { session: toSessionRecord(session), user: toUserRecord(row.user) };
  }

  /** Ends a session (logout). Unknown tokens are ignored: logging out twice is fine. */
  async deleteSession(token: string): Promise<void> {
    if (typeof token !== 'string' || token.length === 0) return;
    await this.prisma.session.deleteMany({ where: { id: hashSessionToken(token) } });
  }

  /**
   * Reserves one login attempt under each key, in order, before the password is checked: each
   * key's count in its fixed window is raised by one in a single atomic upsert (shared by every
   * coordinator on this database), so attempts in flight count as much as finished ones. The
   * first key already past its limit refuses the attempt (keys after it are not counted).
   */
  async reserveLoginAttempt(
    limits: readonly LoginLimit[],
    windowMs: number,
    now = new Date(),
  ): Promise<LoginReservation> {
    if (!Number.isSafeInteger(windowMs) || windowMs <= 0) {
      throw invalid('windowMs', 'must be a positive integer', windowMs);
    }
    const windowOpenedAfter = new Date(now.getTime() - windowMs);
    for (const { key, limit } of limits) {
      requireString('key', key, 1000);
      const rows = await this.prisma.$queryRaw<Array<{ attempts: number; windowStart: Date }>>`
        INSERT INTO "LoginThrottle" ("key", "windowStart", "attempts") VALUES (${key}, ${now}, 1)
        ON CONFLICT ("key") DO UPDATE SET
          "attempts" = CASE WHEN "LoginThrottle"."windowStart" <= ${windowOpenedAfter}
            THEN 1 ELSE "LoginThrottle"."attempts" + 1 END,
          "windowStart" = CASE WHEN "LoginThrottle"."windowStart" <= ${windowOpenedAfter}
            THEN ${now} ELSE "LoginThrottle"."windowStart" END
        RETURNING "attempts", "windowStart"`;
      const row = rows[0];
      if (row !== undefined && Number(row.attempts) > limit) {
        const windowEnds = new Date(row.windowStart).getTime() + windowMs;
        return {
          allowed: false,
          key,
          retryAfterSeconds: Math.max(1, Math.ceil((windowEnds - now.getTime()) / 1000)),
        };
      }
    }
    return { allowed: true };
  }

  /** Forgets the counts under these keys (a successful login clears its account's). */
  async clearLoginAttempts(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    await this.prisma.loginThrottle.deleteMany({ where: { key: { in: [...keys] } } });
  }

  /** Gives back one reserved attempt under each key (a success that should not count). */
  async releaseLoginAttempt(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    await this.prisma.loginThrottle.updateMany({
      where: { key: { in: [...keys] }, attempts: { gt: 0 } },
      data: { attempts: { decrement: 1 } },
    });
  }

  /** Deletes counts whose window closed before `before`; returns how many. */
  async purgeLoginAttempts(before: Date): Promise<number> {
    const { count } = await this.prisma.loginThrottle.deleteMany({
      where: { windowStart: { lte: before } },
    });
    return count;
  }

  /** Deletes expired sessions; returns how many. */
  async purgeExpiredSessions(now = new Date()): Promise<number> {
    const { count } = await this.prisma.session.deleteMany({ where: { expiresAt: { lte: now } } });
    return count;
  }
}

/** A user row as a record: the password hash stays behind. */
export function toUserRecord(row: User): UserRecord {
  return {
    id: row.id,
    email: row.email,
    name: row.name,
    role: row.role,
    createdAt: row.createdAt,
    disabledAt: row.disabledAt,
  };
}

function toSessionRecord(row: Session): SessionRecord {
  return {
    id: row.id,
    userId: row.userId,
    csrfToken: row.csrfToken,
    createdAt: row.createdAt,
    expiresAt: row.expiresAt,
    lastSeenAt: row.lastSeenAt,
  };
}
