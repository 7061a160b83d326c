/**
 * What privacy costs (issue 14, item 6), in two parts.
 *
 * 1. Secure aggregation, bytes and time per round, at 10, 50 and 100 clients on the 2NN and the
 *    CNN, next to plain FedAvg. The coordinator's side is its own SecAggRound (the object its
 *    engine opens for a SecAgg round, with its step waits and deadlines) and each client's is
 *    the client package's SecAggParticipation (what TesseraClient runs), joined by an
 *    in-memory Transport that carries every frame through the wire codec: encoded as the
 *    Socket.IO MessagePack packet the socket would send, decoded by the protocol's own decoder
 *    (with its pre-scan), and the client frames checked by the same schema the socket edge
 *    checks. The byte counts are those packets (what Engine.IO puts in one WebSocket message;
 *    the 2-14 bytes of WebSocket framing and any TLS are not counted). Each configuration runs
 *    once with no drop-out and once with 10% of the clients dropping after sharing their keys
 *    (the coordinator then rebuilds their masking keys and removes their pairwise masks: its
 *    expensive case). The clients' changes are synthetic (a sine pattern well within the clip
 *    range): the cost depends on the parameter count, not on the values; the unmasked mean is
 *    checked against the survivors' plain FedAvg within the quantisation error.
 *
 *    Everything runs in this process, one client after another: a client's time is its own
 *    work only (its calls into SecAggParticipation, less the time its sends spend in the
 *    coordinator), and the coordinator's is the time spent in its SecAggServer's methods.
 *    In a deployment the clients work in parallel, so a round's SecAgg time is about the
 *    slowest client's time plus the coordinator's, not the sum over clients (printed too,
 *    as the wall time of the whole in-process round).
 *
 * 2. DP-FedAvg's accuracy: the FedAvg paper's 2NN on MNIST, 100 clients of 600 IID examples,
 *    Poisson sampling at rate q, E = 1, B = 10, clip norm C, the noise multiplier z chosen with
 *    the accountant (noiseMultiplierFor) so that R rounds reach each target ε at δ = 1e-5, next
 *    to FedAvg without DP on the same samples. The strategies are the registry's own
 *    (createStrategy: dp-fedavg with CryptoGaussianNoise, as a run has it), driven through
 *    beginRound / add / finish as the engine drives them; the clients train in the native loop
 *    (tfjs where it is not built). The samples are the coordinator's Poisson sampling
 *    (selectPoisson) from a seeded uniform, so every configuration sees the same clients in the
 *    same round (a run draws them from the CSPRNG).
 *
 *   npm run bench:privacy                       # both parts, writes bench/results/privacy.json
 *   npm run bench:privacy -- --parts secagg --models fedavg-2nn --clients 10,50
 *   npm run bench:privacy -- --parts dp --rounds 30 --epsilons 1,4,8 --clips 0.5 --sampling-rates 0.1,0.3
 *   npm run bench:privacy -- --quick --out /tmp/privacy.json   # a smoke run
 *
 * Results merge into the output file by part, so the two parts can run as two invocations.
 */
// Before initBackend loads @tessera/ml-native (lazily), whose OpenBLAS and oneDNN read these.
process.env['OPENBLAS_NUM_THREADS'] ??= '1';
process.env['OMP_NUM_THREADS'] ??= '1';

import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createStrategy, type TrainUpdate } from '@tessera/aggregation';
import { SecAggParticipation } from '@tessera/client/core';
import { createRng, loadMnist, partitionIid, toExamples } from '@tessera/data';
import {
  createModel,
  evaluateModel,
  getFlatWeights,
  initBackend,
  setFlatWeights,
  type TrainingData,
  type TrainingLoop,
  trainLocal,
} from '@tessera/ml';
import { noiseMultiplierFor } from '@tessera/privacy';
import {
  type Ack,
  createMsgpackParser,
  encodePacket,
  type Packet,
  PacketType,
  parseFrame,
  type SecAggClientFrame,
  type SecAggServerFrame,
  type SecAggSetupMessage,
  type SecureAggregationConfig,
  secAggClientFrameSchema,
  trainReplySchema,
  weightsToBytes,
} from '@tessera/protocol';
import { expandSeed, type SecAggResult, SecAggServer } from '@tessera/secagg';
// Neither is exported by its package (the coordinator's index, the client's core): imported
// from source, since the point is to measure the code the coordinator and clients run.
import { createLogger } from '../apps/coordinator/src/logger.js';
import { selectPoisson } from '../apps/coordinator/src/sampling.js';
import { SecAggRound } from '../apps/coordinator/src/secagg-round.js';
import type { Transport } from '../apps/coordinator/src/transport.js';
import { Wakeup } from '../apps/coordinator/src/wakeup.js';

const { values: args } = parseArgs({
  options: {
    parts: { type: 'string', default: 'secagg,dp' },
    models: { type: 'string', default: 'fedavg-2nn,fedavg-cnn' },
    clients: { type: 'string', default: '10,50,100' },
    rounds: { type: 'string', default: '50' },
    epsilons: { type: 'string', default: '1,4,8' },
    'sampling-rates': { type: 'string', default: '0.1' },
    clips: { type: 'string', default: '0.2,0.5,1' },
    lr: { type: 'string', default: '0.2' },
    quick: { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});

const quick = args.quick;
const parts = new Set(args.parts.split(','));
for (const part of parts) {
  if (part !== 'secagg' && part !== 'dp')
    throw new Error(`unknown part ${part}; parts: secagg, dp`);
}
const numbers = (text: string, what: string) =>
  text.split(',').map((item) => {
    const value = Number(item);
    if (!(value > 0)) throw new Error(`--${what}: ${item} is not a positive number`);
    return value;
  });
const outPath = args.out ?? `bench/results/privacy${quick ? '-quick' : ''}.json`;

const SEED = 1;
const DELTA = 1e-5;
/** The DP part's federation: 100 clients of 600 IID MNIST examples (McMahan et al.'s 2NN setup). */
const DP_CLIENTS = 100;
const DP_EXAMPLES_PER_CLIENT = quick ? 20 : 600;

const cpus = os.cpus();
const loadAverage = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
const loadAtStart = loadAverage();
const startedAt = new Date().toISOString();
console.log(
  `privacy bench, ${startedAt}: ${cpus.length} x ${cpus[0]?.model ?? 'unknown CPU'}, node ${process.version}; load average ${loadAtStart} at the start${quick ? ' (--quick: a smoke run, figures meaningless)' : ''}`,
);

// The native loop (oneDNN, OpenBLAS) where @tessera/ml-native is built; tfjs otherwise.
let backendDetail: string;
try {
  backendDetail = (await initBackend('openblas', { threads: 1 })).detail;
} catch (error) {
  const info = await initBackend('auto', { threads: 1 });
  backendDetail = `${info.detail} (openblas unavailable: ${(error as Error).message})`;
}

/** The parameter count of a model of @tessera/ml (2NN 199,210; CNN 1,663,370). */
function parameterCountOf(modelName: string): number {
  const model = createModel(modelName, { seed: SEED });
  const count = getFlatWeights(model).length;
  model.dispose();
  return count;
}

// ---- 1. secure aggregation ---------------------------------------------------------------

/**
 * The coordinator's SecAggServer, timed per method. SecAggRound builds its own server, so the
 * methods are wrapped on the prototype: each still runs unchanged, and its wall time (to the
 * resolution of its promise: WebCrypto's work included) is added under its name.
 */
const serverMs = new Map<string, number>();
const SERVER_METHODS = [
  'receiveAdvertise',
  'closeAdvertising',
  'receiveShareKeys',
  'closeSharing',
  'receiveMaskedInput',
  'closeMasking',
  'receiveUnmaskResponse',
  'finish',
] as const;
{
  const prototype = SecAggServer.prototype as unknown as Record<
    string,
    (...rest: unknown[]) => unknown
  >;
  for (const name of SERVER_METHODS) {
    const method = prototype[name] as (...rest: unknown[]) => unknown;
    prototype[name] = function timed(this: unknown, ...rest: unknown[]) {
      const started = performance.now();
      const add = () => serverMs.set(name, (serverMs.get(name) ?? 0) + performance.now() - started);
      const result = method.apply(this, rest);
      if (result instanceof Promise) return result.finally(add);
      add();
      return result;
    };
  }
}

/** One packet through the protocol's decoder, as the receiving socket decodes it. */
const decoder = new (createMsgpackParser({ maxFrameBytes: 64 * 1024 * 1024 }).Decoder)();
let decodedPacket: Packet | undefined;
decoder.on('decoded', (packet) => {
  decodedPacket = packet;
});
function decode(bytes: Uint8Array): Packet {
  decodedPacket = undefined;
  decoder.add(bytes);
  const packet = decodedPacket as Packet | undefined;
  if (packet === undefined) throw new Error('the decoder delivered nothing');
  const data = packet.data as unknown[];
  if (data[0] === 'tessera:rejected-frame') {
    throw new Error(`the decoder refused a frame: ${JSON.stringify(data[1])}`);
  }
  return packet;
}

/** The client steps, in order; "keys" is SecAggParticipation.create (two key pairs). */
const CLIENT_STEPS = ['keys', 'advertise', 'share', 'mask', 'unmask'] as const;
type ClientStep = (typeof CLIENT_STEPS)[number];
export type PerStep = Record<ClientStep, number>;
const zeroSteps = (): PerStep => ({ keys: 0, advertise: 0, share: 0, mask: 0, unmask: 0 });

export interface SecAggRow {
  model: string;
  parameters: number;
  clients: number;
  threshold: number;
  droppedAfterSharing: number;
  survivors: number;
  /** Mean over the clients that did the step (a dropped client does not mask or unmask). */
  clientUpBytes: PerStep;
  /** What each client received at each step: the coordinator's message and the ack of its own. */
  clientDownBytes: PerStep;
  /** Mean and max over the clients that did the step, of their own work. */
  clientMs: PerStep;
  clientMaxMs: PerStep;
  /** The slowest client's total (its own work, all steps). */
  slowestClientMs: number;
  /** The setup in the train instruction, per client (plain FedAvg's instruction lacks it). */
  setupBytesPerClient: number;
  coordinatorInBytes: number;
  coordinatorOutBytes: number;
  coordinatorMs: Record<string, number>;
  coordinatorTotalMs: number;
  /** The whole round in this process: every client's work, one after another, and the rest. */
  inProcessWallMs: number;
  /** Largest |unmasked mean − the survivors' plain FedAvg| of the changes, and the bound. */
  maxAbsDeviation: number;
  maxAbsErrorBound: number;
  transcriptEntries: number;
  /** Plain FedAvg's update frame (a TrainReply with the float32 weights) and its ack. */
  plainUpdateFrameBytes: number;
  plainAckBytes: number;
  /** The real FedAvg strategy folding the same number of float32 updates, and finishing. */
  plainFoldMs: number;
  /**
   * One mask's PRG expansion (expandSeed of parameterCount words, the median of 5), timed
   * alone next to the round: a client's masking step expands |U2| of them (its self-mask and
   * one per peer), so |U2| times this is the PRG's part of that step's time.
   */
  onePrgExpansionMs: number;
  /** The load average just before and just after this row's rounds, and when. */
  loadAverageBefore: string;
  loadAverageAfter: string;
  measuredAt: string;
}

/** The coordinator's defaults for `secureAggregation: {}`, but key steps of up to 10 minutes. */
const SECAGG_CONFIG: SecureAggregationConfig = {
  clipRange: 1,
  maxExamplesPerClient: 10_000,
  thresholdFraction: 2 / 3,
  // In-process and sequential, a step of 100 CNN clients takes minutes; no one is late here,
  // and the bench checks that nobody was left out by a deadline (the survivors' count).
  stepDeadlineMs: 600_000,
};

const clientIdOf = (k: number) => `client-${String(k).padStart(3, '0')}`;
const examplesOf = (k: number) => 500 + ((k * 37) % 200);
/** Client k's model after "training": the global model plus a deterministic change. */
function trainedModel(global: Float32Array, k: number): Float32Array {
  const trained = new Float32Array(global.length);
  for (let i = 0; i < trained.length; i++) {
    trained[i] = (global[i] as number) + 0.05 * Math.sin(i * 0.001 + k);
  }
  return trained;
}

async function secAggRound(
  modelName: string,
  parameterCount: number,
  n: number,
  dropCount: number,
): Promise<
  Omit<SecAggRow, 'onePrgExpansionMs' | 'loadAverageBefore' | 'loadAverageAfter' | 'measuredAt'>
> {
  const runId = `bench-${modelName}-${n}`;
  const clientIds = Array.from({ length: n }, (_, k) => clientIdOf(k));
  // The first dropCount clients share their keys, then go silent (the coordinator sees them out).
  const dropping = new Set(clientIds.slice(0, dropCount));
  const shared = new Set<string>();
  const global = new Float32Array(parameterCount);
  for (let i = 0; i < global.length; i++) global[i] = 0.01 * Math.cos(i * 0.003);

  const up = new Map(clientIds.map((id) => [id, zeroSteps()]));
  const down = new Map(clientIds.map((id) => [id, zeroSteps()]));
  const ms = new Map(clientIds.map((id) => [id, zeroSteps()]));
  const did = new Map(CLIENT_STEPS.map((step) => [step, new Set<string>()]));
  /** Time the current client's sends spent in the coordinator (taken off the client's time). */
  let inCoordinatorMs = 0;
  serverMs.clear();

  const queue: { to: string; frame: SecAggServerFrame }[] = [];
  let wakeDriver: (() => void) | undefined;
  const notifyDriver = () => {
    wakeDriver?.();
    wakeDriver = undefined;
  };
  const notUsed = (what: string) => () => {
    throw new Error(`the SecAgg bench sends no ${what}`);
  };
  const stepOfServerFrame = { advertised: 'share', shares: 'mask', unmask: 'unmask' } as const;
  const transport: Transport = {
    sendTrain: notUsed('train instruction'),
    sendEvaluate: notUsed('evaluate instruction'),
    sendStatistics: notUsed('statistics instruction'),
    sendRoundClosed: notUsed('round-closed notice'),
    // Encoded once, the same bytes to every recipient (as Socket.IO's broadcast does), each
    // recipient decoding its copy.
    sendSecAgg(ids, frame) {
      const bytes = encodePacket({ type: PacketType.EVENT, nsp: '/', data: ['secagg', frame] });
      for (const id of ids) {
        const step = stepOfServerFrame[frame.step];
        (down.get(id) as PerStep)[step] += bytes.length;
        const decoded = decode(bytes).data as [string, SecAggServerFrame];
        queue.push({ to: id, frame: decoded[1] });
      }
      notifyDriver();
    },
  };

  const wakeup = new Wakeup();
  const round = await SecAggRound.open(
    { transport, logger: createLogger('warn'), wakeup },
    runId,
    1,
    1,
    SECAGG_CONFIG,
    clientIds,
    parameterCount,
    Date.now() + 6 * 3600_000,
  );
  // The setup as a client reads it from its train instruction: through the codec too.
  const instructionWith = encodePacket({
    type: PacketType.EVENT,
    nsp: '/',
    data: ['train', { secureAggregation: round.setup }],
  });
  const instructionWithout = encodePacket({
    type: PacketType.EVENT,
    nsp: '/',
    data: ['train', {}],
  });
  const setupAsSent = (decode(instructionWith).data as [string, { secureAggregation: unknown }])[1]
    .secureAggregation as SecAggSetupMessage;

  let ackId = 0;
  const sendFrom =
    (clientId: string) =>
    async (frame: SecAggClientFrame): Promise<Ack> => {
      const started = performance.now();
      const id = ackId++;
      const bytes = encodePacket({
        type: PacketType.EVENT,
        nsp: '/',
        data: ['secagg', frame],
        id,
      });
      (up.get(clientId) as PerStep)[frame.step] += bytes.length;
      // The socket edge: decode, schema-check, hand to the run's SecAggRound; a refusal
      // throws here and fails the bench (nothing in it should be refused).
      const received = decode(bytes).data as [string, unknown];
      await round.receive(clientId, parseFrame(secAggClientFrameSchema, received[1], 'secagg'));
      if (frame.step === 'share') shared.add(clientId);
      const ack: Ack = { ok: true };
      const ackBytes = encodePacket({ type: PacketType.ACK, nsp: '/', data: [ack], id });
      (down.get(clientId) as PerStep)[frame.step] += ackBytes.length;
      inCoordinatorMs += performance.now() - started;
      return ack;
    };

  /** Runs one client step, adding the client's own time (its sends' coordinator time off). */
  async function clientStep<T>(clientId: string, step: ClientStep, work: () => Promise<T>) {
    inCoordinatorMs = 0;
    const started = performance.now();
    const result = await work();
    (ms.get(clientId) as PerStep)[step] += performance.now() - started - inCoordinatorMs;
    did.get(step)?.add(clientId);
    return result;
  }

  const expectedSum = new Float64Array(parameterCount);
  let expectedExamples = 0;
  const roundStarted = performance.now();
  const participations = new Map<string, SecAggParticipation>();
  for (const clientId of clientIds) {
    participations.set(
      clientId,
      await clientStep(clientId, 'keys', () =>
        SecAggParticipation.create(runId, 1, setupAsSent, clientId, sendFrom(clientId)),
      ),
    );
  }
  // Out of the round: a dropping client, once its shares are in (the engine's isOut: gone).
  const isOut = (clientId: string) => dropping.has(clientId) && shared.has(clientId);
  let outcome: Awaited<ReturnType<SecAggRound['run']>> | undefined;
  let failure: unknown;
  const running = round
    .run(isOut, () => false)
    .then(
      (value) => {
        outcome = value;
        notifyDriver();
      },
      (error: unknown) => {
        failure = error;
        notifyDriver();
      },
    );
  for (const [clientId, participation] of participations) {
    await clientStep(clientId, 'advertise', () => participation.advertise());
  }
  // The clients answer the coordinator's messages in the order it sent them.
  while (outcome === undefined && failure === undefined) {
    const next = queue.shift();
    if (next === undefined) {
      await new Promise<void>((resolve) => {
        wakeDriver = resolve;
      });
      continue;
    }
    const { to, frame } = next;
    const participation = participations.get(to) as SecAggParticipation;
    if (dropping.has(to) && frame.step !== 'advertised') continue;
    const step = stepOfServerFrame[frame.step];
    await clientStep(to, step, async () => {
      if (frame.step === 'shares') {
        // Training is done: its change goes in (the host's provide, then the masking).
        const k = clientIds.indexOf(to);
        const trained = trainedModel(global, k);
        participation.provide(global, trained, examplesOf(k));
        for (let i = 0; i < parameterCount; i++) {
          expectedSum[i] =
            (expectedSum[i] as number) +
            examplesOf(k) * ((trained[i] as number) - (global[i] as number));
        }
        expectedExamples += examplesOf(k);
      }
      await participation.handle(frame);
    });
  }
  await running;
  const inProcessWallMs = performance.now() - roundStarted;
  if (failure !== undefined) throw failure;
  if (outcome?.kind !== 'summed') {
    throw new Error(`the SecAgg round ended without a sum: ${JSON.stringify(outcome)}`);
  }
  const result: SecAggResult = outcome.result;
  if (result.survivors.length !== n - dropCount || result.totalExamples !== expectedExamples) {
    throw new Error(
      `the round summed ${result.survivors.length} clients (${result.totalExamples} examples), expected ${n - dropCount} (${expectedExamples})`,
    );
  }
  let maxAbsDeviation = 0;
  for (let i = 0; i < parameterCount; i++) {
    const expected = (expectedSum[i] as number) / expectedExamples;
    maxAbsDeviation = Math.max(maxAbsDeviation, Math.abs((result.weights[i] as number) - expected));
  }
  // The bound is on the exact mean; the result is that mean rounded to float32 as well.
  if (maxAbsDeviation > result.maxAbsError + 1e-6) {
    throw new Error(
      `unmasked mean off by ${maxAbsDeviation}, more than the quantisation bound ${result.maxAbsError}`,
    );
  }

  const meanOver = (table: Map<string, PerStep>, step: ClientStep) => {
    const who = [...(did.get(step) as Set<string>)];
    return who.reduce((sum, id) => sum + (table.get(id) as PerStep)[step], 0) / who.length;
  };
  const perStep = (pick: (step: ClientStep) => number): PerStep =>
    Object.fromEntries(CLIENT_STEPS.map((step) => [step, pick(step)])) as PerStep;
  const sumOf = (table: Map<string, PerStep>) =>
    [...table.values()].reduce(
      (sum, steps) => sum + CLIENT_STEPS.reduce((s, step) => s + steps[step], 0),
      0,
    );
  const coordinatorMs = Object.fromEntries(
    SERVER_METHODS.map((name) => [name, serverMs.get(name) ?? 0]),
  );
  const plain = plainFedAvg(global, n);
  return {
    model: modelName,
    parameters: parameterCount,
    clients: n,
    threshold: round.setup.threshold,
    droppedAfterSharing: dropCount,
    survivors: result.survivors.length,
    clientUpBytes: perStep((step) => Math.round(meanOver(up, step))),
    clientDownBytes: perStep((step) => Math.round(meanOver(down, step))),
    clientMs: perStep((step) => meanOver(ms, step)),
    clientMaxMs: perStep((step) =>
      Math.max(...[...(did.get(step) as Set<string>)].map((id) => (ms.get(id) as PerStep)[step])),
    ),
    slowestClientMs: Math.max(
      ...[...ms.values()].map((steps) => CLIENT_STEPS.reduce((s, step) => s + steps[step], 0)),
    ),
    setupBytesPerClient: instructionWith.length - instructionWithout.length,
    coordinatorInBytes: sumOf(up),
    coordinatorOutBytes: sumOf(down),
    coordinatorMs,
    coordinatorTotalMs: Object.values(coordinatorMs).reduce((a, b) => a + b, 0),
    inProcessWallMs,
    maxAbsDeviation,
    maxAbsErrorBound: result.maxAbsError,
    transcriptEntries: result.transcript.length,
    ...plain,
  };
}

async function prgExpansionMs(parameterCount: number): Promise<number> {
  const times: number[] = [];
  for (let k = 0; k < 5; k++) {
    const seed = crypto.getRandomValues(new Uint8Array(32));
    const started = performance.now();
    await expandSeed(seed, parameterCount);
    times.push(performance.now() - started);
  }
  return times.sort((a, b) => a - b)[2] as number;
}

/** Plain FedAvg's frames and fold for n clients: the registry's fedavg, as the engine runs it. */
function plainFedAvg(global: Float32Array, n: number) {
  const reply = {
    status: 'ok' as const,
    runId: 'bench',
    round: 1,
    weights: weightsToBytes(trainedModel(global, 0)),
    numExamples: examplesOf(0),
    durationMs: 12_345,
    metrics: { loss: 0.3, accuracy: 0.9 },
  };
  const frame = encodePacket({ type: PacketType.EVENT, nsp: '/', data: ['update', reply], id: 7 });
  parseFrame(trainReplySchema, (decode(frame).data as unknown[])[1], 'update');
  const ack = encodePacket({ type: PacketType.ACK, nsp: '/', data: [{ ok: true }], id: 7 });
  const aggregator = createStrategy('fedavg', {}).beginRound(1, global);
  let foldMs = 0;
  for (let k = 0; k < n; k++) {
    // Made outside the timing: n full CNN models at once would be 665 MB.
    const update: TrainUpdate = {
      clientId: clientIdOf(k),
      numExamples: examplesOf(k),
      weights: trainedModel(global, k),
      metrics: { loss: 0.3 },
    };
    const started = performance.now();
    aggregator.add(update);
    foldMs += performance.now() - started;
  }
  const started = performance.now();
  aggregator.finish();
  foldMs += performance.now() - started;
  return { plainUpdateFrameBytes: frame.length, plainAckBytes: ack.length, plainFoldMs: foldMs };
}

// ---- 2. DP-FedAvg accuracy ---------------------------------------------------------------

export interface DpRun {
  label: string;
  samplingRate: number;
  /** Null for FedAvg without DP. */
  clipNorm: number | null;
  targetEpsilon: number | null;
  noiseMultiplier: number | null;
  /** Per round: clients sampled, ε after it (null without DP). */
  sampled: number[];
  epsilonByRound: (number | null)[];
  /** Test accuracy every 10 rounds and after the last. */
  accuracyByRound: { round: number; accuracy: number; loss: number }[];
  accuracy: number;
  /** Updates clipped, summed over the rounds (dp-fedavg's exact count with fixed clipping). */
  clippedUpdates: number | null;
  updates: number;
  wallSeconds: number;
  /** The load average just before and just after this run, and when it started. */
  loadAverageBefore: string;
  loadAverageAfter: string;
  measuredAt: string;
}

export interface DpSettings {
  clients: number;
  examplesPerClient: number;
  samplingRates: number[];
  rounds: number;
  epochs: number;
  batchSize: number;
  learningRate: number;
  clipNorms: number[];
  targetEpsilons: number[];
  delta: number;
  testImages: number;
}

/**
 * The runs this invocation made, after the file's runs of other labels: several invocations
 * (other ε, C or q, the same rounds and training) build one table. A run of the same label
 * is replaced.
 */
function mergedRuns(runs: DpRun[], settings: DpSettings): DpRun[] {
  const file = document['dp'] as { runs?: DpRun[]; settings?: DpSettings } | undefined;
  // Only runs of the same federation and training: other rounds or lr would not compare.
  const same = (
    ['clients', 'examplesPerClient', 'rounds', 'learningRate', 'testImages'] as const
  ).every((key) => file?.settings?.[key] === settings[key]);
  const earlier = same ? (file?.runs ?? []) : [];
  const labels = new Set(runs.map((run) => run.label));
  return [...earlier.filter((run) => !labels.has(run.label)), ...runs];
}

/** The settings with the grid's lists as the merged runs have them (several invocations). */
function settingsOfRuns(settings: DpSettings, runs: DpRun[]): DpSettings {
  const sorted = (values: (number | null)[]) =>
    [...new Set(values.filter((value): value is number => value !== null))].sort((a, b) => a - b);
  return {
    ...settings,
    samplingRates: sorted(runs.map((run) => run.samplingRate)),
    clipNorms: sorted(runs.map((run) => run.clipNorm)),
    targetEpsilons: sorted(runs.map((run) => run.targetEpsilon)),
  };
}

async function dpPart(): Promise<{ settings: DpSettings; runs: DpRun[]; loops: string[] }> {
  const settings: DpSettings = {
    clients: DP_CLIENTS,
    examplesPerClient: DP_EXAMPLES_PER_CLIENT,
    samplingRates: numbers(args['sampling-rates'], 'sampling-rates'),
    rounds: quick ? 2 : Number(args.rounds),
    epochs: 1,
    batchSize: 10,
    learningRate: Number(args.lr),
    clipNorms: quick ? [0.5] : numbers(args.clips, 'clips'),
    targetEpsilons: quick ? [8] : numbers(args.epsilons, 'epsilons'),
    delta: DELTA,
    testImages: quick ? 500 : 10_000,
  };
  const train = loadMnist('train');
  const test = toExamples(loadMnist('test'));
  const testData: TrainingData = {
    x: test.x.subarray(0, settings.testImages * 784),
    y: test.y.subarray(0, settings.testImages),
    count: settings.testImages,
  };
  // An IID split of the whole training set into 600-example parts (fewer examples with
  // --quick), the first 100 of them the clients.
  const parts = partitionIid(train.count, train.count / settings.examplesPerClient, SEED);
  const data = parts.slice(0, settings.clients).map((indices): TrainingData => {
    const examples = toExamples(train, indices);
    return { x: examples.x, y: examples.y, count: examples.count };
  });
  const clientIds = data.map((_, k) => clientIdOf(k));
  const model = createModel('fedavg-2nn', { seed: SEED });
  const initial = getFlatWeights(model);
  const loops = new Set<TrainingLoop>();
  console.log(
    `\n== DP-FedAvg: fedavg-2nn (${initial.length} parameters), ${settings.clients} clients x ${settings.examplesPerClient} IID examples, Poisson q in ${settings.samplingRates.join(', ')}, ${settings.rounds} rounds, E = ${settings.epochs}, B = ${settings.batchSize}, lr ${settings.learningRate}, C in ${settings.clipNorms.join(', ')}, δ = ${settings.delta}; scored on ${settings.testImages} test images`,
  );

  const configurations = settings.samplingRates.flatMap((q) => [
    { q, target: null, clipNorm: null },
    ...settings.targetEpsilons.flatMap((target) =>
      settings.clipNorms.map((clipNorm) => ({ q, target, clipNorm })),
    ),
  ]);
  const runs: DpRun[] = [];
  for (const { q, target, clipNorm } of configurations) {
    const expected = q * settings.clients;
    const noiseMultiplier =
      target === null
        ? null
        : noiseMultiplierFor({
            epsilon: target,
            delta: settings.delta,
            samplingRate: q,
            steps: settings.rounds,
          });
    const strategy =
      noiseMultiplier === null || clipNorm === null
        ? createStrategy('fedavg', {})
        : createStrategy('dp-fedavg', {
            noiseMultiplier,
            clipNorm,
            expectedClientsPerRound: expected,
            samplingRate: q,
            delta: settings.delta,
            innerStrategy: 'fedavg',
            innerOptions: {},
          });
    const label =
      target === null ? `FedAvg, no DP, q=${q}` : `DP-FedAvg ε=${target}, q=${q}, C=${clipNorm}`;
    // The same seeded draws at each q: the same clients in the same rounds.
    const sampler = createRng(SEED * 7919);
    const started = performance.now();
    let global = initial;
    const run: DpRun = {
      label,
      samplingRate: q,
      clipNorm,
      targetEpsilon: target,
      noiseMultiplier,
      sampled: [],
      epsilonByRound: [],
      accuracyByRound: [],
      accuracy: 0,
      clippedUpdates: noiseMultiplier === null ? null : 0,
      updates: 0,
      wallSeconds: 0,
      loadAverageBefore: loadAverage(),
      loadAverageAfter: '',
      measuredAt: new Date().toISOString(),
    };
    for (let round = 1; round <= settings.rounds; round++) {
      const sample = selectPoisson(clientIds, q, () => sampler.next());
      run.sampled.push(sample.length);
      const aggregator = strategy.beginRound(round, global);
      for (const clientId of sample) {
        const k = clientIds.indexOf(clientId);
        setFlatWeights(model, global);
        const trained = await trainLocal(model, data[k] as TrainingData, {
          epochs: settings.epochs,
          batchSize: settings.batchSize,
          learningRate: settings.learningRate,
          seed: SEED * 1_000_003 + round * 1_000 + k,
        });
        loops.add(trained.loop);
        aggregator.add({
          clientId,
          numExamples: trained.numExamples,
          weights: getFlatWeights(model),
          metrics: {},
        });
        run.updates++;
      }
      // Plain FedAvg has nothing to average in an empty sample (at qN = 10: 0.9^100);
      // dp-fedavg releases noise alone then, and counts the step.
      const result = sample.length === 0 && noiseMultiplier === null ? null : aggregator.finish();
      global = result?.weights ?? global;
      run.epsilonByRound.push(result?.privacy?.epsilon ?? null);
      if (run.clippedUpdates !== null) run.clippedUpdates += result?.privacy?.clippedCount ?? 0;
      if (round % 10 === 0 || round === settings.rounds) {
        setFlatWeights(model, global);
        const scored = await evaluateModel(model, testData);
        run.accuracyByRound.push({ round, accuracy: scored.accuracy, loss: scored.loss });
        run.accuracy = scored.accuracy;
        console.log(
          `  ${label.padEnd(30)} round ${String(round).padStart(3)}: accuracy ${(scored.accuracy * 100).toFixed(2)} %, ε ${run.epsilonByRound.at(-1)?.toFixed(3) ?? '—'} (${((performance.now() - started) / 1000).toFixed(0)} s)`,
        );
      }
    }
    run.wallSeconds = (performance.now() - started) / 1000;
    run.loadAverageAfter = loadAverage();
    runs.push(run);
    // After every run: a bench stopped part way keeps what it measured (and the runs of
    // earlier invocations at other settings).
    const merged = mergedRuns(runs, settings);
    save('dp', { settings: settingsOfRuns(settings, merged), runs: merged, loops: [...loops] });
  }
  model.dispose();
  return { settings, runs, loops: [...loops] };
}

// ---- run, print, write ---------------------------------------------------------------------

const fmt = (value: number) => Math.round(value).toLocaleString('en');
/** A Markdown table: the header, its rule, a line per row. */
function printTable(header: readonly string[], rows: readonly (string | number)[][]): void {
  console.log(`| ${header.join(' | ')} |\n|${header.map(() => '---').join('|')}|`);
  for (const row of rows) console.log(`| ${row.join(' | ')} |`);
}
const ms1 = (value: number) => (value < 10 ? value.toFixed(1) : fmt(value));

const document: Record<string, unknown> = existsSync(outPath)
  ? JSON.parse(readFileSync(outPath, 'utf8'))
  : {};
/** What each part of the results file records of the machine and the run. */
export type BenchMachine = ReturnType<typeof machine>;
const machine = () => ({
  cpu: cpus[0]?.model ?? 'unknown CPU',
  cores: cpus.length,
  node: process.version,
  backend: backendDetail,
  loadAverageAtStart: loadAtStart,
  loadAverageAtEnd: loadAverage(),
  startedAt,
  finishedAt: new Date().toISOString(),
  quick,
});
function save(part: string, value: Record<string, unknown>): void {
  document[part] = { ...value, machine: machine() };
  mkdirSync(path.dirname(outPath), { recursive: true });
  // Written aside and renamed: a reader never sees half a file.
  const partial = `${outPath}.${process.pid}`;
  writeFileSync(partial, `${JSON.stringify(document, null, 2)}\n`);
  renameSync(partial, outPath);
}

if (parts.has('secagg')) {
  const models = quick ? ['fedavg-2nn'] : args.models.split(',');
  const clientCounts = quick ? [10] : numbers(args.clients, 'clients');
  const keyOf = (row: SecAggRow) => `${row.model}|${row.clients}|${row.droppedAfterSharing}`;
  // The rows of earlier invocations (other models or client counts) stay, with the load of
  // the invocation that measured them where the row itself lacks it; a row measured again
  // is replaced.
  const earlier = document['secagg'] as { rows?: SecAggRow[]; machine?: BenchMachine } | undefined;
  const rows: SecAggRow[] = (earlier?.rows ?? []).map((row) => ({
    ...row,
    loadAverageBefore: row.loadAverageBefore ?? earlier?.machine?.loadAverageAtStart ?? '',
    loadAverageAfter: row.loadAverageAfter ?? earlier?.machine?.loadAverageAtEnd ?? '',
    measuredAt: row.measuredAt ?? earlier?.machine?.startedAt ?? '',
  }));
  const order = (row: SecAggRow) => [row.parameters, row.clients, row.droppedAfterSharing];
  const byOrder = (a: SecAggRow, b: SecAggRow) => {
    const [x, y] = [order(a), order(b)];
    return (
      (x[0] as number) - (y[0] as number) ||
      (x[1] as number) - (y[1] as number) ||
      (x[2] as number) - (y[2] as number)
    );
  };
  for (const modelName of models) {
    const parameters = parameterCountOf(modelName);
    const onePrgExpansionMs = await prgExpansionMs(parameters);
    for (const n of clientCounts) {
      for (const dropCount of [0, Math.max(1, Math.floor(n / 10))]) {
        const loadAverageBefore = loadAverage();
        const measuredAt = new Date().toISOString();
        const row: SecAggRow = {
          ...(await secAggRound(modelName, parameters, n, dropCount)),
          onePrgExpansionMs,
          loadAverageBefore,
          loadAverageAfter: loadAverage(),
          measuredAt,
        };
        const at = rows.findIndex((other) => keyOf(other) === keyOf(row));
        if (at >= 0) rows[at] = row;
        else rows.push(row);
        rows.sort(byOrder);
        console.log(
          `  ${modelName} n=${n} dropped ${dropCount}: client ${fmt(row.clientMs.share + row.clientMs.mask)} ms (share + mask), coordinator ${fmt(row.coordinatorTotalMs)} ms (finish ${fmt(row.coordinatorMs['finish'] ?? 0)}), in-process round ${fmt(row.inProcessWallMs)} ms; load ${loadAverage()}`,
        );
        save('secagg', { config: SECAGG_CONFIG, rows });
      }
    }
  }
  console.log(
    '\nSecAgg per client (mean over the clients that did the step; bytes are MessagePack packets):\n',
  );
  const clientHeader = [
    'model',
    'n',
    'dropped',
    'up B: advertise / share / masked vector / unmask',
    'down B: advertised / shares / unmask (with acks)',
    'plain FedAvg up B',
    'ms: keys / share / mask / unmask',
    'of the mask ms, PRG: n x one expansion',
    'slowest client ms',
  ];
  printTable(
    clientHeader,
    rows.map((r) => [
      r.model,
      r.clients,
      r.droppedAfterSharing,
      `${fmt(r.clientUpBytes.advertise)} / ${fmt(r.clientUpBytes.share)} / ${fmt(r.clientUpBytes.mask)} / ${fmt(r.clientUpBytes.unmask)}`,
      `${fmt(r.clientDownBytes.share + r.clientDownBytes.advertise)} / ${fmt(r.clientDownBytes.mask)} / ${fmt(r.clientDownBytes.unmask)}`,
      fmt(r.plainUpdateFrameBytes),
      `${ms1(r.clientMs.keys)} / ${ms1(r.clientMs.share)} / ${ms1(r.clientMs.mask)} / ${ms1(r.clientMs.unmask)}`,
      `${r.clients} x ${ms1(r.onePrgExpansionMs)} = ${fmt(r.clients * r.onePrgExpansionMs)}`,
      fmt(r.slowestClientMs),
    ]),
  );
  console.log('\nSecAgg at the coordinator:\n');
  const serverHeader = [
    'model',
    'n',
    't',
    'dropped',
    'in B',
    'out B',
    'plain FedAvg in B',
    'ms: receive all / close steps / finish (unmask)',
    'plain FedAvg fold ms',
    'in-process round ms',
    'max abs error (bound)',
    '1-min load before, after',
  ];
  printTable(
    serverHeader,
    rows.map((r) => {
      const c = r.coordinatorMs;
      const receive =
        (c['receiveAdvertise'] ?? 0) +
        (c['receiveShareKeys'] ?? 0) +
        (c['receiveMaskedInput'] ?? 0) +
        (c['receiveUnmaskResponse'] ?? 0);
      const close =
        (c['closeAdvertising'] ?? 0) + (c['closeSharing'] ?? 0) + (c['closeMasking'] ?? 0);
      return [
        r.model,
        r.clients,
        r.threshold,
        r.droppedAfterSharing,
        fmt(r.coordinatorInBytes),
        fmt(r.coordinatorOutBytes),
        fmt(r.plainUpdateFrameBytes * r.clients),
        `${fmt(receive)} / ${ms1(close)} / ${fmt(c['finish'] ?? 0)}`,
        ms1(r.plainFoldMs),
        fmt(r.inProcessWallMs),
        `${r.maxAbsDeviation.toExponential(1)} (${r.maxAbsErrorBound.toExponential(1)})`,
        `${r.loadAverageBefore.split(' ')[0]}, ${r.loadAverageAfter.split(' ')[0]}`,
      ];
    }),
  );
}

if (parts.has('dp')) {
  const measured = await dpPart();
  const { settings, loops } = measured;
  // By q, then ε (no DP first), then C.
  const runs = mergedRuns(measured.runs, settings).sort(
    (a, b) =>
      a.samplingRate - b.samplingRate ||
      (a.targetEpsilon ?? 0) - (b.targetEpsilon ?? 0) ||
      (a.clipNorm ?? 0) - (b.clipNorm ?? 0),
  );
  save('dp', { settings: settingsOfRuns(settings, runs), runs, loops });
  console.log(
    `\nDP-FedAvg on MNIST, 2NN, ${settings.clients} clients x ${settings.examplesPerClient} IID, ${settings.rounds} rounds, E = ${settings.epochs}, B = ${settings.batchSize}, lr ${settings.learningRate}, δ = ${settings.delta}, test accuracy on ${settings.testImages} images:\n`,
  );
  const epsilonAt = (run: DpRun, index: number) => run.epsilonByRound[index]?.toFixed(3) ?? '—';
  printTable(
    [
      'q',
      'run',
      'C',
      'z',
      'ε after round 1',
      'ε after the last',
      'test accuracy',
      'clipped / updates',
      'wall s',
      '1-min load before, after',
    ],
    runs.map((run) => [
      run.samplingRate,
      run.targetEpsilon === null ? 'FedAvg, no DP' : `DP-FedAvg, target ε = ${run.targetEpsilon}`,
      run.clipNorm ?? '—',
      run.noiseMultiplier?.toFixed(3) ?? '—',
      epsilonAt(run, 0),
      epsilonAt(run, run.epsilonByRound.length - 1),
      `${(run.accuracy * 100).toFixed(2)} %`,
      `${run.clippedUpdates ?? '—'} / ${run.updates}`,
      fmt(run.wallSeconds),
      `${run.loadAverageBefore.split(' ')[0]}, ${run.loadAverageAfter.split(' ')[0]}`,
    ]),
  );
  console.log(`training loop: ${loops.join(', ')}`);
}

console.log(
  `\nload average ${loadAtStart} at the start, ${loadAverage()} at the end; ${backendDetail}; wrote ${outPath}`,
);
