import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createStrategy } from '@tessera/aggregation';
import { type ClientUpdateInput, openDatabase, type RunConfigInput } from '@tessera/db';
import { weightsToBytes } from '@tessera/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The `tessera` CLI as a researcher meets it: the built apps/cli/dist/main.js as a process,
 * against a PGlite folder written here with hand-made rounds (no training needed: replay only
 * re-aggregates the kept updates), and against no database at all.
 */
const cli = fileURLToPath(new URL('../apps/cli/dist/main.js', import.meta.url));
// 100 000 parameters: two kept updates a round are 800 000 bytes, so a 1 MiB storage limit
// keeps round 1 and is reached at round 2.
const PARAMS = 100_000;

let root: string;
let dataDir: string;
const runs = { plain: '', truncated: '', faithful: '', tampered: '' };

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI in `cwd`, with no DATABASE_URL in its environment. */
function tessera(args: string[], cwd = root): Promise<Result> {
  const env = { ...process.env };
  delete env['DATABASE_URL'];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { cwd, env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
    });
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const weightsOf = (seed: number) => {
  const weights = new Float32Array(PARAMS);
  for (let i = 0; i < PARAMS; i++) weights[i] = Math.sin(seed * 7919 + i) / 10;
  return weights;
};
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'tessera-cli-'));
  dataDir = join(root, 'pglite');
  const db = await openDatabase({ dataDir });
  try {
    const federation = await db.federations.create({ name: 'cli' });
    const clientIds: string[] = [];
    for (const organisation of ['org-a', 'org-b']) {
      clientIds.push(
        (await db.clients.issueToken({ federationId: federation.id, organisation })).client.id,
      );
    }
    const config = (overrides: Partial<RunConfigInput>): RunConfigInput => ({
      model: 'fedavg-2nn',
      strategy: 'fedavg',
      strategyOptions: {},
      rounds: 3,
      clientsPerRound: 2,
      fractionFit: null,
      minClients: 2,
      roundDeadlineMs: 60_000,
      localEpochs: 1,
      batchSize: 10,
      learningRate: 0.1,
      seed: 0,
      data: {},
      ...overrides,
    });
    /** A run of `rounds` committed rounds; `faithful` checkpoints are FedAvg of its updates. */
    const record = async (
      overrides: Partial<RunConfigInput>,
      rounds: number,
      faithful: boolean,
    ) => {
      const run = await db.runs.create({ federationId: federation.id, config: config(overrides) });
      let global: Float32Array = weightsOf(0);
      await db.rounds.saveInitialCheckpoint(run.id, weightsToBytes(global));
      await db.runs.setStatus(run.id, 'running');
      const strategy = createStrategy('fedavg', {});
      for (let round = 1; round <= rounds; round++) {
        const aggregator = strategy.beginRound(round, global);
        const updates: ClientUpdateInput[] = clientIds.map((clientId, index) => {
          const weights = weightsOf(round * 10 + index);
          const numExamples = 100 + 50 * index;
          aggregator.add({ clientId, numExamples, weights, metrics: {} });
          const bytes = weightsToBytes(weights);
          return {
            clientId,
            arrivalIndex: index,
            numExamples,
            durationMs: 100,
            sizeBytes: bytes.byteLength,
            sha256: sha256(bytes),
            metrics: { loss: 0.5 },
            weights: bytes,
          };
        });
        const aggregated = aggregator.finish().weights;
        if (aggregated === null) throw new Error('FedAvg of two updates gave nothing');
        global = faithful ? aggregated : weightsOf(1000 + round);
        await db.rounds.commit({
          runId: run.id,
          round,
          startedAt: new Date(),
          finishedAt: new Date(),
          selectedClientIds: clientIds,
          participantClientIds: clientIds,
          droppedClientIds: [],
          numExamples: 250,
          trainLoss: 0.5,
          trainAccuracy: 0.8,
          metrics: {},
          updates,
          checkpoint: weightsToBytes(global),
        });
      }
      await db.runs.setStatus(run.id, 'completed');
      return run.id;
    };
    runs.plain = await record({ keepUpdates: false }, 3, true);
    runs.truncated = await record({ keepUpdates: true, updateStorageLimitMb: 1 }, 3, true);
    runs.faithful = await record({ keepUpdates: true, rounds: 1 }, 1, true);
    runs.tampered = await record({ keepUpdates: true, rounds: 1 }, 1, false);
    expect((await db.runs.get(runs.truncated)).updatesTruncatedAtRound).toBe(2);
  } finally {
    // PGlite's folder is one process's: the CLI processes open it after this.
    await db.close();
  }
});

afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('the CLI without a database', () => {
  it('says which database it looked for and how to point it at one, and creates none', async () => {
    const empty = mkdtempSync(join(root, 'empty-'));
    const exported = await tessera(['export', runs.plain], empty);
    expect(exported.code).toBe(1);
    expect(exported.stdout).toBe('');
    expect(exported.stderr).toContain('NOT_FOUND: no database');
    expect(exported.stderr).toContain(`${join(empty, '.tessera', 'pglite')} is not a PGlite`);
    expect(exported.stderr).toContain('(the default --data-dir)');
    for (const hint of [
      '--url URL',
      '--token-file',
      '--database-url',
      'DATABASE_URL',
      '--data-dir',
    ]) {
      expect(exported.stderr).toContain(hint);
    }
    const replayed = await tessera(['replay', runs.plain], empty);
    expect(replayed.code).toBe(1);
    expect(replayed.stderr).toContain('NOT_FOUND: no database');
    // A mistyped --data-dir is named, and not created either.
    const typo = join(empty, 'pglit');
    const mistyped = await tessera(['export', runs.plain, '--data-dir', typo], empty);
    expect(mistyped.code).toBe(1);
    expect(mistyped.stderr).toContain(`${typo} is not a PGlite data folder.`);
    // Nothing was written: no .tessera, no export folder, no PGlite folder.
    expect(readdirSync(empty)).toEqual([]);
    expect(existsSync(typo)).toBe(false);
  });
});

describe('tessera export', () => {
  it('lists each file it wrote with its rows and size', async () => {
    const out = join(root, 'export-plain');
    const result = await tessera(['export', runs.plain, '--data-dir', dataDir, '--out', out]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines[0]).toBe(`exported run ${runs.plain} to ${out}:`);
    const expected: Array<[string, number | null]> = [
      ['run.json', null],
      ['rounds.csv', 3],
      ['updates.csv', 6],
      ['rounds.jsonl', 3],
      ['updates.jsonl', 6],
    ];
    expect(lines).toHaveLength(1 + expected.length);
    for (const [index, [name, rows]] of expected.entries()) {
      const path = join(out, name);
      const bytes = statSync(path).size;
      const size = bytes < 1024 ? `${bytes} B` : `${(bytes / 1024).toFixed(1)} KiB`;
      expect(lines[index + 1]).toBe(`  ${path}  (${rows === null ? '' : `${rows} rows, `}${size})`);
    }
  });
});

describe('tessera replay', () => {
  it('says a run that kept no update bytes can be verified, not replayed (exit 3)', async () => {
    const result = await tessera(['replay', runs.plain, '--data-dir', dataDir]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(3);
    expect(result.stdout).toContain(
      `run ${runs.plain} kept no update bytes (keepUpdates was off); it can be verified, not replayed`,
    );
    expect(result.stdout).not.toMatch(/NOT identical|0\/3/);
  });

  it('replays the rounds kept before the storage limit and says why it stops there (exit 3)', async () => {
    const result = await tessera(['replay', runs.truncated, '--data-dir', dataDir]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(3);
    const lines = result.stdout.trim().split('\n');
    // The table: round 1 only, reproduced; FedAvg keeps no strategy state ('-').
    expect(lines[1]).toMatch(/^ {4}1 {8}2 {2}[0-9a-f]{16} {2}[0-9a-f]{16} {2}yes {2,}-$/);
    expect(lines[2]).toMatch(/^rounds 2\.\.3 not replayed/);
    expect(result.stdout).toContain(
      'rounds 2..3 not replayed: its update storage limit (1 MiB) was reached at round 2, so no update bytes were kept from then on; they can be verified, not replayed',
    );
    expect(result.stdout).toContain(
      `replay of run ${runs.truncated} (fedavg) reproduced rounds 1..1 bit-identically (1/1); 2 later rounds could not be replayed`,
    );
    expect(result.stdout).not.toContain('NOT identical');
  });

  it('exits 0 when every checkpoint is reproduced and 2 when one differs', async () => {
    const faithful = await tessera(['replay', runs.faithful, '--data-dir', dataDir]);
    expect(faithful.code).toBe(0);
    expect(faithful.stdout).toContain('is bit-identical: 1/1 checkpoints reproduced');
    const tampered = await tessera(['replay', runs.tampered, '--data-dir', dataDir]);
    expect(tampered.code).toBe(2);
    expect(tampered.stdout).toContain(
      `replay of run ${runs.tampered} is NOT identical: 0/1 replayed checkpoints reproduced`,
    );
  });
});

describe('tessera simulate', () => {
  it('refuses a run config the coordinator cannot run, naming the field, and stores nothing', async () => {
    const counts = async () => {
      const db = await openDatabase({ dataDir });
      try {
        return {
          federations: (await db.federations.list()).length,
          runs: (await db.runs.list()).length,
        };
      } finally {
        await db.close();
      }
    };
    const before = await counts();
    for (const [flags, expected] of [
      [['--strategy', 'fedavgm', '--option', 'momentum=2'], 'strategyOptions.momentum: fedavgm:'],
      [
        ['--strategy', 'fedavg', '--option', 'mu=1'],
        'strategyOptions: fedavg takes arithmetic; got mu',
      ],
      [['--model', 'no-such-net'], 'model: unknown model; available:'],
      [['--lr', '0'], 'learningRate:'],
      [['--local-clip-norm', '1'], 'local DP needs both --local-clip-norm and'],
      [['--local-clip-norm', '0', '--local-noise-multiplier', '1'], 'localDp.clipNorm:'],
      [
        ['--secure-aggregation', '--strategy', 'fedmedian'],
        'secureAggregation: fedmedian cannot run under secure aggregation',
      ],
      [['--secure-aggregation', '--secagg-clip-range', '0'], 'secureAggregation.clipRange:'],
      [
        ['--secure-aggregation', '--local-clip-norm', '1', '--local-noise-multiplier', '1'],
        'localDp: local DP is not built under secure aggregation',
      ],
    ] as const) {
      const result = await tessera([
        'simulate',
        '--data-dir',
        dataDir,
        '--clients',
        '2',
        '--rounds',
        '1',
        ...flags,
      ]);
      expect(result.code, flags.join(' ')).toBe(1);
      expect(result.stderr).toContain(`tessera: INVALID_ARGUMENT: ${expected}`);
      expect(result.stdout).toBe('');
    }
    expect(await counts()).toEqual(before);
  });
});
