// Strategy state across a coordinator crash (issue 13): a FedAdam run whose coordinator
// process (apps/coordinator/dist/main.js) is SIGKILLed right after round 2 commits, and
// restarted on the same port and database, commits the same checkpoints, bit for bit, as an
// uninterrupted run with the same seed and the same real client processes. Without the
// restored moments (and step count) the resumed rounds 3.. would differ. The same for a
// SCAFFOLD run: without the restored control variate c, round 3 would send the clients c = 0.
// On PostgreSQL when TEST_DATABASE_URL is set (CI), else on a PGlite data folder.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { RunRecord } from '@tessera/db';
import { afterAll, describe, expect, it } from 'vitest';
import { quickRun, waitFor } from './harness.js';
import { createTestSchema } from './tcp-proxy.js';

const coordinatorCli = fileURLToPath(new URL('../apps/coordinator/dist/main.js', import.meta.url));
const clientCli = fileURLToPath(new URL('../apps/node-client/dist/main.js', import.meta.url));
const ADMIN_TOKEN = 'strategy-resume-admin-token';
const ROUNDS = 4;
/**
 * Two clients, both needed each round: the example-weighted sum of two updates is the same in
 * either arrival order (float addition commutes), so the runs can be compared bit for bit.
 */
const CLIENTS = 2;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

interface CoordinatorProcess {
  child: ChildProcess;
  lines: string[];
  exited: Promise<void>;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

interface ResumeCase {
  strategy: string;
  strategyOptions: Record<string, unknown>;
  /**
   * Whether the run keeps its updates, and so whether /verify can replay it: SCAFFOLD's
   * updates carry Δc_i, which the update records do not keep, so its run is not replayed.
   */
  keepUpdates: boolean;
}

const CASES: Record<string, ResumeCase> = {
  FedAdam: {
    strategy: 'fedadam',
    strategyOptions: { serverLearningRate: 0.01, beta1: 0.9, beta2: 0.99, tau: 1e-3 },
    keepUpdates: true,
  },
  // Its c is the committed state; the clients' c_i stay with the client processes, which
  // outlive the coordinator.
  SCAFFOLD: { strategy: 'scaffold', strategyOptions: { clientCount: CLIENTS }, keepUpdates: false },
};

describe.each(Object.keys(CASES))('%s across a coordinator SIGKILL', (name) => {
  const { strategy, strategyOptions, keepUpdates } = CASES[name] as ResumeCase;
  it('a run killed after round 2 and resumed commits the checkpoints of an uninterrupted run', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const dataDir = mkdtempSync(join(tmpdir(), 'tessera-strategy-resume-'));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const { TEST_DATABASE_URL: databaseUrl } = process.env;
    let databaseArgs = ['--data-dir', join(dataDir, 'pglite')];
    if (databaseUrl) {
      const schema = await createTestSchema(databaseUrl);
      cleanups.push(() => schema.drop());
      databaseArgs = ['--database-url', schema.url];
    }

    const startCoordinator = async (): Promise<CoordinatorProcess> => {
      const child = spawn(
        process.execPath,
        [coordinatorCli, '--port', String(port), '--host', '127.0.0.1', ...databaseArgs],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, TESSERA_ADMIN_TOKEN: ADMIN_TOKEN, DATABASE_URL: '' },
        },
      );
      const lines: string[] = [];
      for (const stream of [child.stdout, child.stderr]) {
        if (stream) createInterface({ input: stream }).on('line', (line) => lines.push(line));
      }
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      await waitFor(
        () => lines.some((line) => line.includes('coordinator listening')),
        `the coordinator to listen (log: ${lines.slice(-5).join(' | ')})`,
        90_000,
      );
      return { child, lines, exited };
    };
    let coordinator = await startCoordinator();
    cleanups.push(() => {
      coordinator.child.kill('SIGKILL');
    });

    const api = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
      const response = await fetch(`${url}/api${path}`, {
        method,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await response.text();
      if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
      return JSON.parse(text) as T;
    };

    const federation = await api<{ id: string }>('POST', '/federations', { name: 'resume' });
    for (let k = 0; k < CLIENTS; k++) {
      const issued = await api<{ token: string }>('POST', `/federations/${federation.id}/clients`, {
        organisation: `org-${k}`,
      });
      const child = spawn(
        process.execPath,
        [
          clientCli,
          ...['--coordinator', url, '--token', issued.token, '--progress', 'none'],
          ...['--mnist', `${k}/${CLIENTS}`, '--max-examples', '200', '--threads', '1'],
        ],
        { stdio: ['ignore', 'ignore', 'ignore'] },
      );
      cleanups.push(() => {
        child.kill('SIGKILL');
      });
    }
    const allConnected = () =>
      waitFor(
        async () => (await api<unknown[]>('GET', '/connected-clients')).length === CLIENTS,
        'every client to connect',
        90_000,
      );
    await allConnected();

    const createRun = async () => {
      const run = await api<RunRecord>('POST', '/runs', {
        ...quickRun,
        federationId: federation.id,
        rounds: ROUNDS,
        minClients: CLIENTS,
        strategy,
        strategyOptions,
        keepUpdates,
      });
      await api('POST', `/runs/${run.id}/start`);
      return run;
    };
    const completed = (runId: string) =>
      waitFor(
        async () => (await api<RunRecord>('GET', `/runs/${runId}`)).status === 'completed',
        `run ${runId} to complete`,
        120_000,
      );
    const checkpoints = (runId: string) =>
      api<Array<{ round: number; sha256: string }>>('GET', `/runs/${runId}/checkpoints`);

    const whole = await createRun();
    await completed(whole.id);
    const reference = await checkpoints(whole.id);
    expect(reference.map((c) => c.round)).toEqual([0, 1, 2, 3, 4]);

    const crashed = await createRun();
    await waitFor(
      () =>
        coordinator.lines.some(
          (line) =>
            line.includes('"msg":"round committed"') &&
            line.includes(crashed.id) &&
            line.includes('"round":2'),
        ),
      'round 2 of the second run to commit',
      120_000,
    );
    coordinator.child.kill('SIGKILL');
    await coordinator.exited;
    coordinator = await startCoordinator();
    const resumedLine = await waitFor(
      () => coordinator.lines.find((l) => l.includes('resuming run') && l.includes(crashed.id)),
      'the run to be resumed',
    );
    // Killed between rounds 2 and 3: the resumed engine starts from checkpoint 2's state.
    expect(resumedLine).toContain('"committedRounds":2');
    await allConnected();
    await completed(crashed.id);

    const resumed = await checkpoints(crashed.id);
    expect(resumed.map((c) => c.sha256)).toEqual(reference.map((c) => c.sha256));
    // Both runs replay from their kept updates, strategy states included.
    for (const runId of keepUpdates ? [whole.id, crashed.id] : []) {
      const report = await api<{ identical: boolean; checks: Array<{ stateMatch: unknown }> }>(
        'GET',
        `/runs/${runId}/verify`,
      );
      expect(report.identical).toBe(true);
      expect(report.checks.map((c) => c.stateMatch)).toEqual([true, true, true, true]);
    }
  }, 300_000);
});
