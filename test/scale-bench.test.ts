// Smoke test of bench/scale.ts --quick: 40 load connections speaking the real protocol, on one
// and on two coordinator processes (PostgreSQL, and Redis for two), one fedavg-2nn round each.
// Checked: what does not depend on the machine (every connection welcomed, one round timed per
// topology, /healthz answered during the round, the table printed). No timing is asserted.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..');
const folder = mkdtempSync(path.join(os.tmpdir(), 'scale-bench-smoke-'));
afterAll(() => rmSync(folder, { recursive: true, force: true }));
const { TEST_DATABASE_URL: databaseUrl, TEST_REDIS_URL: redisUrl } = process.env;

interface ScaleResult {
  quick: boolean;
  results: Array<{
    processes: number;
    clients: number;
    rssPerConnectionKiB: number[];
    roundMs: number[];
    healthz: { samples: number; failures: number; p99Ms: number } | null;
  }>;
  decodeAndFoldMs: number;
}

describe.skipIf(!databaseUrl || !redisUrl)('bench/scale --quick', () => {
  it('holds the connections and times a round on one and on two coordinators', {
    timeout: 600_000,
  }, async () => {
    const out = path.join(folder, 'scale.json');
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        ...['--import', 'tsx', '--conditions=@tessera/source', 'bench/scale.ts'],
        ...['--quick', '--out', out, '--redis', redisUrl as string],
      ],
      { cwd: root, maxBuffer: 16 * 1024 * 1024 },
    );
    const result = JSON.parse(readFileSync(out, 'utf8')) as ScaleResult;
    expect(result.quick).toBe(true);
    expect(result.results.map((r) => [r.processes, r.clients])).toEqual([
      [1, 40],
      [2, 40],
    ]);
    for (const figures of result.results) {
      expect(figures.rssPerConnectionKiB).toHaveLength(figures.processes);
      expect(figures.roundMs).toHaveLength(1);
      expect(figures.roundMs[0]).toBeGreaterThan(0);
      expect(figures.healthz?.samples).toBeGreaterThan(0);
      expect(figures.healthz?.failures).toBe(0);
    }
    expect(result.decodeAndFoldMs).toBeGreaterThan(0);
    expect(stdout).toMatch(/load average .*\n/);
    expect(stdout).toContain('/healthz p50 / p99 / max ms (rounds)');
    // No load process reported a refused handshake or a dropped connection.
    expect(stdout).not.toMatch(/load process \d+:/);
  });
});
