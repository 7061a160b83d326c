// Smoke test of bench/train-speed.ts --quick: every model reaches every runtime that can train
// it (or says why not), both sides build the same architectures, and PyTorch's "1 thread" is
// one thread in every pool it has. No timings are asserted: a loaded machine makes them anything.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { loadNativeKernels } from '@tessera/ml-native';
import { afterAll, describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..');
const python = '/usr/bin/python3';
const MODELS = ['fedavg-2nn', 'fedavg-cnn', 'penguins', 'spam'];

function hasTorch(): boolean {
  try {
    execFileSync(python, ['-c', 'import torch'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const torch = hasTorch();
const native = loadNativeKernels();
if (!torch) console.warn(`train-speed smoke test: PyTorch (${python}) absent, its rows skipped`);

interface BenchRow {
  model: string;
  runtime: string;
  threads: number;
  samples: number;
  median: number;
  busyThreads: number;
  epochs: unknown[];
}
interface BenchResult {
  rows: BenchRow[];
  untimed: Record<string, string>;
  paramCounts: Record<string, number>;
  torchPools: Record<string, Array<{ api: string; threads: number }>>;
  machine: { loadAverageAtStart: string; loadAverageAtEnd: string; backends: string[] };
}

const folder = mkdtempSync(path.join(os.tmpdir(), 'train-speed-smoke-'));
afterAll(() => rmSync(folder, { recursive: true, force: true }));

describe('bench/train-speed --quick', () => {
  let result: BenchResult;
  let stdout: string;

  it('runs every model once and writes its table and JSON', { timeout: 900_000 }, async () => {
    const out = path.join(folder, 'train-speed.json');
    // The wasm workers and the plain JavaScript backend add minutes and nothing this test checks.
    const ran = await promisify(execFile)(
      process.execPath,
      [
        ...['--import', 'tsx', '--conditions=@tessera/source', 'bench/train-speed.ts'],
        ...['--quick', '--count', '60', '--models', MODELS.join(','), '--out', out],
        ...['--runtimes', 'pytorch,native,tfjs-openblas,tfjs-wasm'],
      ],
      { cwd: root, maxBuffer: 16 * 1024 * 1024 },
    );
    stdout = ran.stdout;
    result = JSON.parse(readFileSync(out, 'utf8')) as BenchResult;
    expect(stdout).toMatch(/load average .* at the start, .* at the end/);
    expect(stdout).toContain('| model | batch | runtime | samples/s |');
    expect(result.machine.backends.some((line) => line.startsWith('wasm: WebAssembly'))).toBe(true);
  });

  it('times the tfjs loop on every model, on every example of the epoch', () => {
    for (const model of MODELS) {
      const row = result.rows.find((r) => r.model === model && r.runtime === 'tfjs wasm, 1 thread');
      expect(row, model).toBeDefined();
      expect(row?.median).toBeGreaterThan(0);
      expect(row?.epochs).toHaveLength(1);
    }
    // The others take --count examples; the penguins' small model ten times that, in passes
    // over the first 60 rows (of 266).
    const samples = (model: string) => result.rows.find((r) => r.model === model)?.samples;
    expect(samples('fedavg-2nn')).toBe(60);
    expect(samples('spam')).toBe(60);
    expect(samples('penguins')).toBe(600);
  });

  it.runIf(native.ok)('times the native loop where it can, and says why where it cannot', () => {
    for (const model of MODELS) {
      const rows = result.rows.filter(
        (r) => r.model === model && r.runtime.startsWith('Tessera native loop'),
      );
      const plan = result.untimed[`${model} | native loop plan`];
      const refused = result.untimed[`${model} | Tessera native loop, 1 thread`];
      if (plan !== undefined) {
        // A layer the loop lacks: no row, and the plan's reason names the layer.
        expect(rows, model).toEqual([]);
        expect(plan).toMatch(/^layer '.+' \(\w+\): /);
        expect(stdout).toContain(`Native loop plan for ${model}: layer '`);
      } else if (refused !== undefined) {
        // The layers plan but the loop refused the task (its loss): it said so.
        expect(rows, model).toEqual([]);
        expect(refused).toContain('the native loop cannot train here: ');
      } else {
        expect(rows.length, model).toBe(2);
      }
    }
    for (const model of ['fedavg-2nn', 'fedavg-cnn', 'penguins']) {
      expect(
        result.rows.filter((r) => r.model === model && r.runtime.startsWith('Tessera native')),
      ).toHaveLength(2);
    }
    expect(stdout).toContain('Native loop plan for penguins: plans');
  });

  it.runIf(torch)(
    'builds the same architectures in PyTorch, held to one thread at "1 thread"',
    () => {
      for (const model of MODELS) {
        expect(result.paramCounts[`${model} PyTorch`], model).toBe(
          result.paramCounts[`${model} tfjs`],
        );
        const row = result.rows.find((r) => r.model === model && r.runtime === 'PyTorch, 1 thread');
        expect(row, model).toBeDefined();
        expect(row?.busyThreads, model).toBeLessThanOrEqual(1);
      }
      const pools = result.torchPools['PyTorch, 1 thread'] ?? [];
      expect(pools.map((pool) => pool.api)).toContain('openblas');
      for (const pool of pools) expect(pool.threads, pool.api).toBe(1);
      // On several cores PyTorch also runs with ATen's pool at the count and OpenBLAS at one.
      const cores = os.availableParallelism();
      if (cores > 1) {
        const split = result.torchPools[`PyTorch, ${cores} threads, OpenBLAS 1`] ?? [];
        expect(split.find((pool) => pool.api === 'openblas')?.threads).toBe(1);
        expect(split.find((pool) => pool.api === 'openmp')?.threads).toBe(cores);
      }
    },
  );
});
