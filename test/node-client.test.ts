// The Node client as an organisation runs it: real client processes (apps/node-client/dist, so
// `npm run build` first) against a real coordinator on port 0, their output read as a person
// would read it.
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadNativeKernels } from '@tessera/ml-native';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createFederation, type Harness, quickRun, startHarness, waitFor } from './harness.js';

const clientCli = fileURLToPath(new URL('../apps/node-client/dist/main.js', import.meta.url));
const folder = mkdtempSync(join(tmpdir(), 'tessera-node-client-'));
afterAll(() => rmSync(folder, { recursive: true, force: true }));

let harness: Harness | undefined;
const children: ChildProcess[] = [];
afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  await harness?.dispose();
  harness = undefined;
});

interface RunningClient {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** The exit status, or 128 + the signal's number when a signal ended it (as shells say). */
  exited: Promise<number>;
}

/** A client process with exactly the arguments and token environment given (nothing inherited). */
function runClient(args: string[], tokenEnv?: string): RunningClient {
  const { TESSERA_TOKEN: _inherited, TESSERA_COORDINATOR: _too, ...env } = process.env;
  const child = spawn(process.execPath, [clientCli, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: tokenEnv === undefined ? env : { ...env, TESSERA_TOKEN: tokenEnv },
  });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    out += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    err += chunk.toString();
  });
  const exited = new Promise<number>((resolve) =>
    child.on('exit', (code, signal) =>
      resolve(code ?? 128 + (signal === 'SIGKILL' ? 9 : signal === 'SIGTERM' ? 15 : 2)),
    ),
  );
  return { child, stdout: () => out, stderr: () => err, exited };
}

function writeCsv(name: string, rows: number, features: number, value: (i: number) => number) {
  const lines = Array.from(
    { length: rows },
    (_, row) =>
      `${row % 10},${Array.from({ length: features }, (_, i) => value(row * features + i)).join(',')}`,
  );
  const path = join(folder, name);
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

const connectedLogs = (h: Harness) => h.logs.filter((line) => line.includes('client connected'));

describe('the Node client checks its data before it connects', () => {
  it('exits with the file, the expected and the found shape for a 30-feature CSV, never connecting', async () => {
    harness = await startHarness();
    const { tokens } = await createFederation(harness, 1);
    const csv = writeCsv('thirty.csv', 50, 30, (i) => (i % 7) / 7);
    const client = runClient([
      '--coordinator',
      harness.coordinator.url,
      '--token',
      tokens[0]?.token as string,
      '--csv',
      csv,
    ]);
    expect(await client.exited).toBe(2);
    expect(client.stderr()).toContain(
      `tessera-client: INVALID_ARGUMENT: ${csv}: rows have 30 features; the models read 784 (28x28 pixels)`,
    );
    expect(client.stdout()).toBe('');
    expect(connectedLogs(harness)).toEqual([]);
    expect(harness.coordinator.registry.list()).toEqual([]);
  });

  it('refuses 0..255 pixels with file, line and column, and takes them with --scale 255', async () => {
    harness = await startHarness();
    const h = harness;
    const { tokens } = await createFederation(h, 1);
    // The first row is all zeros (in range either way): the first bad value is on line 2.
    const csv = writeCsv('bytes.csv', 40, 784, (i) => (i < 784 ? 0 : (i * 31) % 256));
    const common = ['--coordinator', h.coordinator.url, '--csv', csv, '--progress', 'none'];
    const refused = runClient(common, tokens[0]?.token);
    expect(await refused.exited).toBe(2);
    expect(refused.stderr()).toContain(
      `${csv}:2: column 2: ${(784 * 31) % 256} is outside the models' range [0, 1]; if the file holds 0..255 pixels, run with --scale 255`,
    );
    expect(connectedLogs(h)).toEqual([]);

    const scaled = runClient([...common, '--scale', '255'], tokens[0]?.token);
    await waitFor(() => h.coordinator.registry.list().length === 1, 'the scaled client to connect');
    expect(scaled.stdout()).toContain(
      `CSV ${csv} (features divided by 255): 36 training and 4 held-out examples`,
    );
    expect(h.coordinator.registry.list()[0]?.info.numExamples).toBe(36);
  });
});

describe('the Node client as a person runs it', () => {
  it('reads its token from --token-file, prints each round, and on SIGTERM leaves with a summary (143)', async () => {
    harness = await startHarness();
    const h = harness;
    const { federationId, tokens } = await createFederation(h, 1);
    const tokenFile = join(folder, 'token');
    writeFileSync(tokenFile, `${tokens[0]?.token}\n# issued for org-0\n`);
    chmodSync(tokenFile, 0o600);
    const client = runClient([
      '--coordinator',
      h.coordinator.url,
      '--token-file',
      tokenFile,
      '--mnist',
      '0/1',
      '--max-examples',
      '200',
      '--progress',
      'none',
    ]);
    await waitFor(() => h.coordinator.registry.list().length === 1, 'the client to connect');
    const run = await h.api<{ id: string }>('POST', '/runs', {
      ...quickRun,
      federationId,
      rounds: 2,
    });
    const finished = new Promise((resolve) => h.coordinator.on('run-finished', resolve));
    expect((await h.api('POST', `/runs/${run.body.id}/start`)).status).toBe(202);
    expect(await finished).toMatchObject({ status: 'completed' });
    await waitFor(
      () => client.stdout().includes('round 2: held-out accuracy'),
      "the client's round 2 lines",
    );

    client.child.kill('SIGTERM');
    expect(await client.exited).toBe(143);
    const out = client.stdout();
    expect(out).toMatch(
      /^round 1: trained on 180 examples in \d+\.\d s \(\d+ samples\/s\), loss \d\.\d{4}, sent$/m,
    );
    expect(out).toMatch(/^round 2: trained on 180 examples in .*, sent$/m);
    expect(out).toContain('tessera-client: SIGTERM: leaving the federation');
    expect(out).toMatch(
      new RegExp(
        `^tessera-client: left; run ${run.body.id}: took part in 2 rounds \\(2 sent\\), \\d+\\.\\d s of training, last loss \\d\\.\\d{4} \\(round 2\\), held-out accuracy \\d+\\.\\d\\d% \\(round 2\\)$`,
        'm',
      ),
    );
    expect(out).not.toContain('reconnecting');
    expect(client.stderr()).toBe(''); // no warning: the token file is private
  });

  it('on Ctrl-C mid-training (token from TESSERA_TOKEN) abandons the round, disconnects quietly and exits 130', async () => {
    harness = await startHarness();
    const h = harness;
    const { federationId, tokens } = await createFederation(h, 1);
    const client = runClient(
      [
        '--coordinator',
        h.coordinator.url,
        '--mnist',
        '0/1',
        '--max-examples',
        '5000',
        '--progress',
        'lines',
      ],
      tokens[0]?.token,
    );
    await waitFor(() => h.coordinator.registry.list().length === 1, 'the client to connect');
    // Enough epochs (minutes of training) that the round is still training when the signal
    // comes, and that only abandoning it lets the client leave within its 10 s grace.
    const run = await h.api<{ id: string }>('POST', '/runs', {
      ...quickRun,
      federationId,
      localEpochs: 1000,
      batchSize: 10,
    });
    expect((await h.api('POST', `/runs/${run.body.id}/start`)).status).toBe(202);
    await waitFor(() => client.stdout().includes('  epoch 2/1000:'), 'two epochs of round 1');

    client.child.kill('SIGINT');
    expect(await client.exited).toBe(130);
    const out = client.stdout();
    // The run's own config, as the train instruction carries it (docs/protocol.md §5.2).
    expect(out).toContain('round 1: training fedavg-2nn for 1000 epoch(s), batch 10, lr 0.05');
    expect(out).toContain('tessera-client: SIGINT: leaving the federation');
    expect(out).toContain(
      `tessera-client: left; run ${run.body.id}: took part in 1 round (1 unfinished)`,
    );
    expect(out).not.toContain('reconnecting');
    expect(out).not.toContain('disconnected');
    expect(client.stderr()).toBe('');
    // The coordinator saw it leave; it sent no update and no failure for the abandoned round.
    await waitFor(
      () => h.logs.some((line) => line.includes('client dropped out of a round')),
      'the coordinator to count the client as dropped',
    );
    expect(h.logs.some((line) => line.includes('client reported a failed round'))).toBe(false);
    // Nothing of it was aggregated: round 1 (this client alone) was never committed.
    expect(h.logs.some((line) => line.includes('round committed'))).toBe(false);
    await expect(h.db.rounds.updates(run.body.id, 1)).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
  });

  it('stops with the reason when its token was revoked while it was connected', async () => {
    harness = await startHarness();
    const h = harness;
    const { tokens } = await createFederation(h, 1);
    const client = runClient(
      ['--coordinator', h.coordinator.url, '--mnist', '0/1', '--max-examples', '100'],
      tokens[0]?.token,
    );
    await waitFor(() => h.coordinator.registry.list().length === 1, 'the client to connect');
    await h.api('POST', `/clients/${tokens[0]?.client.id}/revoke`);
    // A revocation takes effect at the next connection: a coordinator restart forces one.
    await h.restart();
    expect(await client.exited).toBe(2);
    expect(client.stderr()).toContain(
      'tessera-client: UNAUTHORIZED: unknown or revoked client token',
    );
  });

  // `--workers 2` on the openblas backend fails inside trainLocal at every round: a real
  // training error of a real client, which used to show only "round 1: training…".
  it.skipIf(!loadNativeKernels().ok)(
    "prints a failed round's reason, and the coordinator logs the same reason",
    async () => {
      harness = await startHarness();
      const h = harness;
      const { federationId, tokens } = await createFederation(h, 1);
      const client = runClient(
        [
          '--coordinator',
          h.coordinator.url,
          '--mnist',
          '0/1',
          '--max-examples',
          '200',
          '--backend',
          'openblas',
          '--workers',
          '2',
          '--progress',
          'none',
        ],
        tokens[0]?.token,
      );
      await waitFor(() => h.coordinator.registry.list().length === 1, 'the client to connect');
      const run = await h.api<{ id: string }>('POST', '/runs', { ...quickRun, federationId });
      expect((await h.api('POST', `/runs/${run.body.id}/start`)).status).toBe(202);
      const reason =
        "trainLocal: workers > 1 needs the wasm or cpu backend, not 'openblas' (it uses every core itself)";
      await waitFor(
        () => client.stderr().includes(`tessera-client: round 1 failed: ${reason}\n`),
        'the failure on the terminal',
      );
      const logged = await waitFor(
        () => h.logs.find((line) => line.includes('client reported a failed round')),
        "the coordinator's log line",
      );
      expect(logged).toContain(JSON.stringify(reason).slice(1, -1));
      expect(logged).toContain(`"round":1`);
    },
  );
});
