import { randomBytes } from 'node:crypto';
import { toUserRecord, type UserRecord } from './accounts.js';
import { hashToken } from './clients.js';
import type { ApiToken, PrismaClient } from './generated/client.js';
import { notFound } from './internal.js';
import { invalid, requireId, requireString } from './validate.js';

/** What a token may do. Only `read` exists: GET routes, never a write, whatever the owner's role. */
export const API_TOKEN_SCOPES = ['read'] as const;
export type ApiTokenScope = (typeof API_TOKEN_SCOPES)[number];

/** Distinct from client tokens (`tsr_`), so a token pasted in the wrong place is told apart. */
export const API_TOKEN_PREFIX = 'tsa_';
/** 32 random bytes in base64url without padding: 43 characters. */
const API_TOKEN_PATTERN = /^tsa_[A-Za-z0-9_-]{43}$/;
export const API_TOKEN_NAME_MAX_LENGTH = 100;
/** Longest expiry a token may be given; a token without one lives until it is revoked. */
export const API_TOKEN_MAX_DAYS = 366;
/** lastUsedAt is written at most this often per token: reads should not all become writes. */
const TOUCH_INTERVAL_MS = 60_000;

/** An API token as its owner sees it: never the token itself, never its hash. */
export interface ApiTokenRecord {
  id: string;
  userId: string;
  name: string;
  scope: ApiTokenScope;
  createdAt: Date;
  expiresAt: Date | null;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

export interface CreateApiTokenInput {
  userId: string;
  name: string;
  /** Days until it stops working (1..API_TOKEN_MAX_DAYS); undefined or null: until revoked. */
  expiresInDays?: number | null | undefined;
}

/**
 * Researchers' API tokens (Authorization: Bearer tsa_...). Like client tokens they carry 256
 * random bits, so they are stored and looked up by their sha256; the token is handed out once,
 * at creation. A token stops working when it is revoked, when it expires, and while its
 * owner's account is disabled.
 */
export class ApiTokenRepository {
  constructor(private readonly prisma: PrismaClient) {}

  async create(
    input: CreateApiTokenInput,
    now = new Date(),
  ): Promise<{ token: string; record: ApiTokenRecord }> {
    const userId = requireId('userId', input.userId);
    const name = requireString('name', input.name, API_TOKEN_NAME_MAX_LENGTH).trim();
    const days = input.expiresInDays ?? null;
    if (
      days !== null &&
      (typeof days !== 'number' || !Number.isInteger(days) || days < 1 || days > API_TOKEN_MAX_DAYS)
    ) {
      throw invalid(
        'expiresInDays',
        `must be a whole number of days from 1 to ${API_TOKEN_MAX_DAYS}, or left out for a token that lasts until revoked`,
        days,
      );
    }
    const user = await this.prisma.user.findUnique({ where: { id: userId }, select: { id: true } });
    if (user === null) throw notFound('user', userId);
    const token = `${API_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
    const row = await this.prisma.apiToken.create({
      data: {
        userId,
        name,
        tokenHash: hashToken(token),
        scope: 'read',
        createdAt: now,
        expiresAt: days === null ? null : new Date(now.getTime() + days * 86_400_000),
      },
    });
    return { token, record: toRecord(row) };
  }

  /**
   * The token's record and its owner, or null when the token is malformed, unknown, revoked,
   * expired, or its owner is disabled (the caller cannot tell which). Marks it used (at most
   * once a minute).
   */
  async authenticate(
    token: string,
    now = new Date(),
  ): Promise<{ token: ApiTokenRecord; user: UserRecord } | null> {
    if (typeof token !== 'string' || !API_TOKEN_PATTERN.test(token)) return null;
    const row = await this.prisma.apiToken.findUnique({
      where: { tokenHash: hashToken(token) },
      include: { user: true },
    });
    if (row === null || row.revokedAt !== null || row.user.disabledAt !== null) return null;
    if (row.expiresAt !== null && row.expiresAt <= now) return null;
    let used = row;
    if (row.lastUsedAt === null || now.getTime() - row.lastUsedAt.getTime() > TOUCH_INTERVAL_MS) {
      await this.prisma.apiToken.updateMany({ where: { id: row.id }, data: { lastUsedAt: now } });
      used = { ...row, lastUsedAt: now };
    }
    return { token: toRecord(used), user: toUserRecord(row.user) };
  }

  /** A user's tokens, newest first, revoked and expired ones included (so they can be told apart). */
  async list(userId: string): Promise<ApiTokenRecord[]> {
    requireId('userId', userId);
    const rows = await this.prisma.apiToken.findMany({
      where: { userId },
      orderBy: [{ createdAt: 'desc' }, { id: 'asc' }],
    });
    return rows.map(toRecord);
  }

  /**
   * Revokes one of `userId`'s tokens; revoking it again keeps the first time. Someone else's
   * token answers NOT_FOUND, as an unknown one does: its existence is not theirs to learn.
   */
  async revoke(userId: string, tokenId: string, now = new Date()): Promise<ApiTokenRecord> {
    requireId('userId', userId);
    requireId('tokenId', tokenId);
    await this.prisma.apiToken.updateMany({
      where: { id: tokenId, userId, revokedAt: null },
      data: { revokedAt: now },
    });
    const row = await this.prisma.apiToken.findFirst({ where: { id: tokenId, userId } });
    if (row === null) throw notFound('API token', tokenId);
    return toRecord(row);
  }
}

function toRecord(row: ApiToken): ApiTokenRecord {
  return {
    id: row.id,
    userId: row.userId,
    name: row.name,
    scope: row.scope === 'read' ? 'read' : invalidScope(row.scope),
    createdAt: row.createdAt,
    expiresAt: row.expiresAt,
    lastUsedAt: row.lastUsedAt,
    revokedAt: row.revokedAt,
  };
}

/** A scope this code does not know was written by a newer version: refuse it rather than guess. */
function invalidScope(scope: string): never {
  throw invalid(
    'scope',
    `is not a scope this coordinator knows (${API_TOKEN_SCOPES.join(', ')})`,
    scope,
  );
}
