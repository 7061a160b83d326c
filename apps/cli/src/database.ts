import { type Database, openDatabase } from '@tessera/db';

export interface DatabaseFlags {
  'database-url'?: string | undefined;
  'data-dir'?: string | undefined;
}

export const DATABASE_USAGE = `  --database-url URL  PostgreSQL (default $DATABASE_URL; without it, embedded PGlite)
  --data-dir DIR      PGlite data folder (default .tessera/pglite). PGlite is one process's:
                      stop the coordinator that uses it first, or use the REST export.`;

/** The same database choice as the coordinator's: a URL (flag or env), else a PGlite folder. */
export function openFromFlags(flags: DatabaseFlags): Promise<Database> {
  const url = flags['database-url'] ?? process.env['DATABASE_URL'];
  if (url) return openDatabase({ url });
  return openDatabase(flags['data-dir'] ? { dataDir: flags['data-dir'] } : {});
}
