// Chaos (issue 12, item 7): the coordinator as a real process (apps/coordinator/dist/main.js),
// SIGKILLed several times at phases chosen from its own log lines with a logged seed
// (CHAOS_SEED=N reproduces a schedule), restarted on the same port and database; real client
// processes that reconnect by themselves; then a client SIGKILLed mid-round and another
// SIGSTOPped (its round goes on by the deadline). At the end every round 1..N is committed
// exactly once and every checkpoint replays bit-identically (GET /api/runs/:id/verify).
// On PostgreSQL when TEST_DATABASE_URL is set (CI), else on a PGlite data folder.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRng } from '@tessera/data';
import type { RoundRecord, RunRecord } from '@tessera/db';
import { afterAll, describe, expect, it } from 'vitest';
import {
  adminApi,
  type CoordinatorProcess,
  diagnose,
  freePort,
  issueClientToken,
  KILLED_MID_ROUND_RUN,
  spawnClientProcess,
  startCoordinatorProcess,
} from './coordinator-processes.js';
import { quickRun, waitFor } from './harness.js';
import { createTestSchema } from './tcp-proxy.js';

/** The message of one of the coordinator's JSON log lines ('' for any other line). */
function logMessage(line: string): string {
  try {
    const parsed = JSON.parse(line) as { msg?: unknown };
    return typeof parsed.msg === 'string' ? parsed.msg : '';
  } catch {
    return '';
  }
}

const ADMIN_TOKEN = 'chaos-admin-token';
/**
 * Enough rounds that the three restarts (each up to two rounds after the phase it waits for,
 * with rounds of KILLED_MID_ROUND_RUN's length) leave rounds for the client kill and freeze.
 */
const ROUNDS = 16;
const CLIENTS = 4;
const KILLS = 3;
/** Short, so that the SIGSTOPped client's round ends by its deadline soon. */
const ROUND_DEADLINE_MS = 8_000;

const { CHAOS_SEED: chaosSeed } = process.env;
const seed = Number(chaosSeed ?? Date.now() % 1_000_000);

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

describe('chaos: coordinator SIGKILLs, client SIGKILL and SIGSTOP', () => {
  it('commits every round exactly once, every checkpoint reproducible', async () => {
    console.log(`chaos seed ${seed} (CHAOS_SEED=${seed} reproduces the kill schedule)`);
    const rng = createRng(seed);
    const port = await freePort();
    const dataDir = mkdtempSync(join(tmpdir(), 'tessera-chaos-'));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const { TEST_DATABASE_URL: databaseUrl } = process.env;
    let databaseArgs = ['--data-dir', join(dataDir, 'pglite')];
    if (databaseUrl) {
      const schema = await createTestSchema(databaseUrl);
      cleanups.push(() => schema.drop());
      databaseArgs = ['--database-url', schema.url];
    }

    const history: string[] = [];
    const allLines: string[][] = [];
    const startCoordinator = async (): Promise<CoordinatorProcess> => {
      const started = await startCoordinatorProcess({
        name: `#${allLines.length + 1}`,
        port,
        adminToken: ADMIN_TOKEN,
        args: [
          ...databaseArgs,
          // A SIGKILLed predecessor's lease must expire before the restart resumes its run.
          ...['--lease-ms', '2000'],
        ],
        cleanups,
      });
      allLines.push(started.lines);
      return started;
    };
    const { CHAOS_LOG: chaosLog } = process.env;
    if (chaosLog) {
      // CHAOS_LOG=FILE keeps every coordinator's log, for a failed schedule's post-mortem
      // (written once every coordinator's SIGKILL, pushed after this, has run).
      cleanups.push(() =>
        writeFileSync(chaosLog, allLines.map((l) => l.join('\n')).join('\n--- restart ---\n')),
      );
    }
    let coordinator = await startCoordinator();
    // Always the coordinator up now: each restart listens on the same port.
    const admin = adminApi(ADMIN_TOKEN);
    const api = <T>(method: string, path: string, body?: unknown) =>
      admin<T>(coordinator, method, path, body);

    const federation = await api<{ id: string }>('POST', '/federations', { name: 'chaos' });
    const clients: Array<{ id: string; child: ChildProcess }> = [];
    for (let k = 0; k < CLIENTS; k++) {
      const issued = await issueClientToken(admin, coordinator, federation.id, k);
      const child = spawnClientProcess({
        coordinator: coordinator.url,
        token: issued.token,
        args: ['--mnist', `${k}/${CLIENTS}`, '--max-examples', '300'],
        cleanups,
      });
      clients.push({ id: issued.client.id, child });
      // Run before its SIGKILL (cleanups run last first): the frozen one is let go on first.
      cleanups.push(() => {
        child.kill('SIGCONT');
      });
    }
    await waitFor(
      async () => (await api<unknown[]>('GET', '/connected-clients')).length === CLIENTS,
      'every client to connect',
      90_000,
    );

    const run = await api<RunRecord>('POST', '/runs', {
      ...quickRun,
      // A round must outlast most of the 0-1,200 ms kill delay, or the run ends before the
      // last restart has anything to resume (2NN rounds of one epoch take about 150 ms).
      ...KILLED_MID_ROUND_RUN,
      federationId: federation.id,
      rounds: ROUNDS,
      minClients: 2,
      roundDeadlineMs: ROUND_DEADLINE_MS,
      keepUpdates: true,
    });
    await api('POST', `/runs/${run.id}/start`);

    /**
     * waitFor, whose timeout also says what the coordinator was doing: its last log lines as
     * they are when the wait gives up (not when it began), and its diagnostic report.
     */
    const waitOrDiagnose = async (...args: Parameters<typeof waitFor>) => {
      try {
        return await waitFor(...args);
      } catch (error) {
        const lastLines = coordinator.lines.slice(-20).join('\n');
        throw new Error(
          `${(error as Error).message}\ncoordinator ${coordinator.name}'s last log lines:\n${lastLines}\n${await diagnose(coordinator)}`,
        );
      }
    };
    /** The ids of the clients connected to the coordinator now. */
    const connectedIds = async () =>
      new Set(
        (await api<Array<{ clientId: string }>>('GET', '/connected-clients')).map(
          (session) => session.clientId,
        ),
      );

    /** The round of the next `message` line of this run in the coordinator's log (from line `from`). */
    const nextLine = async (
      message: string,
      from = coordinator.lines.length,
    ): Promise<{ round: number; at: number }> => {
      let found: { round: number; at: number } | undefined;
      await waitOrDiagnose(
        () => {
          const { lines } = coordinator;
          for (let index = from; index < lines.length; index++) {
            const line = lines[index] ?? '';
            if (logMessage(line).includes(message) && line.includes(run.id)) {
              const round = Number(/"round":(\d+)/.exec(line)?.[1] ?? 0);
              found = { round, at: index + 1 };
              return true;
            }
          }
          return false;
        },
        `"${message}" in the coordinator's log`,
        90_000,
      );
      return found as { round: number; at: number };
    };

    // --- the coordinator, SIGKILLed at phases drawn from its log, restarted on the same port
    for (let kill = 1; kill <= KILLS; kill++) {
      const phase = rng.next() < 0.5 ? 'round started' : 'round committed';
      const delayMs = Math.floor(rng.next() * 1_200);
      const { round } = await nextLine(phase);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      history.push(`kill ${kill}: ${delayMs} ms after "${phase}" of round ${round}`);
      coordinator.child.kill('SIGKILL');
      await coordinator.exited;
      coordinator = await startCoordinator();
      await nextLine('resuming run', 0);
    }
    console.log(`chaos schedule (seed ${seed}):\n  ${history.join('\n  ')}`);

    // --- a client SIGKILLed mid-round: the round goes on without it
    const killed = clients[0] as { id: string; child: ChildProcess };
    const started = await nextLine('round started');
    killed.child.kill('SIGKILL');
    // --- a client SIGSTOPped: the next round it is sampled for closes by its deadline
    // without it (the coordinator logs the late clients), then it is let go on
    const frozen = clients[1] as { id: string; child: ChildProcess };
    // Once the three clients left are all back (after the restarts), and between rounds: the
    // next round then samples all three, so the two others make its minimum without a retry.
    // By id, not by count: the killed client may still be listed (its disconnection not yet
    // seen) while one of the others is still reconnecting; frozen then, that one never
    // comes back, is never sampled, and the run ends without the round this waits for.
    const remaining = clients.filter((client) => client !== killed).map((client) => client.id);
    await waitOrDiagnose(
      async () => {
        const connected = await connectedIds();
        return (
          !connected.has(killed.id) &&
          remaining.every((id) => connected.has(id)) &&
          connected.size === remaining.length
        );
      },
      'the three remaining clients, and only them, to be connected',
      60_000,
    );
    await nextLine('round committed');
    frozen.child.kill('SIGSTOP');
    // Frozen between rounds, it is first late for the round's evaluation (or, if it had none
    // to do, for the next training): either way the phase closes by its deadline without it.
    // A client late for evaluation is then backed off (docs/protocol.md §7.5): the next round
    // trains without it. It is let go on once that round has started.
    let late: { round: number; at: number; phase: 'training' | 'evaluation' } | undefined;
    let from = coordinator.lines.length;
    while (late === undefined) {
      const closed = await nextLine('closed before every client answered:', from);
      const line = coordinator.lines[closed.at - 1] ?? '';
      if (line.includes(frozen.id))
        late = { ...closed, phase: line.includes('training closed') ? 'training' : 'evaluation' };
      from = closed.at;
    }
    console.log(`the frozen client was late for the ${late.phase} of round ${late.round}`);
    if (late.phase === 'evaluation') await nextLine('round started', late.at);
    frozen.child.kill('SIGCONT');

    await waitOrDiagnose(
      async () => (await api<RunRecord>('GET', `/runs/${run.id}`)).status === 'completed',
      'the run to complete',
      120_000,
    );

    const rounds = await api<RoundRecord[]>('GET', `/runs/${run.id}/rounds`);
    expect(rounds.map((round) => round.number)).toEqual(
      Array.from({ length: ROUNDS }, (_, k) => k + 1),
    );
    const frozenRecord = rounds.find((round) => round.number === late.round);
    if (late.phase === 'training') {
      expect(frozenRecord?.selectedClientIds).toContain(frozen.id);
      expect(frozenRecord?.droppedClientIds).toContain(frozen.id);
    } else {
      // Late for round N's evaluation: backed off, not sampled for round N + 1.
      const next = rounds.find((round) => round.number === late.round + 1);
      expect(next?.selectedClientIds).not.toContain(frozen.id);
    }
    expect(frozenRecord?.participantClientIds.length).toBeGreaterThanOrEqual(2);
    const afterKill = rounds.filter((round) => round.number > started.round);
    for (const round of afterKill) expect(round.participantClientIds).not.toContain(killed.id);

    const report = await api<{ identical: boolean; checks: unknown[] }>(
      'GET',
      `/runs/${run.id}/verify`,
    );
    expect(report.checks).toHaveLength(ROUNDS);
    expect(report.identical).toBe(true);
  }, 240_000);
});
