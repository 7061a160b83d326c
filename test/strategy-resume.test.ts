// Strategy state across a coordinator crash (issue 13): a FedAdam run whose coordinator
// process (apps/coordinator/dist/main.js) is SIGKILLed right after round 2 commits, and
// restarted on the same port and database, commits the same checkpoints, bit for bit, as an
// uninterrupted run with the same seed and the same real client processes. Without the
// restored moments (and step count) the resumed rounds 3.. would differ. The same for a
// SCAFFOLD run: without the restored control variate c, round 3 would send the clients c = 0.
// On PostgreSQL when TEST_DATABASE_URL is set (CI), else on a PGlite data folder.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunRecord } from '@tessera/db';
import { afterAll, describe, expect, it } from 'vitest';
import {
  adminApi,
  type CoordinatorProcess,
  freePort,
  issueClientToken,
  spawnClientProcess,
  startCoordinatorProcess,
} from './coordinator-processes.js';
import { quickRun, waitFor } from './harness.js';
import { createTestSchema } from './tcp-proxy.js';

const ADMIN_TOKEN = 'strategy-resume-admin-token';
const ROUNDS = 4;
/**
 * Two clients, both needed each round: the example-weighted sum of two updates is the same in
 * either arrival order (float addition commutes), so the runs can be compared bit for bit.
 */
const CLIENTS = 2;

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

interface ResumeCase {
  strategy: string;
  strategyOptions: Record<string, unknown>;
}

const CASES: Record<string, ResumeCase> = {
  FedAdam: {
    strategy: 'fedadam',
    strategyOptions: { serverLearningRate: 0.01, beta1: 0.9, beta2: 0.99, tau: 1e-3 },
  },
  // Its c is the committed state; the clients' c_i stay with the client processes, which
  // outlive the coordinator. Its kept updates carry their Δc_i, so /verify recomputes c too.
  SCAFFOLD: { strategy: 'scaffold', strategyOptions: { clientCount: CLIENTS } },
};

describe.each(Object.keys(CASES))('%s across a coordinator SIGKILL', (name) => {
  const { strategy, strategyOptions } = CASES[name] as ResumeCase;
  it('a run killed after round 2 and resumed commits the checkpoints of an uninterrupted run', async () => {
    const port = await freePort();
    const dataDir = mkdtempSync(join(tmpdir(), 'tessera-strategy-resume-'));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const { TEST_DATABASE_URL: databaseUrl } = process.env;
    let databaseArgs = ['--data-dir', join(dataDir, 'pglite')];
    if (databaseUrl) {
      const schema = await createTestSchema(databaseUrl);
      cleanups.push(() => schema.drop());
      databaseArgs = ['--database-url', schema.url];
    }

    let restarts = 0;
    const startCoordinator = (): Promise<CoordinatorProcess> =>
      startCoordinatorProcess({
        name: `#${++restarts}`,
        port,
        adminToken: ADMIN_TOKEN,
        args: databaseArgs,
        cleanups,
      });
    let coordinator = await startCoordinator();
    // Always the coordinator up now: the restart listens on the same port.
    const admin = adminApi(ADMIN_TOKEN);
    const api = <T>(method: string, path: string, body?: unknown) =>
      admin<T>(coordinator, method, path, body);

    const federation = await api<{ id: string }>('POST', '/federations', { name: 'resume' });
    for (let k = 0; k < CLIENTS; k++) {
      const issued = await issueClientToken(admin, coordinator, federation.id, k);
      spawnClientProcess({
        coordinator: coordinator.url,
        token: issued.token,
        args: ['--mnist', `${k}/${CLIENTS}`, '--max-examples', '200'],
        cleanups,
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
        keepUpdates: true,
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
    for (const runId of [whole.id, crashed.id]) {
      const report = await api<{ identical: boolean; checks: Array<{ stateMatch: unknown }> }>(
        'GET',
        `/runs/${runId}/verify`,
      );
      expect(report.identical).toBe(true);
      expect(report.checks.map((c) => c.stateMatch)).toEqual([true, true, true, true]);
    }
  }, 300_000);
});
