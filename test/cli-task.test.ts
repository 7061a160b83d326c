// `tessera task create|list` as an admin and a researcher meet them: the built CLI as a
// process, against a real coordinator (port 0, PGlite on disk).
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { taskSha256 } from '@tessera/tasks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ConsoleFixture, SERVICE_TOKEN, startConsoleFixture } from './console-fixtures.js';
import { flowersTask, tabularParams, tabularTopology, weightsBin } from './task-fixtures.js';

const cli = fileURLToPath(new URL('../apps/cli/dist/main.js', import.meta.url));

let fx: ConsoleFixture;
let root: string;
let adminTokenFile: string;
let researcherToken: string;

function tessera(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const childEnv: Record<string, string | undefined> = { ...process.env, ...env };
  delete childEnv['DATABASE_URL'];
  if (env['TESSERA_TOKEN'] === undefined) delete childEnv['TESSERA_TOKEN'];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { cwd: root, env: childEnv });
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

function writeJson(name: string, value: unknown): string {
  const path = join(root, name);
  writeFileSync(path, JSON.stringify(value, null, 2));
  return path;
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'tessera-cli-task-'));
  fx = await startConsoleFixture();
  adminTokenFile = join(root, 'admin-token');
  writeFileSync(adminTokenFile, `${SERVICE_TOKEN}\n`);
  chmodSync(adminTokenFile, 0o600);
  const researcher = await fx.login('researcher');
  const created = await fx.call<{ token: string }>('POST', '/me/tokens', {
    as: researcher,
    body: { name: 'cli task test' },
  });
  researcherToken = created.body.token;
});
afterAll(async () => {
  await fx?.dispose();
  if (root) rmSync(root, { recursive: true, force: true });
});

const asAdmin = () => ['--url', fx.url, '--token-file', adminTokenFile];

describe('tessera task create', () => {
  it('stores the task and prints name@version, sha256 and parameters', async () => {
    const definition = flowersTask({ name: 'cli-flowers' });
    const result = await tessera([
      'task',
      'create',
      writeJson('task.json', definition),
      ...asAdmin(),
    ]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const sha256 = taskSha256(definition);
    expect(result.stdout).toContain('stored task cli-flowers@1');
    expect(result.stdout).toContain(`sha256      ${sha256}`);
    expect(result.stdout).toContain(`parameters  ${tabularParams()}`);
    expect((await fx.db.tasks.get(sha256)).name).toBe('cli-flowers');
  });

  it('--new-version stores the next version; without it a taken name is refused with its field', async () => {
    const next = flowersTask({ name: 'cli-flowers', topology: tabularTopology(6, 3, 8) });
    const file = writeJson('next.json', next);
    const refused = await tessera(['task', 'create', file, ...asAdmin()]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^tessera: CONFLICT: .*\(field: name\)\n$/);
    const stored = await tessera(['task', 'create', file, '--new-version', ...asAdmin()]);
    expect(stored.stderr).toBe('');
    expect(stored.stdout).toContain('stored task cli-flowers@2');
  });

  it('--weights uploads weights.bin, declaring it in the definition', async () => {
    const definition = flowersTask({ name: 'cli-seeded' });
    const bin = join(root, 'weights.bin');
    writeFileSync(bin, weightsBin(tabularParams()));
    const result = await tessera([
      'task',
      'create',
      writeJson('seeded.json', definition),
      '--weights',
      bin,
      ...asAdmin(),
    ]);
    expect(result.stderr).toBe('');
    expect(result.stdout).toContain('weights     uploaded');
    const stored = await fx.db.tasks.byName('cli-seeded');
    expect(stored.hasWeights).toBe(true);
    expect(stored.definition['model']).toMatchObject({
      weights: { byteLength: tabularParams() * 4 },
    });
  });

  it("prints the API's refusal with the field, and stores nothing", async () => {
    const before = (await fx.db.tasks.list()).length;
    const unknownLayer = await tessera([
      'task',
      'create',
      writeJson(
        'bad.json',
        flowersTask({ name: 'cli-bad', topology: tabularTopology(6, 3, 16, 'Nope') }),
      ),
      ...asAdmin(),
    ]);
    expect(unknownLayer.code).toBe(1);
    expect(unknownLayer.stderr).toContain('INVALID_ARGUMENT');
    expect(unknownLayer.stderr).toContain('model.topology.config.layers.1.class_name');
    const bin = join(root, 'short.bin');
    writeFileSync(bin, weightsBin(3));
    const wrongWeights = await tessera([
      'task',
      'create',
      writeJson('short.json', flowersTask({ name: 'cli-short' })),
      '--weights',
      bin,
      ...asAdmin(),
    ]);
    expect(wrongWeights.code).toBe(1);
    expect(wrongWeights.stderr).toContain('model.weights.byteLength');
    writeFileSync(join(root, 'broken.json'), '{"name": ');
    const broken = await tessera(['task', 'create', join(root, 'broken.json'), ...asAdmin()]);
    expect(broken.stderr).toContain('is not valid JSON');
    // A researcher's read-scoped token may not create.
    const researcher = await tessera(
      ['task', 'create', writeJson('r.json', flowersTask({ name: 'cli-r' })), '--url', fx.url],
      { TESSERA_TOKEN: researcherToken },
    );
    expect(researcher.code).toBe(1);
    expect(researcher.stderr).toContain('FORBIDDEN');
    expect((await fx.db.tasks.list()).length).toBe(before);
  });

  it('needs --url', async () => {
    const result = await tessera(['task', 'list']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('--url');
  });
});

describe('tessera task list', () => {
  it('lists every version for a researcher, built-ins marked', async () => {
    const result = await tessera(['task', 'list', '--url', fx.url], {
      TESSERA_TOKEN: researcherToken,
    });
    expect(result.stderr).toBe('');
    const lines = result.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^TASK\s+INPUT\s+OUTPUT\s+PARAMETERS\s+SHA256$/);
    const cnn = lines.find((line) => line.startsWith('mnist-cnn@1'));
    expect(cnn).toMatch(
      /^mnist-cnn@1\s+image\s+multiclass \(10 classes\)\s+1663370\s+[0-9a-f]{12}\s+built-in$/,
    );
    const mine = lines.find((line) => line.startsWith('cli-flowers@2'));
    expect(mine).toMatch(/tabular\s+multiclass \(3 classes\)\s+/);
    expect(mine).not.toContain('built-in');
  });
});
