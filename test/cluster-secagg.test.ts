// Secure aggregation across coordinators (issue 16): two coordinator processes (apps/
// coordinator/dist/main.js) on one PostgreSQL database and one Redis, two Node client
// processes (the built CLI, training MNIST, keeping what they masked: --keep-contributions)
// connected to each. A secure-aggregation run is started on A, which owns it: the owner's
// `secagg` frames reach B's clients through Socket.IO's Redis adapter, and B's clients'
// `secagg` frames (keys, shares, masked vectors, unmask shares) are schema-checked on B and
// relayed to A, whose SecAgg server's verdict is their ack. Every round's U3 holds the clients
// of both processes, and each committed model is plain FedAvg of the four clients' changes
// (what each kept), within the fixed-point error the round records, as test/secagg-run.test.ts
// checks it in one process. Needs TEST_DATABASE_URL; Redis at 127.0.0.1:6379 (TEST_REDIS_URL).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RoundRecord, RunRecord } from '@tessera/db';
import { bytesToWeights } from '@tessera/protocol';
import { afterAll, describe, expect, it } from 'vitest';
import {
  adminApi,
  type CoordinatorProcess,
  connectedTo,
  issueClientToken,
  spawnClientProcess,
  startRedisCoordinators,
} from './coordinator-processes.js';
import { quickRun, waitFor } from './harness.js';
import { keptContribution } from './kept-contributions.js';
import { fedAvgOfChanges, maxAbsDifference } from './secagg-clients.js';
import { createTestSchema } from './tcp-proxy.js';

const ADMIN_TOKEN = 'cluster-secagg-admin-token';
const CLIENTS_PER_PROCESS = 2;
const ROUNDS = 3;
/** The four steps a client of U3 sends in a round: advertise, share, mask, unmask. */
const STEPS = 4;
const secureAggregation = {
  clipRange: 0.5,
  maxExamplesPerClient: 1000,
  thresholdFraction: 0.6,
  stepDeadlineMs: 30_000,
};

const { TEST_DATABASE_URL: databaseUrl } = process.env;

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function metricLines(on: CoordinatorProcess): Promise<string[]> {
  const response = await fetch(`${on.url}/metrics`, {
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  expect(response.status).toBe(200);
  return (await response.text()).split('\n');
}

/** Frames for another process's clients this coordinator published, or received and sent out. */
async function framesDelivered(on: CoordinatorProcess, direction: 'sent' | 'received') {
  const line = (await metricLines(on)).find((l) =>
    l.startsWith(`tessera_frames_delivered_total{direction="${direction}"}`),
  );
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** `secagg` frames this coordinator acked: accepted, or refused with a code. */
async function secAggReplies(on: CoordinatorProcess) {
  let accepted = 0;
  const refused: string[] = [];
  for (const line of await metricLines(on)) {
    if (!line.startsWith('tessera_client_replies_total{') || !line.includes('event="secagg"'))
      continue;
    const count = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (line.includes('outcome="accepted"')) accepted += count;
    else refused.push(`${/code="([^"]*)"/.exec(line)?.[1]} x${count}`);
  }
  return { accepted, refused };
}

describe.skipIf(!databaseUrl)(
  'cluster: secure aggregation with clients on two coordinators',
  () => {
    it("B's clients' SecAgg frames are relayed to the owner A; every round sums the clients of both", async () => {
      const schema = await createTestSchema(databaseUrl as string);
      cleanups.push(() => schema.drop());
      const root = mkdtempSync(join(tmpdir(), 'tessera-cluster-secagg-'));
      cleanups.push(() => rmSync(root, { recursive: true, force: true }));
      const { a, b } = await startRedisCoordinators({
        test: 'cluster-secagg',
        databaseUrl: schema.url,
        adminToken: ADMIN_TOKEN,
        leaseMs: 3_000,
        cleanups,
      });
      const api = adminApi(ADMIN_TOKEN);

      const federation = await api<{ id: string }>(a, 'POST', '/federations', { name: 'secagg' });
      const total = 2 * CLIENTS_PER_PROCESS;
      const dirs: string[] = [];
      for (let k = 0; k < total; k++) {
        const { token } = await issueClientToken(api, a, federation.id, k);
        const dir = join(root, String(k));
        dirs.push(dir);
        spawnClientProcess({
          coordinator: (k < CLIENTS_PER_PROCESS ? a : b).url,
          token,
          args: [
            ...['--mnist', `${k}/${total}`, '--max-examples', '200', '--holdout', '0'],
            ...['--keep-contributions', dir],
          ],
          cleanups,
        });
      }
      await waitFor(
        () =>
          connectedTo(a).size === CLIENTS_PER_PROCESS &&
          connectedTo(b).size === CLIENTS_PER_PROCESS,
        'two clients on each process',
        90_000,
      );
      const onA = connectedTo(a);
      const onB = connectedTo(b);
      await waitFor(
        async () => (await api<unknown[]>(a, 'GET', '/connected-clients')).length === total,
        'A to list all four clients',
        30_000,
      );

      const run = await api<RunRecord>(a, 'POST', '/runs', {
        ...quickRun,
        federationId: federation.id,
        rounds: ROUNDS,
        clientsPerRound: total,
        minClients: total,
        roundDeadlineMs: 60_000,
        secureAggregation,
      });
      await api(a, 'POST', `/runs/${run.id}/start`);
      await waitFor(
        async () => {
          // A secagg frame refused anywhere leaves its round short of a threshold: say so now.
          const refused = [...a.lines, ...b.lines].find(
            (l) => l.includes('"msg":"frame refused"') && l.includes('"event":"secagg"'),
          );
          if (refused) throw new Error(`a secagg frame was refused: ${refused}`);
          const { status } = await api<RunRecord>(a, 'GET', `/runs/${run.id}`);
          if (status === 'failed')
            throw new Error(`run failed (A: ${a.lines.slice(-5).join(' | ')})`);
          return status === 'completed';
        },
        'the run to complete',
        120_000,
      );

      const checkpoint = async (round: number) => {
        const response = await fetch(`${a.url}/api/runs/${run.id}/checkpoints/${round}/weights`, {
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        });
        expect(response.status).toBe(200);
        const bytes = new Uint8Array(await response.arrayBuffer());
        return bytesToWeights(bytes, Number(response.headers.get('x-tessera-param-count')));
      };
      const rounds = await api<RoundRecord[]>(a, 'GET', `/runs/${run.id}/rounds`);
      expect(rounds.map((r) => r.number)).toEqual(Array.from({ length: ROUNDS }, (_, k) => k + 1));
      let global = await checkpoint(0);
      for (const round of rounds) {
        const at = `round ${round.number}`;
        // U3, the survivors whose inputs are in the sum: both of A's clients and both of B's.
        expect(new Set(round.participantClientIds), at).toEqual(new Set([...onA, ...onB]));
        expect(round.droppedClientIds, at).toEqual([]);
        expect(round.privacy, at).toMatchObject({
          mechanism: 'secure-aggregation',
          protocol: 'secagg-bonawitz2017-v1',
          selected: total,
          u1: total,
          u2: total,
          u3: total,
          droppedAfterMasking: 0,
        });
        const contributions = dirs.map((dir) => keptContribution(dir, run.id, round.number));
        // Every client, on A or B, trained from the previous checkpoint.
        for (const { global: theirs } of contributions)
          expect(maxAbsDifference(theirs, global), at).toBe(0);
        const expected = fedAvgOfChanges(global, contributions, secureAggregation.clipRange);
        const committed = await checkpoint(round.number);
        const maxAbsError = round.privacy?.['maxAbsError'] as number;
        expect(maxAbsError, at).toBeGreaterThan(0);
        expect(maxAbsError, at).toBeLessThan(1e-6);
        // The quantisation bound, and float32 rounding of global + mean change.
        expect(maxAbsDifference(committed, expected), at).toBeLessThanOrEqual(maxAbsError + 2e-7);
        expect(maxAbsDifference(committed, global), at).toBeGreaterThan(1e-3);
        // B's clients are in the sum: without them it is measurably different.
        const withoutB = contributions.slice(0, CLIENTS_PER_PROCESS);
        expect(
          maxAbsDifference(
            committed,
            fedAvgOfChanges(global, withoutB, secureAggregation.clipRange),
          ),
          at,
        ).toBeGreaterThan(1e-4);
        global = committed;
      }
      // Each client's four messages of each round acked ok where it is connected: B's through
      // the relay, with A's verdict.
      const perProcess = CLIENTS_PER_PROCESS * STEPS * ROUNDS;
      expect(await secAggReplies(a)).toEqual({ accepted: perProcess, refused: [] });
      expect(await secAggReplies(b)).toEqual({ accepted: perProcess, refused: [] });
      // B never drove the run.
      expect(b.lines.some((l) => l.includes('"msg":"round started"'))).toBe(false);
      // A's frames for B's clients (train, SecAgg steps, round ends) went to B once each, and B
      // sent each out to its own connections, paced, rather than one adapter broadcast.
      const sent = await framesDelivered(a, 'sent');
      expect(sent).toBeGreaterThanOrEqual(ROUNDS * (1 + STEPS));
      expect(await framesDelivered(b, 'received')).toBe(sent);
      expect(await framesDelivered(b, 'sent')).toBe(0);
    }, 300_000);
  },
);
