import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { TesseraClient, UNSUPPORTED_STRATEGY_SETTING } from '@tessera/client';
import { loadMnist, partitionIid, toExamples } from '@tessera/data';
import { initBackend } from '@tessera/ml';
import {
  bytesToWeights,
  createMsgpackParser,
  PROTOCOL_VERSION,
  type TrainInstruction,
  type TrainReply,
  weightsToBytes,
} from '@tessera/protocol';
import { builtinTask, taskSha256 } from '@tessera/tasks';
import { Server } from 'socket.io';
import { afterEach, describe, expect, it } from 'vitest';
import { createFederation, type Harness, quickRun, startHarness, waitFor } from './harness.js';
import { closeRawSockets, openRawSocket, rawClientInfo } from './raw-client.js';

/**
 * FedProx end to end: the coordinator's train instructions carry the strategy's client
 * settings on the wire (docs/protocol.md §5.2), real Node clients honour them, and a client
 * that cannot honour a setting fails the round with UNSUPPORTED_STRATEGY_SETTING.
 */

let harness: Harness | undefined;
afterEach(async () => {
  closeRawSockets();
  await harness?.dispose();
  harness = undefined;
});

const mnistArgs = (k: number, n: number) => ['--mnist', `${k}/${n}`, '--max-examples', '400'];

function distance(a: Float32Array, b: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += ((a[i] as number) - (b[i] as number)) ** 2;
  return Math.sqrt(sum);
}

describe('a FedProx run', () => {
  it('completes with two real Node clients; every train instruction carried proximalMu, and the clients trained with it', async () => {
    harness = await startHarness();
    const h = harness;
    const { federationId, tokens } = await createFederation(h, 3);
    for (const k of [0, 1]) h.spawnClient(tokens[k]?.token as string, mnistArgs(k, 2));
    // The third member reads the instructions off the wire as any client gets them, and
    // answers with the model it was sent (one example: it hardly weighs in the mean).
    const observer = openRawSocket(h.coordinator.url, {
      token: tokens[2]?.token,
      protocolVersion: PROTOCOL_VERSION,
      // numHoldout 0: it declines evaluation, so no evaluation waits for it.
      client: rawClientInfo({ numHoldout: 0 }),
    });
    const seen: TrainInstruction[] = [];
    observer.on('train', (instruction) => {
      seen.push(instruction);
      observer.emit('update', {
        status: 'ok',
        runId: instruction.runId,
        round: instruction.round,
        weights: instruction.weights,
        numExamples: 1,
        durationMs: 0,
        metrics: {},
      });
    });
    await waitFor(() => h.coordinator.registry.list().length === 3, 'three clients to connect');

    // The same run twice but for the strategy: the same start, samples and batch orders.
    const runWith = async (strategy: Record<string, unknown>) => {
      const run = await h.api<{ id: string }>('POST', '/runs', {
        ...quickRun,
        rounds: 2,
        federationId,
        clientsPerRound: 3,
        minClients: 3,
        ...strategy,
      });
      expect(run.status, JSON.stringify(run.body)).toBe(201);
      const finished = new Promise((resolve) => h.coordinator.once('run-finished', resolve));
      expect((await h.api('POST', `/runs/${run.body.id}/start`)).status).toBe(202);
      expect(await finished).toMatchObject({ status: 'completed' });
      const rounds = await h.db.rounds.list(run.body.id);
      expect(rounds.map((r) => [r.number, r.participantClientIds.length])).toEqual([
        [1, 3],
        [2, 3],
      ]);
      const instructions = seen.filter((i) => i.runId === run.body.id);
      expect(instructions.map((i) => i.round)).toEqual([1, 2]);
      const [first, second] = instructions as [TrainInstruction, TrainInstruction];
      const paramCount = first.model.paramCount;
      // How far round 1's training moved the global model: round 2 starts from its mean.
      const drift = distance(
        bytesToWeights(second.weights, paramCount),
        bytesToWeights(first.weights, paramCount),
      );
      return { instructions, drift };
    };

    const fedavg = await runWith({ strategy: 'fedavg' });
    for (const instruction of fedavg.instructions)
      expect(instruction).not.toHaveProperty('strategy');
    const fedprox = await runWith({ strategy: 'fedprox', strategyOptions: { mu: 2 } });
    for (const instruction of fedprox.instructions) {
      expect(instruction.strategy).toEqual({ name: 'fedprox', settings: { proximalMu: 2 } });
    }
    // The Node clients honoured mu: their models stayed closer to the global one (about half
    // the drift here; a client that ignored mu would drift as far as under FedAvg).
    expect(fedprox.drift).toBeGreaterThan(0);
    expect(fedprox.drift).toBeLessThan(0.75 * fedavg.drift);
  }, 180_000);
});

describe('a client asked for a strategy setting it cannot honour', () => {
  it('fails the round with UNSUPPORTED_STRATEGY_SETTING naming it, and trains nothing; a setting it knows trains', async () => {
    // A coordinator of the test's own on the real wire (Socket.IO, MessagePack), so that it can
    // send what Tessera's coordinator never would.
    const mnist2nn = builtinTask('mnist-2nn');
    const http = createServer();
    // SCAFFOLD's update (weights and controlDelta, 1.6 MB) is over Socket.IO's default 1 MB.
    const io = new Server(http, {
      parser: createMsgpackParser(),
      transports: ['websocket'],
      maxHttpBufferSize: 16 * 1024 * 1024,
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    const replies: TrainReply[] = [];
    const connected = new Promise<import('socket.io').Socket>((resolve) =>
      io.on('connection', (socket) => {
        socket.on('update', (reply: TrainReply, ack: (answer: unknown) => void) => {
          replies.push(reply);
          ack({ ok: true });
        });
        // The run's task, asked for once (docs/protocol.md §5.9).
        socket.on('task', (_request: unknown, ack: (answer: unknown) => void) => {
          ack({ ok: true, task: mnist2nn });
        });
        socket.emit('welcome', {
          clientId: 'c1',
          federationId: 'f1',
          organisation: 'test',
          protocolVersion: PROTOCOL_VERSION,
          maxFrameBytes: 8 * 1024 * 1024,
        });
        resolve(socket);
      }),
    );

    await initBackend('cpu');
    const examples = toExamples(
      loadMnist('train'),
      (partitionIid(60_000, 600, 1)[0] ?? new Uint32Array()).subarray(0, 40),
    );
    const progress: number[] = [];
    const client = new TesseraClient({
      coordinatorUrl: url,
      token: 'tsr_test',
      identity: { name: 'test', version: '0', runtime: 'node' },
      backend: 'cpu',
      train: examples,
      holdout: null,
      observer: { progress: (p) => progress.push(p.batch) },
    });
    try {
      await client.connect();
      const socket = await connected;
      const { initialWeights } = await import('@tessera/ml');
      const weights = initialWeights('fedavg-2nn', 1);
      const cases: [unknown, string][] = [
        [{ name: 'fednova', settings: { tau: 1 } }, 'strategy.name'],
        [{ name: 'fedprox', settings: { proximalMu: 0.1, clip: 1 } }, 'strategy.settings.clip'],
        [{ name: 'fedprox', settings: { proximalMu: -0.5 } }, 'strategy.settings.proximalMu'],
        [{ name: 'fedprox', settings: { proximalMu: 1e6 } }, 'strategy.settings.proximalMu'],
        [{ name: 'fedprox', settings: { proximalMu: '0.1' } }, 'strategy.settings.proximalMu'],
        [{ name: 'fedprox', settings: {} }, 'strategy.settings.proximalMu'],
        [{ name: 'fedprox', settings: { proximalMu: [0.1] } }, 'strategy.settings.proximalMu'],
        [{ name: '', settings: {} }, 'strategy.name'],
        // SCAFFOLD: only option II, and never without the server's control variate c.
        [
          { name: 'scaffold', settings: { controlVariateOption: 1 } },
          'strategy.settings.controlVariateOption',
        ],
        [{ name: 'scaffold', settings: { controlVariateOption: 2 } }, 'controlVariate'],
      ];
      const train = (round: number, strategy: unknown, extra: Record<string, unknown> = {}) =>
        socket.emit('train', {
          ...extra,
          runId: 'r1',
          round,
          model: { name: 'fedavg-2nn', paramCount: weights.length },
          task: { name: mnist2nn.name, version: 1, sha256: taskSha256(mnist2nn) },
          config: { localEpochs: 1, batchSize: 20, learningRate: 0.05, seed: 3 },
          strategy,
          deadline: Date.now() + 60_000,
          weights: weightsToBytes(weights),
        });
      for (const [round, [strategy]] of cases.entries()) train(round + 1, strategy);
      await waitFor(() => replies.length === cases.length, 'a reply to every instruction');
      for (const [index, [strategy, field]] of cases.entries()) {
        const reply = replies[index];
        expect(reply, JSON.stringify(strategy)).toMatchObject({
          status: 'failed',
          round: index + 1,
          error: { code: UNSUPPORTED_STRATEGY_SETTING },
        });
        const message = reply?.status === 'failed' ? reply.error.message : '';
        expect(message, field).toMatch(
          field.endsWith('name') ? /strategy/ : /proximalMu|clip|controlVariate/,
        );
      }
      expect(progress).toEqual([]);

      train(100, { name: 'fedprox', settings: { proximalMu: 0.1 } });
      await waitFor(() => replies.length === cases.length + 1, 'the FedProx round');
      expect(replies.at(-1)).toMatchObject({ status: 'ok', round: 100, numExamples: 40 });
      expect(progress.length).toBeGreaterThan(0);

      // A SCAFFOLD round: the reply carries delta c_i = c_i+ - c_i, with c_i = 0 at first:
      // -c + (x - y) / (K lr), K = 40 / 20 = 2 steps of lr 0.05.
      const c = Float32Array.from(weights, (_, i) => 0.01 * Math.cos(i));
      train(
        101,
        { name: 'scaffold', settings: { controlVariateOption: 2 } },
        { controlVariate: weightsToBytes(c) },
      );
      await waitFor(() => replies.length === cases.length + 2, 'the SCAFFOLD round');
      const scaffold = replies.at(-1);
      expect(scaffold).toMatchObject({ status: 'ok', round: 101 });
      if (scaffold?.status !== 'ok') throw new Error('no update');
      const trained = bytesToWeights(scaffold.weights, weights.length);
      const delta = bytesToWeights(scaffold.controlDelta as Uint8Array, weights.length);
      let worst = 0;
      for (let i = 0; i < weights.length; i++) {
        const expected =
          -(c[i] as number) + ((weights[i] as number) - (trained[i] as number)) / (2 * 0.05);
        worst = Math.max(worst, Math.abs((delta[i] as number) - expected));
      }
      expect(worst).toBeLessThan(1e-5);
    } finally {
      await client.close();
      io.close();
      http.close();
    }
  }, 60_000);
});
