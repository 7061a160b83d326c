#!/usr/bin/env node
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { MAX_LEASE_MS, openDatabase } from '@tessera/db';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { Coordinator } from './coordinator.js';
import { createLogger, parseLogLevel } from './logger.js';

const usage = `tessera-coordinator [options]

  --port N            port for HTTP and Socket.IO (default $PORT or 4000)
  --host ADDR         address to listen on (default 0.0.0.0)
  --database-url URL  PostgreSQL (default $DATABASE_URL; without it, embedded PGlite)
  --data-dir DIR      PGlite data folder (default .tessera/pglite)
  --admin-token T     bearer token for the REST API (default $TESSERA_ADMIN_TOKEN, else generated)
  --log-level L       debug | info | warn | error (default info)
  --trust-proxy       behind an https reverse proxy: trust X-Forwarded-* (Secure cookies)
                      (default $TESSERA_TRUST_PROXY=1)
  --db-retry-seconds S  how long a database outage may last: runs wait and retry, then are
                      marked failed (default $TESSERA_DB_RETRY_SECONDS, else 180)
  --lease-ms N        run lease: renewed every N/3 ms; a run whose coordinator died (or lost
                      the database) passes to another coordinator on the same database within
                      about N ms (default $TESSERA_LEASE_MS, else 15000; 1000..600000)
  --max-task-params N  the most parameters a task's model may have: larger ones are refused
                      at creation (default $TESSERA_MAX_TASK_PARAMS, else 50000000)
  --max-holdout-mb M  the largest held-out set an admin may upload for a task's central
                      evaluation, in MiB (default $TESSERA_MAX_HOLDOUT_MB, else 64)
  --redis URL         cluster mode: share clients with every coordinator on this Redis
                      (Socket.IO's Redis adapter; default $TESSERA_REDIS_URL; without it,
                      one process and nothing in Redis)
  --redis-prefix P    prefix of the Redis keys and channels (default $TESSERA_REDIS_PREFIX,
                      else tessera:): coordinators with the same prefix share clients
  --metrics-token T   a bearer token that reads GET /metrics (Prometheus) and nothing else
                      (default $TESSERA_METRICS_TOKEN; the admin token reads it too)

tessera-coordinator create-admin --email E --password-stdin [--name N] [--database-url URL | --data-dir DIR]
tessera-coordinator create-user --role admin|researcher --email E --password-stdin [--name N] [...]

  Creates a console account in the coordinator's database (run it once for the first admin;
  admins add more from the console). The password is read from standard input, so that it
  stays out of the shell history and the process list:  printf '%s' "$PW" | tessera-coordinator create-admin --email ada@example.org --password-stdin
`;

/** Reads all of standard input (a password piped in), without its final newline. */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

async function createUser(command: 'create-admin' | 'create-user', args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      email: { type: 'string' },
      name: { type: 'string' },
      role: { type: 'string', default: command === 'create-admin' ? 'admin' : undefined },
      'password-stdin': { type: 'boolean' },
      'database-url': { type: 'string' },
      'data-dir': { type: 'string' },
    },
  });
  if (!values.email || !values['password-stdin'] || !values.role) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `${command} needs --email and --password-stdin${command === 'create-user' ? ' and --role' : ''} (see --help)`,
    );
  }
  if (values.role !== 'admin' && values.role !== 'researcher') {
    throw new TesseraError(ErrorCode.INVALID_ARGUMENT, '--role must be admin or researcher');
  }
  const password = await readStdin();
  const url = values['database-url'] ?? process.env['DATABASE_URL'];
  const db = await openDatabase(
    url ? { url } : values['data-dir'] ? { dataDir: values['data-dir'] } : {},
  );
  try {
    const user = await db.accounts.createUser({
      email: values.email,
      role: values.role,
      password,
      ...(values.name ? { name: values.name } : {}),
    });
    process.stdout.write(`created ${user.role} ${user.email} (${user.id})\n`);
  } finally {
    await db.close();
  }
}

/** `--lease-ms`: a whole number of milliseconds, at least 1 s (renewals every third of it). */
function parseLeaseMs(raw: string | undefined): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  const ms = Number(raw);
  if (!Number.isInteger(ms) || ms < 1_000 || ms > MAX_LEASE_MS) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `--lease-ms must be a whole number of milliseconds from 1000 to ${MAX_LEASE_MS} (got ${JSON.stringify(raw)})`,
      { field: 'lease-ms' },
    );
  }
  return ms;
}

/** `--db-retry-seconds`: a number of seconds > 0 (fractions allowed), as milliseconds. */
function parseRetrySeconds(raw: string | undefined): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  const seconds = Number(raw);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `--db-retry-seconds must be a number of seconds > 0 (got ${JSON.stringify(raw)})`,
      { field: 'db-retry-seconds' },
    );
  }
  return Math.round(seconds * 1000);
}

/** `--max-task-params`: a whole number of parameters >= 1. */
function parseMaxTaskParams(raw: string | undefined): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  const count = Number(raw.replaceAll('_', ''));
  if (!Number.isSafeInteger(count) || count < 1) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `--max-task-params must be a whole number >= 1 (got ${JSON.stringify(raw)})`,
      { field: 'max-task-params' },
    );
  }
  return count;
}

/** `--max-holdout-mb`: a whole number of MiB >= 1, as bytes. */
function parseMaxHoldoutMb(raw: string | undefined): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  const mib = Number(raw);
  if (!Number.isSafeInteger(mib) || mib < 1 || mib > 4096) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `--max-holdout-mb must be a whole number of MiB in 1..4096 (got ${JSON.stringify(raw)})`,
      { field: 'max-holdout-mb' },
    );
  }
  return mib * 1024 * 1024;
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  if (command === 'create-admin' || command === 'create-user') {
    await createUser(command, rest);
    return;
  }
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      host: { type: 'string', default: '0.0.0.0' },
      'database-url': { type: 'string' },
      'data-dir': { type: 'string' },
      'admin-token': { type: 'string' },
      'log-level': { type: 'string' },
      'trust-proxy': { type: 'boolean' },
      'db-retry-seconds': { type: 'string' },
      'lease-ms': { type: 'string' },
      'max-task-params': { type: 'string' },
      'max-holdout-mb': { type: 'string' },
      'metrics-token': { type: 'string' },
      redis: { type: 'string' },
      'redis-prefix': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(usage);
    return;
  }
  const logger = createLogger(
    parseLogLevel(values['log-level'] ?? process.env['LOG_LEVEL'], 'info'),
  );
  const maxTaskParams = parseMaxTaskParams(
    values['max-task-params'] ?? process.env['TESSERA_MAX_TASK_PARAMS'],
  );
  const maxHoldoutBytes = parseMaxHoldoutMb(
    values['max-holdout-mb'] ?? process.env['TESSERA_MAX_HOLDOUT_MB'],
  );
  const retryForMs = parseRetrySeconds(
    values['db-retry-seconds'] ?? process.env['TESSERA_DB_RETRY_SECONDS'],
  );
  const leaseMs = parseLeaseMs(values['lease-ms'] ?? process.env['TESSERA_LEASE_MS']);
  const url = values['database-url'] ?? process.env['DATABASE_URL'];
  const db = await openDatabase(
    url ? { url } : values['data-dir'] ? { dataDir: values['data-dir'] } : {},
  );
  const redisUrl = values.redis ?? process.env['TESSERA_REDIS_URL'];
  const redisPrefix = values['redis-prefix'] ?? process.env['TESSERA_REDIS_PREFIX'];
  const metricsToken = values['metrics-token'] ?? process.env['TESSERA_METRICS_TOKEN'];
  let adminToken = values['admin-token'] ?? process.env['TESSERA_ADMIN_TOKEN'];
  if (!adminToken) {
    adminToken = randomBytes(24).toString('base64url');
    logger.info(`generated an admin token for this process: ${adminToken}`);
  }
  const coordinator = await Coordinator.start({
    db,
    logger,
    adminToken,
    port: Number(values.port ?? process.env['PORT'] ?? 4000),
    host: values.host,
    trustProxy: values['trust-proxy'] ?? process.env['TESSERA_TRUST_PROXY'] === '1',
    ...(retryForMs === undefined ? {} : { databaseRetry: { retryForMs } }),
    ...(leaseMs === undefined ? {} : { leaseMs }),
    ...(maxTaskParams === undefined ? {} : { maxTaskParams }),
    ...(maxHoldoutBytes === undefined ? {} : { maxHoldoutBytes }),
    ...(metricsToken ? { metricsToken } : {}),
    ...(redisUrl
      ? { redis: { url: redisUrl, ...(redisPrefix ? { prefix: redisPrefix } : {}) } }
      : {}),
  });
  logger.info(`coordinator listening on ${coordinator.url}`, { database: db.kind });
  const shutdown = async (signal: string) => {
    logger.info(
      `${signal}: shutting down; running runs are released to another coordinator or the next start`,
    );
    await coordinator.close();
    await db.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void shutdown('SIGINT'));
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
}

main().catch((error: unknown) => {
  const message =
    error instanceof TesseraError
      ? `${error.code}: ${error.message}`
      : String((error as Error)?.stack ?? error);
  process.stderr.write(`tessera-coordinator: ${message}\n`);
  process.exit(1);
});
