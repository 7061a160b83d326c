import { createHash, randomBytes } from 'node:crypto';
import type { Client, PrismaClient } from './generated/client.js';
import { isRecordNotFound, notFound } from './internal.js';
import type { ClientRecord } from './records.js';
import { invalid, requireId, requireString } from './validate.js';

const TOKEN_PREFIX = 'tsr_';
/** 32 random bytes in base64url without padding: 43 characters. */
const TOKEN_PATTERN = /^tsr_[A-Za-z0-9_-]{43}$/;

export interface IssueTokenInput {
  federationId: string;
  organisation: string;
  label?: string | null;
}

/**
 * A token's sha256. Tokens carry 256 random bits, so a fast hash is enough: a slow KDF
 * (bcrypt, scrypt) only helps against guessing low-entropy secrets such as passwords, and
 * a plain hash lets us look tokens up by an index.
 */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export class ClientRepository {
  constructor(private readonly prisma: PrismaClient) {}

  /** Creates a client credential. The token is returned here, once, and never stored. */
  async issueToken(input: IssueTokenInput): Promise<{ client: ClientRecord; token: string }> {
    const federationId = requireId('federationId', input.federationId);
    const organisation = requireString('organisation', input.organisation, 200).trim();
    const label = input.label ?? null;
    if (label !== null && (typeof label !== 'string' || label.length > 200)) {
      throw invalid('label', 'must be a string of at most 200 characters, or null', label);
    }
    const federation = await this.prisma.federation.findUnique({
      where: { id: federationId },
      select: { id: true },
    });
    if (federation === null) throw notFound('federation', federationId);

    const token = `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
    const row = await this.prisma.client.create({
      data: { federationId, organisation, label, tokenHash: hashToken(token) },
    });
    return { client: toRecord(row), token };
  }

  /**
   * The client a token belongs to, or null when the token is malformed, unknown or revoked.
   * The lookup is by the token's hash, so its timing says nothing about how close a guess
   * came: no secret is ever compared byte by byte.
   */
  async authenticate(token: string): Promise<ClientRecord | null> {
    if (typeof token !== 'string' || !TOKEN_PATTERN.test(token)) return null;
    const row = await this.prisma.client.findUnique({ where: { tokenHash: hashToken(token) } });
    if (row === null || row.revokedAt !== null) return null;
    return toRecord(row);
  }

  /** Revokes a credential; revoking it again keeps the first revocation time. */
  async revoke(clientId: string): Promise<ClientRecord> {
    requireId('clientId', clientId);
    await this.prisma.client.updateMany({
      where: { id: clientId, revokedAt: null },
      data: { revokedAt: new Date() },
    });
    const row = await this.prisma.client.findUnique({ where: { id: clientId } });
    if (row === null) throw notFound('client', clientId);
    return toRecord(row);
  }

  /** A federation's clients, oldest first, revoked ones included. */
  async list(federationId: string): Promise<ClientRecord[]> {
    requireId('federationId', federationId);
    const rows = await this.prisma.client.findMany({
      where: { federationId },
      orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
    });
    if (rows.length === 0) {
      const federation = await this.prisma.federation.findUnique({
        where: { id: federationId },
        select: { id: true },
      });
      if (federation === null) throw notFound('federation', federationId);
    }
    return rows.map(toRecord);
  }

  /** Records that the client was just seen (connected, or sent a frame). */
  async touch(clientId: string): Promise<ClientRecord> {
    requireId('clientId', clientId);
    try {
      const row = await this.prisma.client.update({
        where: { id: clientId },
        data: { lastSeenAt: new Date() },
      });
      return toRecord(row);
    } catch (error) {
      if (isRecordNotFound(error)) throw notFound('client', clientId);
      throw error;
    }
  }
}

function toRecord(row: Client): ClientRecord {
  return {
    id: row.id,
    federationId: row.federationId,
    organisation: row.organisation,
    label: row.label,
    createdAt: row.createdAt,
    revokedAt: row.revokedAt,
    lastSeenAt: row.lastSeenAt,
  };
}
