// `tessera task holdout` against a real coordinator: the built CLI as a process uploads a
// task's held-out set; a bad file is refused with its line and column, and nothing is stored.
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ConsoleFixture, SERVICE_TOKEN, startConsoleFixture } from './console-fixtures.js';
import { flowersTask } from './task-fixtures.js';

const cli = fileURLToPath(new URL('../apps/cli/dist/main.js', import.meta.url));

let fx: ConsoleFixture;
let root: string;
let adminTokenFile: string;

function tessera(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: Record<string, string | undefined> = { ...process.env };
  delete env['DATABASE_URL'];
  delete env['TESSERA_TOKEN'];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { cwd: root, env });
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

// Flowers with every constant given (the statistics round is not needed to read it).
const flowers = (() => {
  const task = flowersTask({ name: 'cli-holdout-flowers' });
  const input = task['input'] as { columns: Array<Record<string, unknown>> };
  input.columns[0] = { name: 'length', type: 'numeric', standardize: { mean: 5, std: 1 } };
  return task;
})();

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'tessera-cli-holdout-'));
  fx = await startConsoleFixture();
  adminTokenFile = join(root, 'admin-token');
  writeFileSync(adminTokenFile, `${SERVICE_TOKEN}\n`);
  chmodSync(adminTokenFile, 0o600);
  const created = await fx.call('POST', '/tasks', { body: flowers });
  expect(created.status).toBe(201);
});
afterAll(async () => {
  await fx?.dispose();
  if (root) rmSync(root, { recursive: true, force: true });
});

const asAdmin = () => ['--url', fx.url, '--token-file', adminTokenFile];

describe('tessera task holdout', () => {
  it('refuses a bad file with its line and column, and stores nothing', async () => {
    const file = join(root, 'bad.csv');
    writeFileSync(
      file,
      'species,length,width,height,soil\nsetosa,5.1,3.5,1.4,clay\nsetosa,5,x,1,clay\n',
    );
    const result = await tessera(['task', 'holdout', 'cli-holdout-flowers', file, ...asAdmin()]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("bad.csv:3: column 'width': 'x' is not a number");
    expect(result.stderr).toContain('(field: holdout)');
    expect((await fx.db.tasks.holdouts()).size).toBe(0);
    const badName = await tessera(['task', 'holdout', 'Not A Name', file, ...asAdmin()]);
    expect(badName.code).toBe(1);
    expect(badName.stderr).toContain('NAME@VERSION');
  });

  it('uploads a CSV to the latest version, or to NAME@VERSION', async () => {
    const file = join(root, 'flowers.csv');
    writeFileSync(
      file,
      'soil,height,width,length,species\nclay,1.4,3.5,5.1,setosa\nloam,4.7,3.2,7.0,versicolor\nsand,6.0,3.3,6.3,virginica\n',
    );
    const latest = await tessera(['task', 'holdout', 'cli-holdout-flowers', file, ...asAdmin()]);
    expect(latest.stderr).toBe('');
    expect(latest.stdout).toContain('stored the held-out set of cli-holdout-flowers@1');
    expect(latest.stdout).toContain('rows        3');
    const pinned = await tessera(['task', 'holdout', 'cli-holdout-flowers@1', file, ...asAdmin()]);
    expect(pinned.code).toBe(0);
    const task = await fx.db.tasks.byName('cli-holdout-flowers');
    expect((await fx.db.tasks.holdout(task.sha256))?.rows).toBe(3);
  });
});
