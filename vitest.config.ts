import { defineConfig } from 'vitest/config';

// Tests import workspace packages from their TypeScript sources (the "@tessera/source"
// export condition), so a unit test never runs against a stale dist/.
export default defineConfig({
  resolve: { conditions: ['@tessera/source'] },
  ssr: { resolve: { conditions: ['@tessera/source'] } },
  test: {
    include: ['packages/*/src/**/*.test.ts', 'apps/*/src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Test files run side by side and spawn client processes: OpenBLAS (the 'openblas'
    // backend) in each of them using every core would oversubscribe the machine. Tests
    // that need more threads ask for them (initBackend's threads option).
    env: { OPENBLAS_NUM_THREADS: '1', OMP_NUM_THREADS: '1' },
  },
});
