// Smoke test of bench/privacy.ts --quick: a real SecAgg round of 10 2NN clients through the
// coordinator's SecAggRound and the clients' SecAggParticipation (with and without a drop-out)
// and two rounds of FedAvg and DP-FedAvg on MNIST. Checked: what does not depend on the
// machine (byte counts from the wire codec, who survived, the unmasked mean against plain
// FedAvg, ε from the accountant). No timing is asserted: a loaded machine makes them anything.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { CIPHERTEXT_BYTES, PUBLIC_KEY_BYTES } from '@tessera/secagg';
import { afterAll, describe, expect, it } from 'vitest';
import type { BenchMachine, DpRun, DpSettings, SecAggRow } from '../bench/privacy.js';

const root = path.resolve(import.meta.dirname, '..');
const folder = mkdtempSync(path.join(os.tmpdir(), 'privacy-bench-smoke-'));
afterAll(() => rmSync(folder, { recursive: true, force: true }));

// Types only: importing the bench's values would run it.
interface BenchResult {
  secagg: { rows: SecAggRow[]; machine: BenchMachine };
  dp: { settings: DpSettings; runs: DpRun[]; loops: string[] };
}

describe('bench/privacy --quick', () => {
  let result: BenchResult;
  let stdout: string;

  it('runs both parts and writes their tables and JSON', { timeout: 600_000 }, async () => {
    const out = path.join(folder, 'privacy.json');
    const ran = await promisify(execFile)(
      process.execPath,
      [
        ...['--import', 'tsx', '--conditions=@tessera/source', 'bench/privacy.ts'],
        ...['--quick', '--out', out],
      ],
      { cwd: root, maxBuffer: 16 * 1024 * 1024 },
    );
    stdout = ran.stdout;
    result = JSON.parse(readFileSync(out, 'utf8')) as BenchResult;
    expect(stdout).toMatch(/load average .* at the start, .* at the end/);
    expect(stdout).toContain('| model | n | dropped | up B: advertise');
    expect(stdout).toContain('| q | run | C | z | ε after round 1 |');
    expect(result.secagg.machine.quick).toBe(true);
  });

  it('counts a SecAgg round of the 2NN through the codec, with and without a drop-out', () => {
    const [full, dropped] = result.secagg.rows;
    expect(full?.parameters).toBe(199_210);
    expect(full?.clients).toBe(10);
    expect(full?.threshold).toBe(7);
    expect(full?.droppedAfterSharing).toBe(0);
    expect(full?.survivors).toBe(10);
    expect(dropped?.droppedAfterSharing).toBe(1);
    expect(dropped?.survivors).toBe(9);
    for (const row of [full, dropped] as SecAggRow[]) {
      // The masked vector is 4·(P + 1) bytes of uint32 words (the last: the example count),
      // plus the packet's envelope: more than that, by less than 200 bytes.
      const vector = 4 * (row.parameters + 1);
      expect(row.clientUpBytes.mask).toBeGreaterThan(vector);
      expect(row.clientUpBytes.mask).toBeLessThan(vector + 200);
      // The plain update frame carries the float32 weights: 4·P bytes and an envelope.
      expect(row.plainUpdateFrameBytes).toBeGreaterThan(4 * row.parameters);
      expect(row.plainUpdateFrameBytes).toBeLessThan(4 * row.parameters + 200);
      // A share message holds one ciphertext per peer (9), the advertised list every client's
      // two X25519 keys (10), and the setup in the train instruction every client id.
      expect(row.clientUpBytes.share).toBeGreaterThan(9 * CIPHERTEXT_BYTES);
      expect(row.clientDownBytes.share).toBeGreaterThan(10 * 2 * PUBLIC_KEY_BYTES.X25519);
      expect(row.setupBytesPerClient).toBeGreaterThan(10 * 'client-000'.length);
      expect(row.maxAbsDeviation).toBeLessThanOrEqual(row.maxAbsErrorBound + 1e-6);
      expect(row.maxAbsErrorBound).toBeLessThan(1e-5);
      expect(row.coordinatorMs['finish']).toBeGreaterThan(0);
      expect(row.clientMs.mask).toBeGreaterThan(0);
      expect(row.onePrgExpansionMs).toBeGreaterThan(0);
    }
    // The dropped client sent no masked vector and no unmasking shares.
    expect(full?.coordinatorInBytes).toBeGreaterThan(10 * 4 * 199_211);
    expect(dropped?.coordinatorInBytes).toBeLessThan(10 * 4 * 199_211);
  });

  it('trains FedAvg and DP-FedAvg on the same samples, ε from the accountant', () => {
    const { settings, runs } = result.dp;
    expect(settings.clients).toBe(100);
    expect(settings.delta).toBe(1e-5);
    const [plain, dp] = runs;
    expect(runs).toHaveLength(2);
    expect(plain?.label).toBe('FedAvg, no DP, q=0.1');
    expect(plain?.noiseMultiplier).toBeNull();
    expect(plain?.clippedUpdates).toBeNull();
    expect(plain?.epsilonByRound).toEqual([null, null]);
    expect(dp?.label).toBe('DP-FedAvg ε=8, q=0.1, C=0.5');
    expect(dp?.targetEpsilon).toBe(8);
    expect(dp?.noiseMultiplier).toBeGreaterThan(0);
    expect(dp?.sampled).toEqual(plain?.sampled);
    expect(dp?.epsilonByRound).toHaveLength(settings.rounds);
    const [first, last] = (dp?.epsilonByRound ?? []) as number[];
    // ε grows with each round and ends at or just under the target the noise was chosen for.
    expect(first).toBeLessThan(last as number);
    expect(last).toBeLessThanOrEqual(8);
    expect(last).toBeGreaterThan(7.9);
    expect(dp?.updates).toBe(plain?.updates);
    expect(dp?.clippedUpdates).toBeGreaterThanOrEqual(0);
    expect(dp?.clippedUpdates).toBeLessThanOrEqual(dp?.updates as number);
    for (const run of runs) {
      expect(run.accuracy).toBeGreaterThan(0);
      expect(run.accuracy).toBeLessThanOrEqual(1);
    }
  });
});
