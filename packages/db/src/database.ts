import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PrismaPg } from '@prisma/adapter-pg';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import pg from 'pg';
import { PrismaPGlite } from 'pglite-prisma-adapter';
import { AccountRepository } from './accounts.js';
import { ApiTokenRepository } from './api-tokens.js';
import { ByteParameters, withByteParameters } from './byte-parameters.js';
import { ClientRepository } from './clients.js';
import { FederationRepository } from './federations.js';
import { PrismaClient } from './generated/client.js';
import { LeaseRepository } from './leases.js';
import {
  applyMigrations,
  defaultMigrationsDir,
  type MigrationReport,
  type MigrationSession,
} from './migrate.js';
import { RoundRepository } from './rounds.js';
import { RunRepository } from './runs.js';
import { TaskRepository } from './tasks.js';
import { invalid } from './validate.js';

export interface OpenDatabaseOptions {
  /** PostgreSQL connection string. A `?schema=` parameter is honoured as Prisma does. */
  url?: string;
  /** PGlite data folder (created if missing). Default: `.tessera/pglite` under the cwd. */
  dataDir?: string;
  /** PGlite in memory: gone on close. For tests. */
  inMemory?: boolean;
  /** PostgreSQL schema to use (created if missing). Default: the url's, else `public`. */
  schema?: string;
  /** Folder of Prisma migrations. Default: prisma/migrations of this repository. */
  migrationsDir?: string;
}

export interface Database {
  readonly kind: 'postgres' | 'pglite';
  /** The raw client, for queries the repositories do not cover. */
  readonly prisma: PrismaClient;
  readonly federations: FederationRepository;
  readonly clients: ClientRepository;
  /** Console users and their sessions. */
  readonly accounts: AccountRepository;
  /** Researchers' read-only API tokens. */
  readonly apiTokens: ApiTokenRepository;
  readonly runs: RunRepository;
  readonly rounds: RoundRepository;
  /** Which coordinator process owns each running run (fencing tokens). */
  readonly leases: LeaseRepository;
  /** Task definitions, built-in and uploaded, by name and version and by sha256. */
  readonly tasks: TaskRepository;
  /** What opening the database migrated. */
  readonly migrations: MigrationReport;
  /** Disconnects (and, for PGlite, flushes and closes the data folder). Idempotent. */
  close(): Promise<void>;
}

/** PostgreSQL's type oid of bytea. */
const BYTEA_OID = 17;

/** PGlite's data folder when none is given, relative to the current directory. */
export const DEFAULT_PGLITE_DIR = '.tessera/pglite';

/**
 * Opens the database and applies pending migrations. With `url` (or, when no option picks a
 * backend, env DATABASE_URL): PostgreSQL. Otherwise embedded PGlite, on disk or in memory.
 */
export async function openDatabase(options: OpenDatabaseOptions = {}): Promise<Database> {
  const wantsPglite = options.dataDir !== undefined || options.inMemory === true;
  if (options.url !== undefined && wantsPglite) {
    throw invalid('url', 'cannot be combined with dataDir or inMemory');
  }
  if (options.dataDir !== undefined && options.inMemory === true) {
    throw invalid('dataDir', 'cannot be combined with inMemory');
  }
  const migrationsDir = options.migrationsDir ?? defaultMigrationsDir();
  const { DATABASE_URL: envUrl } = process.env;
  const url = options.url ?? (wantsPglite || envUrl === '' ? undefined : envUrl);
  if (url !== undefined) return openPostgres(url, options.schema, migrationsDir);
  if (options.schema !== undefined) {
    throw invalid('schema', 'applies to PostgreSQL only; a PGlite data folder is its own database');
  }
  return openPglite(
    options.inMemory === true ? undefined : (options.dataDir ?? DEFAULT_PGLITE_DIR),
    migrationsDir,
  );
}

async function openPostgres(
  rawUrl: string,
  schemaOption: string | undefined,
  migrationsDir: string,
): Promise<Database> {
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    throw invalid('url', 'is not a valid PostgreSQL connection string');
  }
  if (url.protocol !== 'postgresql:' && url.protocol !== 'postgres:') {
    throw invalid('url', `must start with postgresql:// (got ${url.protocol}//)`);
  }
  // `?schema=` is Prisma's convention, unknown to pg: take it out and apply it ourselves.
  const urlSchema = url.searchParams.get('schema') ?? undefined;
  url.searchParams.delete('schema');
  const schema = schemaOption ?? urlSchema;
  if (schema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) {
    throw invalid('schema', 'must be a lowercase SQL identifier (a-z, 0-9, _)', schema);
  }
  const config: pg.ClientConfig = {
    connectionString: url.toString(),
    // A partitioned server never answers a connect: give up, so the caller can retry.
    connectionTimeoutMillis: 10_000,
    keepAlive: true,
    // Raw queries and migrations use unqualified names; Prisma's own get the adapter's schema.
    ...(schema === undefined ? {} : { options: `-c search_path=${schema}` }),
  };

  // Migrations run on one dedicated connection: the advisory lock is held by a session.
  const client = new pg.Client(config);
  try {
    await client.connect();
  } catch (cause) {
    throw new TesseraError(
      ErrorCode.UNAVAILABLE,
      `cannot connect to PostgreSQL at ${url.host}: ${(cause as Error).message}`,
      undefined,
      { cause },
    );
  }
  let migrations: MigrationReport;
  try {
    const session: MigrationSession = {
      query: async <Row>(sql: string, params?: unknown[]) =>
        (await client.query(sql, params)).rows as Row[],
      exec: async (script) => {
        await client.query(script);
      },
    };
    migrations = await applyMigrations(session, { migrationsDir, schema });
  } finally {
    await client.end();
  }

  const adapter = new PrismaPg(config, {
    ...(schema === undefined ? {} : { schema }),
    // An idle connection dropped by the server must not crash the process (pg's pool emits
    // 'error'); the pool replaces it and the next query reconnects.
    onPoolError: () => {},
  });
  const bytes = new ByteParameters();
  const prisma = new PrismaClient({ adapter: withByteParameters(adapter, bytes) });
  return assemble('postgres', prisma, bytes, migrations, async () => {
    await prisma.$disconnect();
  });
}

/**
 * PGlite's own bytea serializer writes a parameter as `\x` hex text built one byte at a time
 * (seconds for a model's weights). Its protocol writer binds any ArrayBuffer view it is given
 * in binary format, so this one hands the bytes through untouched (a string, e.g. hex text,
 * still goes as text). Its type says string: that is all PGlite's typings allow for.
 */
const PGLITE_OPTIONS = {
  serializers: { [BYTEA_OID]: (value: unknown) => value as string },
};

async function openPglite(dataDir: string | undefined, migrationsDir: string): Promise<Database> {
  let pglite: PGlite;
  if (dataDir === undefined) {
    pglite = await PGlite.create(PGLITE_OPTIONS);
  } else {
    const dir = resolve(process.cwd(), dataDir);
    await mkdir(dir, { recursive: true });
    pglite = await PGlite.create(dir, PGLITE_OPTIONS);
  }
  let migrations: MigrationReport;
  try {
    const session: MigrationSession = {
      query: async <Row>(sql: string, params?: unknown[]) =>
        (await pglite.query<Row>(sql, params)).rows,
      exec: async (script) => {
        await pglite.exec(script);
      },
    };
    migrations = await applyMigrations(session, { migrationsDir });
  } catch (error) {
    await pglite.close();
    throw error;
  }
  const bytes = new ByteParameters();
  const prisma = new PrismaClient({ adapter: withByteParameters(new PrismaPGlite(pglite), bytes) });
  return assemble('pglite', prisma, bytes, migrations, async () => {
    await prisma.$disconnect();
    await pglite.close();
  });
}

function assemble(
  kind: Database['kind'],
  prisma: PrismaClient,
  bytes: ByteParameters,
  migrations: MigrationReport,
  shutdown: () => Promise<void>,
): Database {
  let closing: Promise<void> | undefined;
  return {
    kind,
    prisma,
    federations: new FederationRepository(prisma),
    clients: new ClientRepository(prisma),
    accounts: new AccountRepository(prisma),
    apiTokens: new ApiTokenRepository(prisma),
    runs: new RunRepository(prisma),
    rounds: new RoundRepository(prisma, bytes),
    tasks: new TaskRepository(prisma),
    leases: new LeaseRepository(prisma),
    migrations,
    close: () => {
      closing ??= shutdown();
      return closing;
    },
  };
}
