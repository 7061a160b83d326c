import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { PrismaClient } from './generated/client.js';
import { requireId, requireInt, requireString } from './validate.js';

/** A coordinator's hold on a running run (see model RunLease in prisma/schema.prisma). */
export interface RunLeaseRecord {
  runId: string;
  owner: string;
  /** The fencing token: every commit of the owner carries it, and a stale one is refused. */
  token: number;
  acquiredAt: Date;
  expiresAt: Date;
}

/** What a commit carries to prove its writer still owns the run. */
export interface LeaseFence {
  owner: string;
  token: number;
}

interface LeaseRow {
  runId: string;
  owner: string;
  token: bigint;
  acquiredAt: Date;
  expiresAt: Date;
}

/** Longest lease: a dead owner's runs must pass to another process within this. */
export const MAX_LEASE_MS = 10 * 60_000;

/**
 * Run leases: one owner per running run among the coordinator processes on one database.
 * Expiry is judged by the database's clock (`now()`), so hosts whose clocks disagree still
 * agree on who holds a lease. Each statement is one atomic SQL statement: two processes
 * racing for an expired lease cannot both win (the row lock orders them; the second sees it
 * taken).
 */
export class LeaseRepository {
  constructor(private readonly prisma: PrismaClient) {}

  /**
   * Takes the lease for `ttlMs`, or renews it when `owner` holds it already; null when another
   * owner holds an unexpired one. The token stays the same while one owner keeps the lease
   * without a gap, and grows by one whenever it is taken over or taken again after expiring.
   */
  async acquire(runId: string, owner: string, ttlMs: number): Promise<RunLeaseRecord | null> {
    requireId('runId', runId);
    requireString('owner', owner, 200);
    requireInt('ttlMs', ttlMs, 1, MAX_LEASE_MS);
    const rows = await this.prisma.$queryRaw<LeaseRow[]>`
      INSERT INTO "RunLease" ("runId", "owner", "token", "acquiredAt", "renewedAt", "expiresAt")
      VALUES (${runId}, ${owner}, 1, now(), now(), now() + ${ttlMs} * interval '1 millisecond')
      ON CONFLICT ("runId") DO UPDATE SET
        "token" = CASE WHEN "RunLease"."owner" = EXCLUDED."owner" AND "RunLease"."expiresAt" > now()
                       THEN "RunLease"."token" ELSE "RunLease"."token" + 1 END,
        "acquiredAt" = CASE WHEN "RunLease"."owner" = EXCLUDED."owner" AND "RunLease"."expiresAt" > now()
                            THEN "RunLease"."acquiredAt" ELSE now() END,
        "owner" = EXCLUDED."owner",
        "renewedAt" = now(),
        "expiresAt" = EXCLUDED."expiresAt"
      WHERE "RunLease"."owner" = EXCLUDED."owner" OR "RunLease"."expiresAt" <= now()
      RETURNING "runId", "owner", "token", "acquiredAt", "expiresAt"`;
    return rows[0] === undefined ? null : toRecord(rows[0]);
  }

  /**
   * Extends a lease its owner still holds with this token (even one that expired, as long as
   * nobody took it over); null when it was lost: the owner must stop working on the run.
   */
  async renew(runId: string, fence: LeaseFence, ttlMs: number): Promise<RunLeaseRecord | null> {
    requireId('runId', runId);
    requireInt('ttlMs', ttlMs, 1, MAX_LEASE_MS);
    const rows = await this.prisma.$queryRaw<LeaseRow[]>`
      UPDATE "RunLease"
      SET "renewedAt" = now(), "expiresAt" = now() + ${ttlMs} * interval '1 millisecond'
      WHERE "runId" = ${runId} AND "owner" = ${fence.owner} AND "token" = ${BigInt(fence.token)}
      RETURNING "runId", "owner", "token", "acquiredAt", "expiresAt"`;
    return rows[0] === undefined ? null : toRecord(rows[0]);
  }

  /** Gives a lease up at once (a clean shutdown), so another process need not wait it out. */
  async release(runId: string, fence: LeaseFence): Promise<boolean> {
    requireId('runId', runId);
    const count = await this.prisma.$executeRaw`
      UPDATE "RunLease" SET "expiresAt" = now()
      WHERE "runId" = ${runId} AND "owner" = ${fence.owner} AND "token" = ${BigInt(fence.token)}`;
    return count > 0;
  }

  /** The lease of a run, expired or not; null when none was ever taken. */
  async get(runId: string): Promise<RunLeaseRecord | null> {
    requireId('runId', runId);
    const row = await this.prisma.runLease.findUnique({ where: { runId } });
    return row === null ? null : toRecord(row);
  }

  /**
   * Ids of runs with status `running` whose lease is missing or expired: ones to take over.
   * Replays are not among them: they are computed by whoever runs `tessera replay` from kept
   * updates, never by a coordinator with clients (one that took a replay over would train it).
   */
  async orphanedRunningRuns(): Promise<string[]> {
    const rows = await this.prisma.$queryRaw<Array<{ id: string }>>`
      SELECT r."id" FROM "Run" r LEFT JOIN "RunLease" l ON l."runId" = r."id"
      WHERE r."status" = 'running' AND r."origin" <> 'replay'
        AND (l."runId" IS NULL OR l."expiresAt" <= now())
      ORDER BY r."createdAt", r."id"`;
    return rows.map((row) => row.id);
  }
}

/** A transaction client (or the client itself): what `checkFence` runs its statement on. */
interface RawExecutor {
  $executeRaw(query: TemplateStringsArray, ...values: unknown[]): Promise<number>;
}

/**
 * Inside a writing transaction: refuses the write unless `fence` is the run's current lease
 * (owner and token). The statement locks the lease row until the transaction ends, so a
 * takeover (which updates that row) waits for this write or this write sees the takeover —
 * never both a takeover and a stale commit. Expiry alone does not refuse: while nobody has
 * taken the lease over, the old owner is still the only writer.
 */
export async function checkFence(tx: RawExecutor, runId: string, fence: LeaseFence): Promise<void> {
  const count = await tx.$executeRaw`
    UPDATE "RunLease" SET "renewedAt" = "renewedAt"
    WHERE "runId" = ${runId} AND "owner" = ${fence.owner} AND "token" = ${BigInt(fence.token)}`;
  if (count === 0) {
    throw new TesseraError(
      ErrorCode.CONFLICT,
      `run ${runId} is no longer owned by ${fence.owner} (lease token ${fence.token} is stale): nothing was written`,
      { runId, lease: 'lost', owner: fence.owner, token: fence.token },
    );
  }
}

function toRecord(row: LeaseRow): RunLeaseRecord {
  return {
    runId: row.runId,
    owner: row.owner,
    token: Number(row.token),
    acquiredAt: row.acquiredAt,
    expiresAt: row.expiresAt,
  };
}
