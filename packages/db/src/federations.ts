import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { Federation, PrismaClient } from './generated/client.js';
import { isUniqueViolation, notFound } from './internal.js';
import type { FederationRecord } from './records.js';
import { invalid, requireId, requireString } from './validate.js';

export interface CreateFederationInput {
  name: string;
  description?: string | null;
}

export class FederationRepository {
  constructor(private readonly prisma: PrismaClient) {}

  /** Names are unique: a second federation with the same name is a CONFLICT. */
  async create(input: CreateFederationInput): Promise<FederationRecord> {
    const name = requireString('name', input.name, 200).trim();
    const description = input.description ?? null;
    if (description !== null && typeof description !== 'string') {
      throw invalid('description', 'must be a string or null', description);
    }
    try {
      return toRecord(await this.prisma.federation.create({ data: { name, description } }));
    } catch (error) {
      if (isUniqueViolation(error)) {
        throw new TesseraError(ErrorCode.CONFLICT, `a federation named "${name}" already exists`, {
          name,
        });
      }
      throw error;
    }
  }

  /** Oldest first. */
  async list(): Promise<FederationRecord[]> {
    const rows = await this.prisma.federation.findMany({
      orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
    });
    return rows.map(toRecord);
  }

  async get(id: string): Promise<FederationRecord> {
    requireId('federationId', id);
    const row = await this.prisma.federation.findUnique({ where: { id } });
    if (row === null) throw notFound('federation', id);
    return toRecord(row);
  }
}

function toRecord(row: Federation): FederationRecord {
  return { id: row.id, name: row.name, description: row.description, createdAt: row.createdAt };
}
