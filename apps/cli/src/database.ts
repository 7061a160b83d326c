import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Database, DEFAULT_PGLITE_DIR, openDatabase } from '@tessera/db';
import { ErrorCode, TesseraError } from '@tessera/protocol';

export interface DatabaseFlags {
  'database-url'?: string | undefined;
  'data-dir'?: string | undefined;
}

export const DATABASE_USAGE = `  --database-url URL  PostgreSQL (default $DATABASE_URL; without it, embedded PGlite)
  --data-dir DIR      PGlite data folder (default ${DEFAULT_PGLITE_DIR}). export, verify and
                      replay open only an existing one; simulate creates it. PGlite is one
                      process's: stop the coordinator that uses it first, or use --url.`;

/** Whether `dir` holds a PostgreSQL (PGlite) data folder, not just any folder. */
function isPgliteFolder(dir: string): boolean {
  return existsSync(join(dir, 'PG_VERSION'));
}

/**
 * The same database choice as the coordinator's: a URL (flag or env), else a PGlite folder.
 * Only `create` (simulate, which records a new run) may make a new PGlite folder: reading
 * commands refuse a missing one, so a typo or a forgotten DATABASE_URL never leaves an
 * empty database behind and answers "run not found".
 */
export function openFromFlags(
  flags: DatabaseFlags,
  { create }: { create: boolean },
): Promise<Database> {
  const url = flags['database-url'] ?? process.env['DATABASE_URL'];
  if (url) return openDatabase({ url });
  const dataDir = flags['data-dir'] ?? DEFAULT_PGLITE_DIR;
  if (!create && !isPgliteFolder(resolve(dataDir))) {
    const where = resolve(dataDir);
    throw new TesseraError(
      ErrorCode.NOT_FOUND,
      `no database: no DATABASE_URL or --database-url was given, and ${where} is not a PGlite data folder${flags['data-dir'] === undefined ? ' (the default --data-dir)' : ''}. Read the run from the coordinator with --url URL and your API token (--token-file FILE or TESSERA_TOKEN), or point the CLI at the coordinator's database with --database-url URL or DATABASE_URL=URL (PostgreSQL), or --data-dir DIR (its PGlite folder)`,
      { field: flags['data-dir'] === undefined ? 'database-url' : 'data-dir', dataDir: where },
    );
  }
  return openDatabase({ dataDir });
}
