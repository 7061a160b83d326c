#!/usr/bin/env node
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { openDatabase } from '@tessera/db';
import { TesseraError } from '@tessera/protocol';
import { Coordinator } from './coordinator.js';
import { createLogger, parseLogLevel } from './logger.js';

const usage = `tessera-coordinator [options]

  --port N            port for HTTP and Socket.IO (default $PORT or 4000)
  --host ADDR         address to listen on (default 0.0.0.0)
  --database-url URL  PostgreSQL (default $DATABASE_URL; without it, embedded PGlite)
  --data-dir DIR      PGlite data folder (default .tessera/pglite)
  --admin-token T     bearer token for the REST API (default $TESSERA_ADMIN_TOKEN, else generated)
  --log-level L       debug | info | warn | error (default info)
`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      host: { type: 'string', default: '0.0.0.0' },
      'database-url': { type: 'string' },
      'data-dir': { type: 'string' },
      'admin-token': { type: 'string' },
      'log-level': { type: 'string' },
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
  const url = values['database-url'] ?? process.env['DATABASE_URL'];
  const db = await openDatabase(
    url ? { url } : values['data-dir'] ? { dataDir: values['data-dir'] } : {},
  );
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
  });
  logger.info(`coordinator listening on ${coordinator.url}`, { database: db.kind });
  const shutdown = async (signal: string) => {
    logger.info(`${signal}: shutting down; running runs resume at the next start`);
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
