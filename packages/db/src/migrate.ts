/**
 * Applies prisma/migrations the way `prisma migrate deploy` does, without Prisma's schema
 * engine (a binary that cannot be downloaded on these machines). It keeps Prisma's folder
 * layout and its `_prisma_migrations` table, so `prisma migrate deploy` and this runner can
 * take turns on the same database.
 */
import { createHash, randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode, TesseraError } from '@tessera/protocol';

/** One database connection (a session: the advisory lock belongs to it). */
export interface MigrationSession {
  /** One statement, with $1... parameters. */
  query<Row>(sql: string, params?: unknown[]): Promise<Row[]>;
  /** A script of several statements, no parameters. */
  exec(script: string): Promise<void>;
}

export interface MigrationReport {
  /** Migrations applied by this call, in order. */
  applied: string[];
  /** Migrations found already applied. */
  alreadyApplied: string[];
}

export interface LocalMigration {
  name: string;
  script: string;
  /** sha256 hex of migration.sql, as Prisma computes it. */
  checksum: string;
}

/**
 * The key Prisma Migrate itself locks (prisma-engines, postgres flavour). Sharing it means
 * this runner and `prisma migrate deploy` also wait for each other, not only two coordinators.
 */
const PRISMA_MIGRATE_LOCK_KEY = 72707369;

/** Waiting longer than this for another process's migrations means something is stuck. */
const LOCK_TIMEOUT = '60s';

/**
 * prisma/migrations at the repository root. src/ and dist/ sit at the same depth in
 * packages/db, so the same relative path works from the sources (tests) and the build.
 */
export function defaultMigrationsDir(): string {
  return fileURLToPath(new URL('../../../prisma/migrations', import.meta.url));
}

export function checksum(script: string): string {
  return createHash('sha256').update(script, 'utf8').digest('hex');
}

/**
 * Like Prisma, accept a file whose only change is its line endings (a Windows checkout
 * with autocrlf), which is not an edit of the migration.
 */
function matchesChecksum(script: string, expected: string): boolean {
  if (checksum(script) === expected) return true;
  const lf = script.replace(/\r\n/g, '\n');
  return checksum(lf) === expected || checksum(lf.replace(/\n/g, '\r\n')) === expected;
}

export async function readMigrations(migrationsDir: string): Promise<LocalMigration[]> {
  let entries: string[];
  try {
    entries = (await readdir(migrationsDir, { withFileTypes: true }))
      .filter((entry) => entry.isDirectory())
      .map((entry) => entry.name);
  } catch (cause) {
    throw new TesseraError(
      ErrorCode.UNAVAILABLE,
      `cannot read the migrations folder ${migrationsDir}`,
      { migrationsDir },
      { cause },
    );
  }
  // Prisma orders migrations by folder name; the timestamp prefix makes that chronological.
  entries.sort();
  const migrations: LocalMigration[] = [];
  for (const name of entries) {
    const file = join(migrationsDir, name, 'migration.sql');
    let script: string;
    try {
      script = await readFile(file, 'utf8');
    } catch (cause) {
      throw new TesseraError(
        ErrorCode.UNAVAILABLE,
        `migration ${name} has no readable migration.sql (${file})`,
        { migration: name },
        { cause },
      );
    }
    migrations.push({ name, script, checksum: checksum(script) });
  }
  return migrations;
}

interface MigrationRow {
  migration_name: string;
  checksum: string;
  started_at: Date | string;
  finished_at: Date | string | null;
  rolled_back_at: Date | string | null;
}

// Prisma's own definition (prisma-engines, postgres flavour), column for column.
const CREATE_MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS _prisma_migrations (
    id                      VARCHAR(36) PRIMARY KEY NOT NULL,
    checksum                VARCHAR(64) NOT NULL,
    finished_at             TIMESTAMPTZ,
    migration_name          VARCHAR(255) NOT NULL,
    logs                    TEXT,
    rolled_back_at          TIMESTAMPTZ,
    started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_steps_count     INTEGER NOT NULL DEFAULT 0
)`;

/**
 * Applies the pending migrations of `migrationsDir`, in name order, each in its own
 * transaction together with its `_prisma_migrations` row, so a failed migration leaves no
 * trace and can be fixed and retried. Refuses (CONFLICT) to run when an applied migration's
 * file has changed, or when Prisma recorded a failed migration that nobody resolved.
 *
 * Unqualified names resolve through the session's search_path: the caller points it at the
 * target schema, as Prisma does with `?schema=`.
 */
export async function applyMigrations(
  session: MigrationSession,
  options: { migrationsDir: string; schema?: string | undefined },
): Promise<MigrationReport> {
  const local = await readMigrations(options.migrationsDir);
  await session.exec(`SET lock_timeout = '${LOCK_TIMEOUT}'`);
  try {
    await session.query('SELECT pg_advisory_lock($1)', [PRISMA_MIGRATE_LOCK_KEY]);
  } catch (cause) {
    // 55P03 lock_not_available: lock_timeout expired.
    if ((cause as { code?: unknown }).code !== '55P03') throw cause;
    throw new TesseraError(
      ErrorCode.UNAVAILABLE,
      `timed out after ${LOCK_TIMEOUT} waiting for another process to finish migrating the database`,
      undefined,
      { cause },
    );
  } finally {
    await session.exec('RESET lock_timeout');
  }
  try {
    if (options.schema !== undefined) {
      await session.exec(`CREATE SCHEMA IF NOT EXISTS "${options.schema}"`);
    }
    await session.exec(CREATE_MIGRATIONS_TABLE);
    const rows = await session.query<MigrationRow>(
      'SELECT migration_name, checksum, started_at, finished_at, rolled_back_at FROM _prisma_migrations ORDER BY started_at',
    );
    const applied = new Map<string, MigrationRow>();
    for (const row of rows) {
      if (row.rolled_back_at !== null) continue;
      if (row.finished_at === null) {
        // Only `prisma migrate deploy` leaves such rows (this runner rolls back instead).
        throw new TesseraError(
          ErrorCode.CONFLICT,
          `migration ${row.migration_name} failed earlier and was never resolved; fix the database, then run \`prisma migrate resolve\``,
          { migration: row.migration_name },
        );
      }
      applied.set(row.migration_name, row);
    }

    // Check every applied migration before applying anything: an edited history means the
    // database may not match the schema this code was built for.
    const pending: LocalMigration[] = [];
    const alreadyApplied: string[] = [];
    for (const migration of local) {
      const row = applied.get(migration.name);
      if (row === undefined) {
        pending.push(migration);
      } else if (!matchesChecksum(migration.script, row.checksum)) {
        throw new TesseraError(
          ErrorCode.CONFLICT,
          `migration ${migration.name} was modified after it was applied (checksum ${migration.checksum}, database has ${row.checksum}); restore the original file and add a new migration instead`,
          { migration: migration.name, expected: row.checksum, actual: migration.checksum },
        );
      } else {
        alreadyApplied.push(migration.name);
      }
    }

    const appliedNow: string[] = [];
    for (const migration of pending) {
      await applyOne(session, migration);
      appliedNow.push(migration.name);
    }
    return { applied: appliedNow, alreadyApplied };
  } finally {
    await session.query('SELECT pg_advisory_unlock($1)', [PRISMA_MIGRATE_LOCK_KEY]);
  }
}

async function applyOne(session: MigrationSession, migration: LocalMigration): Promise<void> {
  await session.exec('BEGIN');
  try {
    await session.exec(migration.script);
    // now() is the transaction's start, i.e. when the migration started; the clock is its end.
    await session.query(
      `INSERT INTO _prisma_migrations
         (id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, applied_steps_count)
       VALUES ($1, $2, clock_timestamp(), $3, NULL, NULL, now(), 1)`,
      [randomUUID(), migration.checksum, migration.name],
    );
    await session.exec('COMMIT');
  } catch (cause) {
    // The migration's own error is the one worth reporting, even if the rollback fails too.
    await session.exec('ROLLBACK').catch(() => undefined);
    const message = cause instanceof Error ? cause.message : String(cause);
    throw new TesseraError(
      ErrorCode.INTERNAL,
      `migration ${migration.name} failed and was rolled back: ${message}`,
      { migration: migration.name },
      { cause },
    );
  }
}
