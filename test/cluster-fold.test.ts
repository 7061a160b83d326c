// Aggregation where the updates arrive (issue 16 item 3): two coordinator processes (the built
// apps/coordinator/dist/main.js) on one PostgreSQL database and one Redis, three clients on
// each. The clients are written from docs/protocol.md (test/raw-client.ts): each sends back
// the global model plus a change drawn from its own seeded generator, so the test knows every
// update. An exact FedAvg run (keepUpdates false) is started on A, which owns it: B's clients'
// updates are checked and folded on B, A learns only their claims and collects B's partial sum
// when it closes the round. Each committed checkpoint is, byte for byte (its sha256, and the
// weights the next round's instruction carries), the exact FedAvg of the six updates folded in
// one place. In round 3 one of A's clients holds its reply until B's three updates were
// accepted and B is SIGKILLed: B's partial is lost, its three clients are recorded dropped with
// the reason, and the round commits from A's three. Needs TEST_DATABASE_URL; Redis at
// 127.0.0.1:6379 (TEST_REDIS_URL).
import { createHash } from 'node:crypto';
import { FedAvg } from '@tessera/aggregation';
import { createRng } from '@tessera/data';
import type { RoundRecord, RunRecord } from '@tessera/db';
import {
  type Ack,
  bytesToWeights,
  PROTOCOL_VERSION,
  type TrainInstruction,
  weightsToBytes,
} from '@tessera/protocol';
import { afterAll, describe, expect, it } from 'vitest';
import {
  adminApi,
  type CoordinatorProcess,
  issueClientToken,
  startRedisCoordinators,
} from './coordinator-processes.js';
import { quickRun, waitFor } from './harness.js';
import { closeRawSockets, connectRaw, rawClientInfo, sendWithAck } from './raw-client.js';
import { createTestSchema } from './tcp-proxy.js';

const ADMIN_TOKEN = 'cluster-fold-admin-token';
const CLIENTS_PER_PROCESS = 3;
const ROUNDS = 3;
/** The round in which B is killed after its clients' updates were accepted. */
const KILL_ROUND = 3;

const { TEST_DATABASE_URL: databaseUrl } = process.env;

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  closeRawSockets();
  for (const cleanup of cleanups.reverse()) await cleanup();
});

interface SentUpdate {
  clientId: string;
  numExamples: number;
  weights: Float32Array;
}

/** Client k's update for a round: the global model moved by a change of its own generator. */
function updateOf(k: number, round: number, global: Float32Array): Float32Array {
  const rng = createRng(1_000 * (k + 1) + round);
  // Magnitudes from 1e-6 to 1e-2: a float64 sum of these would depend on the order.
  return global.map((w) => w + (rng.next() - 0.5) * 10 ** (-6 + 4 * rng.next()));
}

/** The exact FedAvg of `updates` folded in one place, as the checkpoint's bytes. */
function exactFedAvg(updates: readonly SentUpdate[], paramCount: number): Uint8Array {
  const round = new FedAvg({ arithmetic: 'exact' }).beginRound(1, new Float32Array(paramCount));
  for (const u of updates)
    round.add({
      clientId: u.clientId,
      numExamples: u.numExamples,
      weights: u.weights,
      metrics: {},
    });
  const { weights } = round.finish();
  if (weights === null) throw new Error('no updates');
  return weightsToBytes(weights);
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** A counter's value in a Prometheus text scrape (0 when absent). */
function counter(scrape: string, name: string, labels = ''): number {
  const line = scrape
    .split('\n')
    .find((l) => l.startsWith(`${name}${labels === '' ? '' : `{${labels}`}`) && !l.startsWith('#'));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function scrape(on: CoordinatorProcess): Promise<string> {
  const response = await fetch(`${on.url}/metrics`, {
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  expect(response.status).toBe(200);
  return response.text();
}

describe.skipIf(!databaseUrl)('cluster: updates folded where they arrive', () => {
  it('a non-owner folds its clients’ updates; checkpoints are the exact FedAvg of all; a lost partial drops its clients', async () => {
    const schema = await createTestSchema(databaseUrl as string);
    cleanups.push(() => schema.drop());
    const { a, b } = await startRedisCoordinators({
      test: 'cluster-fold',
      databaseUrl: schema.url,
      adminToken: ADMIN_TOKEN,
      leaseMs: 3_000,
      cleanups,
    });
    const api = adminApi(ADMIN_TOKEN);

    const federation = await api<{ id: string }>(a, 'POST', '/federations', { name: 'fold' });
    /** Updates sent, by round: what every checkpoint is recomputed from. */
    const sent = new Map<number, SentUpdate[]>();
    /** Each client's ack of each round's update ('ok' or the code). */
    const acks = new Map<string, string>();
    /** Global weights each round's train instruction carried: the previous checkpoint. */
    const globals = new Map<number, Uint8Array>();
    let releaseGate: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      releaseGate = resolve;
    });
    const clientsOn = new Map<string, 'A' | 'B'>();

    for (let k = 0; k < 2 * CLIENTS_PER_PROCESS; k++) {
      const home = k < CLIENTS_PER_PROCESS ? a : b;
      const issued = await issueClientToken(api, a, federation.id, k);
      const numExamples = 10 + 7 * k;
      const { socket, welcome, error } = await connectRaw(home.url, {
        token: issued.token,
        protocolVersion: PROTOCOL_VERSION,
        client: rawClientInfo({ numExamples, numHoldout: 0 }),
      });
      expect(error).toBeUndefined();
      const clientId = welcome?.clientId as string;
      clientsOn.set(clientId, home.name as 'A' | 'B');
      socket.on('train', (instruction: TrainInstruction) => {
        const { runId, round, model, weights: bytes } = instruction;
        globals.set(round, new Uint8Array(bytes));
        const weights = updateOf(k, round, bytesToWeights(bytes, model.paramCount));
        const list = sent.get(round) ?? [];
        list.push({ clientId, numExamples, weights });
        sent.set(round, list);
        // A's first client holds round KILL_ROUND until B is gone.
        const held = k === 0 && round === KILL_ROUND ? gate : Promise.resolve();
        void held
          .then(() =>
            sendWithAck(
              socket,
              'update',
              {
                status: 'ok',
                runId,
                round,
                weights: weightsToBytes(weights),
                numExamples,
                durationMs: 5,
                metrics: { loss: 1 / (k + round) },
              },
              60_000,
            ),
          )
          .then(
            (ack: Ack) => acks.set(`${round}:${clientId}`, ack.ok ? 'ok' : ack.error.code),
            () => acks.set(`${round}:${clientId}`, 'no ack'),
          );
      });
    }
    const onA = [...clientsOn].filter(([, on]) => on === 'A').map(([id]) => id);
    const onB = [...clientsOn].filter(([, on]) => on === 'B').map(([id]) => id);
    await waitFor(
      async () =>
        (await api<unknown[]>(a, 'GET', '/connected-clients')).length === 2 * CLIENTS_PER_PROCESS,
      'A to list all six clients',
      30_000,
    );

    const run = await api<RunRecord>(a, 'POST', '/runs', {
      ...quickRun,
      federationId: federation.id,
      rounds: ROUNDS,
      minClients: CLIENTS_PER_PROCESS,
      roundDeadlineMs: 60_000,
      strategy: 'fedavg',
      strategyOptions: { arithmetic: 'exact' },
      keepUpdates: false,
    });
    await api(a, 'POST', `/runs/${run.id}/start`);
    const paramCount = 199_210;
    const checkpointSha = async (round: number) =>
      (
        await api<{ checkpoint: { sha256: string; paramCount: number } }>(
          a,
          'GET',
          `/runs/${run.id}/rounds/${round}`,
        )
      ).checkpoint;

    // --- rounds 1 .. KILL_ROUND-1: all six, B's three folded on B
    for (let round = 1; round < KILL_ROUND; round++) {
      await waitFor(
        async () =>
          (await api<RoundRecord[]>(a, 'GET', `/runs/${run.id}/rounds`)).some(
            (r) => r.number === round,
          ),
        () => `round ${round} to commit (A: ${a.lines.slice(-3).join(' | ')})`,
        120_000,
      );
      const record = (await api<RoundRecord[]>(a, 'GET', `/runs/${run.id}/rounds`)).find(
        (r) => r.number === round,
      ) as RoundRecord;
      expect(new Set(record.participantClientIds)).toEqual(new Set([...onA, ...onB]));
      const expected = exactFedAvg(sent.get(round) ?? [], paramCount);
      const checkpoint = await checkpointSha(round);
      expect(checkpoint.paramCount).toBe(paramCount);
      // Byte for byte the checkpoint of all six updates folded in one place.
      expect(checkpoint.sha256, `round ${round}`).toBe(sha256(expected));
      await waitFor(() => globals.has(round + 1), `round ${round + 1} to start`, 120_000);
      // As text: a failing diff of two 800 KB buffers would take minutes.
      expect(sha256(globals.get(round + 1) as Uint8Array)).toBe(sha256(expected));
    }
    for (const clientId of [...onA, ...onB]) expect(acks.get(`1:${clientId}`)).toBe('ok');
    // A received B's partial each round (round KILL_ROUND's is held back by A's gate).
    expect(counter(await scrape(a), 'tessera_partials_collected_total', 'outcome="received"')).toBe(
      KILL_ROUND - 1,
    );
    // A never folded anything for another process's run (it owns the only one).
    expect(counter(await scrape(a), 'tessera_updates_folded_remote_total')).toBe(0);

    // --- round KILL_ROUND: B's updates accepted and folded on B, then B dies before collection
    await waitFor(
      () => onB.every((id) => acks.get(`${KILL_ROUND}:${id}`) === 'ok'),
      `B's clients' round ${KILL_ROUND} updates to be accepted`,
      120_000,
    );
    // B folded its clients' updates, three per round, this one's included.
    expect(counter(await scrape(b), 'tessera_updates_folded_remote_total')).toBe(
      CLIENTS_PER_PROCESS * KILL_ROUND,
    );
    b.child.kill('SIGKILL');
    await b.exited;
    releaseGate();
    await waitFor(
      async () => (await api<RunRecord>(a, 'GET', `/runs/${run.id}`)).status === 'completed',
      () => `the run to complete on A (log: ${a.lines.slice(-5).join(' | ')})`,
      120_000,
    );
    const last = (await api<RoundRecord[]>(a, 'GET', `/runs/${run.id}/rounds`)).find(
      (r) => r.number === KILL_ROUND,
    ) as RoundRecord;
    expect(new Set(last.participantClientIds)).toEqual(new Set(onA));
    expect(new Set(last.droppedClientIds)).toEqual(new Set(onB));
    for (const clientId of onB) {
      const outcome = last.outcomes.find((o) => o.clientId === clientId);
      expect(outcome).toMatchObject({ outcome: 'dropped', code: 'UNAVAILABLE' });
      expect(outcome?.reason).toMatch(/partial aggregate lost/);
    }
    const fromA = (sent.get(KILL_ROUND) ?? []).filter((u) => onA.includes(u.clientId));
    expect((await checkpointSha(KILL_ROUND)).sha256).toBe(sha256(exactFedAvg(fromA, paramCount)));
    expect(counter(await scrape(a), 'tessera_partials_collected_total', 'outcome="lost"')).toBe(1);
    expect(a.lines.some((l) => l.includes('updates folded by another coordinator lost'))).toBe(
      true,
    );
  }, 600_000);
});
