// Prisma CLI configuration. It lives in packages/db, next to the `prisma` dev dependency and
// the `generate` script that runs from here; paths below are relative to this file.
// `prisma migrate deploy` (where its engine can be downloaded) reads DATABASE_URL; the
// coordinator itself applies the same migrations at start-up (src/migrate.ts).
import { defineConfig } from 'prisma/config';

const url = process.env.DATABASE_URL;

export default defineConfig({
  schema: '../../prisma/schema.prisma',
  migrations: { path: '../../prisma/migrations' },
  // Only when set: `prisma generate` needs no database and must work without one.
  ...(url ? { datasource: { url } } : {}),
});
