// Failover by run lease (issue 16, item 2): two coordinator processes (apps/coordinator/dist/
// main.js, each on its own port) on one PostgreSQL database, behind one address (a small
// failover front: each new connection goes to the first coordinator that accepts it, as a load
// balancer with health checks would). The run starts on A with every client connected to A;
// A is SIGKILLed mid-round (the kill point drawn from a logged seed: FAILOVER_SEED=N repeats
// it). The same client processes reconnect through the front and land on B; B takes the run
// over within about the lease time (its takeover scan sees A's lease expire) and resumes it
// from the last committed round. At the end every round 1..N is committed exactly once (by A
// or by B, never both), the lease belongs to B with the next token, and every checkpoint
// replays bit-identically from its predecessor (GET /api/runs/:id/verify).
// Needs TEST_DATABASE_URL (two processes cannot share one PGlite folder).
import { createRng } from '@tessera/data';
import type { RoundRecord, RunRecord } from '@tessera/db';
import { afterAll, describe, expect, it } from 'vitest';
import {
  adminApi,
  type CoordinatorProcess,
  freePort,
  issueClientToken,
  KILLED_MID_ROUND_RUN,
  killOwnerMidRound,
  leaseOwnerOf,
  leaseRow,
  roundsLogged,
  spawnClientProcess,
  startCoordinatorProcess,
  startFailoverFront,
} from './coordinator-processes.js';
import { quickRun, waitFor } from './harness.js';
import { createTestSchema } from './tcp-proxy.js';

const ADMIN_TOKEN = 'failover-admin-token';
const ROUNDS = 5;
const CLIENTS = 3;
const LEASE_MS = 3_000;

const { TEST_DATABASE_URL: databaseUrl, FAILOVER_SEED: failoverSeed } = process.env;
const seed = Number(failoverSeed ?? Date.now() % 1_000_000);

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

describe.skipIf(!databaseUrl)(
  'failover: two coordinators on one PostgreSQL, the owner SIGKILLed',
  () => {
    it('the other takes the run over within about the lease time; every round is committed once', async () => {
      console.log(`failover seed ${seed} (FAILOVER_SEED=${seed} repeats the kill point)`);
      const rng = createRng(seed);
      const schema = await createTestSchema(databaseUrl as string);
      cleanups.push(() => schema.drop());

      const startCoordinator = async (name: string, port: number) =>
        startCoordinatorProcess({
          name,
          port,
          databaseUrl: schema.url,
          adminToken: ADMIN_TOKEN,
          args: ['--lease-ms', String(LEASE_MS)],
          cleanups,
        });
      // One after the other: both apply the same migrations at start.
      const a = await startCoordinator('A', await freePort());
      const b = await startCoordinator('B', await freePort());
      const front = await startFailoverFront([a, b].map((c) => Number(new URL(c.url).port)));
      cleanups.push(() => front.close());
      const api = adminApi(ADMIN_TOKEN);
      const connected = async (on: CoordinatorProcess) =>
        (await api<unknown[]>(on, 'GET', '/connected-clients')).length;

      const federation = await api<{ id: string }>(a, 'POST', '/federations', { name: 'failover' });
      for (let k = 0; k < CLIENTS; k++) {
        const { token } = await issueClientToken(api, a, federation.id, k);
        spawnClientProcess({
          coordinator: `http://127.0.0.1:${front.port}`,
          token,
          args: ['--mnist', `${k}/${CLIENTS}`, '--max-examples', '600'],
          cleanups,
        });
      }
      await waitFor(async () => (await connected(a)) === CLIENTS, 'every client on A', 90_000);
      expect(await connected(b)).toBe(0);

      const run = await api<RunRecord>(a, 'POST', '/runs', {
        ...quickRun,
        ...KILLED_MID_ROUND_RUN,
        federationId: federation.id,
        rounds: ROUNDS,
        minClients: 2,
        roundDeadlineMs: 20_000,
        keepUpdates: true,
      });
      await api(a, 'POST', `/runs/${run.id}/start`);
      const ownerOf = leaseOwnerOf;

      // --- SIGKILL A mid-round; B takes the run over within about the lease time (+ one scan
      // interval, lease/2)
      const {
        killRound,
        committedByOwner: committedByA,
        takeoverMs,
        resumedFrom,
      } = await killOwnerMidRound({ owner: a, successor: b, runId: run.id, rng });
      expect(takeoverMs).toBeLessThan(LEASE_MS * 1.5 + 3_000);
      // Mid-round, the round open at the kill was not committed and B does it again; a round that
      // is quicker than the drawn delay was committed just before the kill, and B goes on after it.
      expect([killRound - 1, killRound]).toContain(resumedFrom);
      expect(resumedFrom).toBeGreaterThanOrEqual(Math.max(0, ...committedByA));

      // --- the same client processes reconnect through the front, to B, and finish the run there
      await waitFor(async () => (await connected(b)) === CLIENTS, 'every client on B', 90_000);
      await waitFor(
        async () => (await api<RunRecord>(b, 'GET', `/runs/${run.id}`)).status === 'completed',
        () => `the run to complete on B (log: ${b.lines.slice(-5).join(' | ')})`,
        180_000,
      );

      const rounds = await api<RoundRecord[]>(b, 'GET', `/runs/${run.id}/rounds`);
      expect(rounds.map((round) => round.number)).toEqual(
        Array.from({ length: ROUNDS }, (_, k) => k + 1),
      );
      // Each round committed by one process only: A's up to the round B resumed from (A may
      // die between a commit and its log line), B's each once after it.
      const committedByB = roundsLogged(b, run.id, 'round committed');
      expect(committedByA.every((round) => round <= resumedFrom)).toBe(true);
      expect(committedByB).toEqual(
        Array.from({ length: ROUNDS - resumedFrom }, (_, k) => resumedFrom + 1 + k),
      );
      // The clients now on B took part in B's rounds.
      for (const round of rounds.filter((r) => r.number > resumedFrom))
        expect(round.participantClientIds.length).toBeGreaterThanOrEqual(2);
      // The lease went from A (token 1) to B (token 2), and B released it when the run ended.
      const lease = await leaseRow(databaseUrl as string, schema.schema, run.id);
      expect(lease).toMatchObject({ owner: ownerOf(b), token: '2' });
      expect(ownerOf(b)).not.toBe(ownerOf(a));
      const report = await api<{ identical: boolean; checks: unknown[] }>(
        b,
        'GET',
        `/runs/${run.id}/verify`,
      );
      expect(report.checks).toHaveLength(ROUNDS);
      expect(report.identical).toBe(true);
    }, 420_000);
  },
);
