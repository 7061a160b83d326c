// Runs `prisma generate` offline.
//
// The Prisma CLI makes sure its schema engine binary is present before any command, and
// downloads it from Prisma's binary host when it is not, even for `generate`, which never
// runs it. That host is unreachable here. When PRISMA_SCHEMA_ENGINE_BINARY names an
// existing file the CLI skips the download, so point it at this script (not executable:
// were it ever spawned, it would fail at once rather than hang). A real engine configured
// by the user is left alone.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const cli = require.resolve('prisma/build/index.js');
const packageDir = fileURLToPath(new URL('..', import.meta.url));

const result = spawnSync(process.execPath, [cli, 'generate', ...process.argv.slice(2)], {
  cwd: packageDir, // where prisma.config.ts is
  stdio: 'inherit',
  env: {
    ...process.env,
    PRISMA_SCHEMA_ENGINE_BINARY:
      process.env.PRISMA_SCHEMA_ENGINE_BINARY || fileURLToPath(import.meta.url),
    PRISMA_HIDE_UPDATE_MESSAGE: '1',
  },
});
if (result.error) throw result.error;
process.exit(result.status ?? 1);
