// `tessera export|verify|replay --url` as a researcher meets it: the built CLI as a process,
// against a real coordinator (port 0, PGlite on disk) with an API token the researcher made for
// themselves. The database mode's files are made in this process by the same exportRun the
// CLI's database mode calls (the coordinator holds the PGlite folder, which is one process's).
import { spawn } from 'node:child_process';
import {
  chmodSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportRun } from '../apps/cli/src/export-command.js';
import { type ConsoleFixture, startConsoleFixture } from './console-fixtures.js';
import { type RecordedRuns, recordRuns } from './recorded-runs.js';

const cli = fileURLToPath(new URL('../apps/cli/dist/main.js', import.meta.url));

let fx: ConsoleFixture;
let runs: RecordedRuns;
let root: string;
let tokenFile: string;
let token: string;

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI in `root` with no DATABASE_URL, and TESSERA_TOKEN only where given. */
function tessera(args: string[], env: Record<string, string> = {}): Promise<Result> {
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

/** Every file under `dir`, by relative path, with its bytes. */
function filesUnder(dir: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    const path = join(dir, name);
    if (statSync(path).isFile()) files.set(relative(dir, path), readFileSync(path));
  }
  return files;
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'tessera-cli-api-'));
  fx = await startConsoleFixture();
  runs = await recordRuns(fx.db, 'cli over the API');
  const researcher = await fx.login('researcher');
  const created = await fx.call<{ token: string }>('POST', '/me/tokens', {
    as: researcher,
    body: { name: 'cli test' },
  });
  expect(created.status).toBe(201);
  token = created.body.token;
  tokenFile = join(root, 'token');
  writeFileSync(tokenFile, `${token}\n`);
  chmodSync(tokenFile, 0o600);
});
afterAll(async () => {
  await fx?.dispose();
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('tessera export --url', () => {
  it('writes the same files as the database mode, and lists them', async () => {
    const overApi = join(root, 'over-api');
    const result = await tessera([
      'export',
      runs.faithful,
      '--url',
      fx.url,
      '--token-file',
      tokenFile,
      '--out',
      overApi,
      '--model-round',
      'latest',
    ]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const fromDatabase = join(root, 'from-database');
    await exportRun(fx.db, runs.faithful, {
      outDir: fromDatabase,
      format: 'all',
      modelRound: 'latest',
    });

    const api = filesUnder(overApi);
    const database = filesUnder(fromDatabase);
    expect([...api.keys()].sort()).toEqual(
      [
        'run.json',
        'rounds.csv',
        'updates.csv',
        'rounds.jsonl',
        'updates.jsonl',
        join('model-round-2', 'model.json'),
        join('model-round-2', 'weights.bin'),
      ].sort(),
    );
    expect([...api.keys()].sort()).toEqual([...database.keys()].sort());
    for (const [name, bytes] of database) {
      expect(api.get(name)?.equals(bytes), `${name} differs`).toBe(true);
    }
    // The organisation with a quote and a comma went through the CSV quoting the same way.
    expect(api.get('updates.csv')?.toString()).toContain('"org ""b"", with a comma"');
    const lines = result.stdout.trim().split('\n');
    expect(lines[0]).toBe(`exported run ${runs.faithful} to ${overApi}:`);
    expect(lines).toHaveLength(1 + 7);
  });

  it('takes the token from TESSERA_TOKEN, and from --token with a warning that ps shows it', async () => {
    const viaEnv = await tessera(
      ['export', runs.plain, '--url', fx.url, '--format', 'csv', '--out', join(root, 'env')],
      { TESSERA_TOKEN: token },
    );
    expect(viaEnv.stderr).toBe('');
    expect(viaEnv.code).toBe(0);
    const viaFlag = await tessera([
      'export',
      runs.plain,
      '--url',
      fx.url,
      '--token',
      token,
      '--format',
      'csv',
      '--out',
      join(root, 'flag'),
    ]);
    expect(viaFlag.code).toBe(0);
    expect(viaFlag.stderr).toContain(
      'warning: the API token on the command line can be read by other users',
    );
    const both = await tessera(['export', runs.plain, '--url', fx.url, '--token-file', tokenFile], {
      TESSERA_TOKEN: token,
    });
    expect(both.code).toBe(1);
    expect(both.stderr).toContain(
      'INVALID_ARGUMENT: the API token is given 2 ways (--token-file, TESSERA_TOKEN); give exactly one',
    );
  });

  it('says what is wrong without a token, with a refused one, and with no coordinator there', async () => {
    const none = await tessera([
      'export',
      runs.plain,
      '--url',
      fx.url,
      '--out',
      join(root, 'none'),
    ]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('UNAUTHORIZED');
    expect(none.stderr).toContain(
      'no API token was given: pass --token-file FILE or set TESSERA_TOKEN',
    );
    const wrong = await tessera(['export', runs.plain, '--url', fx.url], {
      TESSERA_TOKEN: `tsa_${'B'.repeat(43)}`,
    });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('UNAUTHORIZED: API token unknown, revoked or expired');
    const nobody = await tessera([
      'export',
      runs.plain,
      '--url',
      'http://127.0.0.1:9',
      '--token-file',
      tokenFile,
    ]);
    expect(nobody.code).toBe(1);
    expect(nobody.stderr).toContain(
      'UNAVAILABLE: cannot reach the coordinator at http://127.0.0.1:9/api',
    );
    const bad = await tessera([
      'export',
      runs.plain,
      '--url',
      'localhost:8080',
      '--token-file',
      tokenFile,
    ]);
    expect(bad.stderr).toContain('INVALID_ARGUMENT: --url must start with http:// or https://');
    // None of these wrote an export folder.
    expect(readdirSync(root).filter((name) => name.startsWith('export-'))).toEqual([]);
  });
});

describe('tessera verify --url', () => {
  it('reports bit-identical for a run with kept updates (exit 0), from bytes fetched over the API', async () => {
    const result = await tessera([
      'verify',
      runs.faithful,
      '--url',
      fx.url,
      '--token-file',
      tokenFile,
    ]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines[1]).toMatch(/^ {4}1 {8}2 {2}[0-9a-f]{16} {2}[0-9a-f]{16} {2}yes {2,}-$/);
    expect(lines[2]).toMatch(/^ {4}2 {8}2 {2}[0-9a-f]{16} {2}[0-9a-f]{16} {2}yes {2,}-$/);
    expect(result.stdout).toContain(
      `replay of run ${runs.faithful} (fedavg) is bit-identical: 2/2 checkpoints reproduced`,
    );
  });

  it('recomputes a SCAFFOLD run over the API, its Δc_i and committed c included (exit 0)', async () => {
    const result = await tessera([
      'verify',
      runs.scaffold,
      '--url',
      fx.url,
      '--token-file',
      tokenFile,
    ]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const lines = result.stdout.trim().split('\n');
    // The last column: the recomputed c against the state committed with the checkpoint.
    expect(lines[1]).toMatch(/^ {4}1 {8}2 {2}[0-9a-f]{16} {2}[0-9a-f]{16} {2}yes {8}yes$/);
    expect(lines[2]).toMatch(/^ {4}2 {8}2 {2}[0-9a-f]{16} {2}[0-9a-f]{16} {2}yes {8}yes$/);
    expect(result.stdout).toContain(
      `replay of run ${runs.scaffold} (scaffold) is bit-identical: 2/2 checkpoints reproduced`,
    );
  });

  it('says a run that kept no update bytes can be verified, not replayed (exit 3)', async () => {
    for (const command of ['verify', 'replay']) {
      const result = await tessera([
        command,
        runs.plain,
        '--url',
        fx.url,
        '--token-file',
        tokenFile,
      ]);
      expect(result.code, command).toBe(3);
      expect(result.stdout).toContain(
        `run ${runs.plain} kept no update bytes (keepUpdates was off); it can be verified, not replayed`,
      );
      expect(result.stdout).not.toContain('NOT identical');
    }
  });

  it('finds a checkpoint that the updates do not give (exit 2)', async () => {
    const result = await tessera([
      'verify',
      runs.tampered,
      '--url',
      fx.url,
      '--token-file',
      tokenFile,
    ]);
    expect(result.code).toBe(2);
    expect(result.stdout).toContain(`replay of run ${runs.tampered} is NOT identical: 0/1`);
  });

  it('keeps counterfactual replay (which stores a run) to the database, and says so', async () => {
    const result = await tessera([
      'replay',
      runs.faithful,
      '--strategy',
      'fedmedian',
      '--url',
      fx.url,
      '--token-file',
      tokenFile,
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      'INVALID_ARGUMENT: replay --strategy stores a new run, so it works on the database only',
    );
    const help = await tessera(['--help']);
    expect(help.stdout).toContain('database only: it stores a');
    expect(help.stdout).toContain('--token-file FILE');
  });
});
