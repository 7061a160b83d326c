// Several coordinators on Redis (issue 16, items 1-3): two coordinator processes (apps/
// coordinator/dist/main.js, each on its own port) on one PostgreSQL database and one Redis
// (a key prefix of this test's own), started with --redis. Two client processes connect to A
// (through a failover front, as behind a load balancer) and two straight to B. The run is
// started on A, which owns it; every round reaches the clients of both processes (train goes
// through Socket.IO's Redis adapter, B's clients' updates are relayed to A) until A is SIGKILLed
// mid-round (the kill point drawn from a logged seed: CLUSTER_SEED=N repeats it). B takes the
// run over within about the lease time; A's clients reconnect through the front to B, and the
// next rounds have all four clients again: those that were on B all along and those that came
// from A. Every round 1..N is committed exactly once, and every checkpoint replays
// bit-identically from its predecessor. Needs TEST_DATABASE_URL; Redis at 127.0.0.1:6379
// (TEST_REDIS_URL).
import { createRng } from '@tessera/data';
import type { RoundRecord, RunRecord } from '@tessera/db';
import { afterAll, describe, expect, it } from 'vitest';
import {
  adminApi,
  type CoordinatorProcess,
  connectedTo,
  issueClientToken,
  KILLED_MID_ROUND_RUN,
  killOwnerMidRound,
  leaseOwnerOf,
  leaseRow,
  roundsLogged,
  spawnClientProcess,
  startFailoverFront,
  startRedisCoordinators,
} from './coordinator-processes.js';
import { quickRun, waitFor } from './harness.js';
import { createTestSchema } from './tcp-proxy.js';

const ADMIN_TOKEN = 'cluster-admin-token';
const ROUNDS = 5;
const CLIENTS_PER_PROCESS = 2;
const LEASE_MS = 3_000;

const { TEST_DATABASE_URL: databaseUrl, CLUSTER_SEED: clusterSeed } = process.env;
const seed = Number(clusterSeed ?? Date.now() % 1_000_000);

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

describe.skipIf(!databaseUrl)('cluster: two coordinators on Redis + PostgreSQL', () => {
  it('rounds reach the clients of both processes; after a SIGKILL of the owner the other goes on with all of them', async () => {
    console.log(`cluster seed ${seed} (CLUSTER_SEED=${seed} repeats the kill point)`);
    const rng = createRng(seed);
    const schema = await createTestSchema(databaseUrl as string);
    cleanups.push(() => schema.drop());

    const { a, b } = await startRedisCoordinators({
      test: 'cluster',
      databaseUrl: schema.url,
      adminToken: ADMIN_TOKEN,
      leaseMs: LEASE_MS,
      cleanups,
    });
    const front = await startFailoverFront([a, b].map((c) => Number(new URL(c.url).port)));
    cleanups.push(() => front.close());
    const api = adminApi(ADMIN_TOKEN);
    const connected = async (on: CoordinatorProcess) =>
      (await api<unknown[]>(on, 'GET', '/connected-clients')).length;

    const federation = await api<{ id: string }>(a, 'POST', '/federations', { name: 'cluster' });
    const total = 2 * CLIENTS_PER_PROCESS;
    for (let k = 0; k < total; k++) {
      const { token } = await issueClientToken(api, a, federation.id, k);
      // The first half through the front (it lands on A while A is up), the rest on B.
      spawnClientProcess({
        coordinator: k < CLIENTS_PER_PROCESS ? `http://127.0.0.1:${front.port}` : b.url,
        token,
        args: ['--mnist', `${k}/${total}`, '--max-examples', '600'],
        cleanups,
      });
    }
    await waitFor(
      () =>
        connectedTo(a).size === CLIENTS_PER_PROCESS && connectedTo(b).size === CLIENTS_PER_PROCESS,
      'two clients on each process',
      90_000,
    );
    const onA = connectedTo(a);
    const onB = connectedTo(b);
    // The registry is shared: each process lists the clients of both.
    await waitFor(
      async () => (await connected(a)) === total && (await connected(b)) === total,
      'each process to list all four clients',
      30_000,
    );

    const run = await api<RunRecord>(a, 'POST', '/runs', {
      ...quickRun,
      ...KILLED_MID_ROUND_RUN,
      federationId: federation.id,
      rounds: ROUNDS,
      minClients: total,
      roundDeadlineMs: 30_000,
      keepUpdates: true,
    });
    await api(a, 'POST', `/runs/${run.id}/start`);

    // --- SIGKILL A mid-round; B takes the run over within about the lease time
    const {
      killRound,
      committedByOwner: committedByA,
      takeoverMs,
      resumedFrom,
    } = await killOwnerMidRound({ owner: a, successor: b, runId: run.id, rng });
    expect(takeoverMs).toBeLessThan(LEASE_MS * 1.5 + 3_000);
    expect([killRound - 1, killRound]).toContain(resumedFrom);

    await waitFor(
      async () => (await api<RunRecord>(b, 'GET', `/runs/${run.id}`)).status === 'completed',
      () => `the run to complete on B (log: ${b.lines.slice(-5).join(' | ')})`,
      240_000,
    );
    // A's clients came to B through the front.
    for (const clientId of onA) expect(connectedTo(b)).toContain(clientId);

    const rounds = await api<RoundRecord[]>(b, 'GET', `/runs/${run.id}/rounds`);
    expect(rounds.map((round) => round.number)).toEqual(
      Array.from({ length: ROUNDS }, (_, k) => k + 1),
    );
    // Each round committed by one process only.
    const committedByB = roundsLogged(b, run.id, 'round committed');
    expect(committedByA.every((round) => round <= resumedFrom)).toBe(true);
    expect(committedByB).toEqual(
      Array.from({ length: ROUNDS - resumedFrom }, (_, k) => resumedFrom + 1 + k),
    );
    // Every round had all four clients: under A, B's two through the adapter and the relay;
    // under B, its own two and the two that came from A.
    for (const round of rounds) {
      const participants = new Set(round.participantClientIds);
      expect(participants.size, `round ${round.number}`).toBe(total);
      for (const clientId of [...onA, ...onB]) expect(participants).toContain(clientId);
    }
    expect(committedByA.length).toBeGreaterThanOrEqual(1);
    const lease = await leaseRow(databaseUrl as string, schema.schema, run.id);
    expect(lease).toMatchObject({ owner: leaseOwnerOf(b), token: '2' });
    const report = await api<{ identical: boolean; checks: unknown[] }>(
      b,
      'GET',
      `/runs/${run.id}/verify`,
    );
    expect(report.checks).toHaveLength(ROUNDS);
    expect(report.identical).toBe(true);
  }, 600_000);
});
