import { createHash } from 'node:crypto';
import { FedAvg } from '@tessera/aggregation';
import type { RoundRecord } from '@tessera/db';
import { PROTOCOL_VERSION, weightsToBytes } from '@tessera/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { createFederation, type Harness, quickRun, startHarness, waitFor } from './harness.js';
import { closeRawSockets, connectRaw, rawClientInfo, sendWithAck } from './raw-client.js';

/**
 * Back-pressure at the socket edge (apps/coordinator/src/sliced-work.ts): once more reply
 * bytes wait to be handled than the coordinator's bound, it stops reading its client
 * connections, handles the queue in slices, and reads them again at half the bound. Here the
 * bound (64 KiB) is below one 2NN update (797 KB), so every update pauses the reads and every
 * drained queue resumes them: the clients, written from docs/protocol.md, all send at once in
 * each of two rounds, and each round must still fold all of them (a checkpoint byte for byte
 * the exact FedAvg of what was sent). Before this, past the bound the whole queue was handled
 * inside the read callback, holding the loop for the backlog (4.7 s in a 1,000-client round).
 */

const CLIENTS = 6;
const ROUNDS = 2;

let harness: Harness | undefined;
afterEach(async () => {
  closeRawSockets();
  await harness?.dispose();
  harness = undefined;
});

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** Client k's update: the global model moved by k's own small change. */
function updateOf(k: number, round: number, global: Float32Array): Float32Array {
  return global.map((w, i) => w + ((((i * 31 + k * 7 + round) % 97) - 48) * 1e-4) / (k + 1));
}

interface EngineIoSocketInternals {
  conn: { transport: { socket: { pause(): void; resume(): void; isPaused: boolean } } };
}

describe('replies queued past the bound', () => {
  it('pause reading the client connections instead of holding the loop, resume them, and lose no update', async () => {
    harness = await startHarness({ maxQueuedReplyBytes: 64 * 1024 });
    const h = harness;
    const { federationId, tokens } = await createFederation(h, CLIENTS);

    const sent = new Map<number, Array<{ numExamples: number; weights: Float32Array }>>();
    const acks: string[] = [];
    const sockets = await Promise.all(
      tokens.map(async ({ token }, k) => {
        const { socket, welcome, error } = await connectRaw(h.coordinator.url, {
          token,
          protocolVersion: PROTOCOL_VERSION,
          client: rawClientInfo({ numExamples: 10 + k, numHoldout: 0 }),
        });
        expect(error).toBeUndefined();
        expect(welcome).toBeDefined();
        return socket;
      }),
    );
    // All train instructions of a round first, then every client sends at once.
    let waiting: Array<() => void> = [];
    sockets.forEach((socket, k) => {
      socket.on('train', ({ runId, round, weights }) => {
        const global = new Float32Array(new Uint8Array(weights).buffer);
        const update = updateOf(k, round, global);
        const list = sent.get(round) ?? [];
        list.push({ numExamples: 10 + k, weights: update });
        sent.set(round, list);
        waiting.push(() => {
          void sendWithAck(socket, 'update', {
            status: 'ok',
            runId,
            round,
            weights: weightsToBytes(update),
            numExamples: 10 + k,
            durationMs: 1,
            metrics: {},
          }).then((ack) => acks.push(ack.ok ? 'ok' : ack.error.code));
        });
        if (waiting.length === CLIENTS) {
          const all = waiting;
          waiting = [];
          for (const send of all) send();
        }
      });
    });
    await waitFor(
      () => h.coordinator.registry.list().length === CLIENTS,
      'every client to connect',
    );

    // The coordinator's side of each connection: count the pauses and resumes of its reads.
    const io = (
      h.coordinator as unknown as {
        io: { of(nsp: string): { sockets: Map<string, EngineIoSocketInternals> } };
      }
    ).io;
    let pauses = 0;
    let resumes = 0;
    for (const socket of io.of('/').sockets.values()) {
      const ws = socket.conn.transport.socket;
      const { pause, resume } = ws;
      ws.pause = () => {
        pauses += 1;
        pause.call(ws);
      };
      ws.resume = () => {
        resumes += 1;
        resume.call(ws);
      };
    }

    const run = await h.api<{ id: string }>('POST', '/runs', {
      ...quickRun,
      federationId,
      rounds: ROUNDS,
      minClients: CLIENTS,
      clientsPerRound: CLIENTS,
      strategy: 'fedavg',
      strategyOptions: { arithmetic: 'exact' },
    });
    expect(run.status).toBe(201);
    const finished = new Promise((resolve) => h.coordinator.on('run-finished', resolve));
    expect((await h.api('POST', `/runs/${run.body.id}/start`)).status).toBe(202);
    expect(await finished).toMatchObject({ status: 'completed' });

    // Every update of both rounds accepted; reads paused and resumed on every connection.
    expect(acks).toEqual(new Array(CLIENTS * ROUNDS).fill('ok'));
    expect(pauses).toBeGreaterThanOrEqual(CLIENTS);
    expect(resumes).toBeGreaterThanOrEqual(CLIENTS);
    for (const socket of io.of('/').sockets.values())
      expect(socket.conn.transport.socket.isPaused).toBe(false);
    expect(h.logs.some((line) => line.includes('client reads paused'))).toBe(true);

    const rounds = await h.api<RoundRecord[]>('GET', `/runs/${run.body.id}/rounds`);
    expect(rounds.body).toHaveLength(ROUNDS);
    for (const record of rounds.body) {
      expect(record.participantClientIds).toHaveLength(CLIENTS);
      const aggregator = new FedAvg({ arithmetic: 'exact' }).beginRound(
        record.number,
        new Float32Array(199_210),
      );
      for (const [k, update] of (sent.get(record.number) ?? []).entries())
        aggregator.add({ clientId: `c${k}`, ...update, metrics: {} });
      const { weights } = aggregator.finish();
      const detail = await h.api<{ checkpoint: { sha256: string } }>(
        'GET',
        `/runs/${run.body.id}/rounds/${record.number}`,
      );
      // Byte for byte the FedAvg of every update sent: none lost or folded twice.
      expect(detail.body.checkpoint.sha256, `round ${record.number}`).toBe(
        sha256(weightsToBytes(weights as Float32Array)),
      );
    }

    const metrics = await fetch(`${h.coordinator.url}/metrics`);
    const text = await metrics.text();
    const line = text.split('\n').find((l) => l.startsWith('tessera_client_read_pauses_total'));
    expect(Number(line?.split(' ').pop())).toBeGreaterThanOrEqual(ROUNDS);
  }, 120_000);
});
