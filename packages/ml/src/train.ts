import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { createRng } from '@tessera/data';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { countCorrect, crossEntropy } from './losses.js';
import { NativeTrainer, planNativeTraining } from './native-training.js';
import { installedOpenblasAddon, openblasKernelsInstalled } from './openblas-kernels.js';

/** Labelled examples, features flat and row-major (count * featureSize). */
export interface TrainingData {
  x: Float32Array;
  y: Uint8Array;
  count: number;
}

export interface TrainProgress {
  /** 1-based. */
  epoch: number;
  epochs: number;
  /** 1-based, within the epoch. */
  batch: number;
  batches: number;
  /** Mean loss of the epoch's batches so far. */
  loss: number;
}

export interface TrainOptions {
  epochs: number;
  batchSize: number;
  learningRate: number;
  /**
   * Seeds the per-epoch shuffles (epoch e uses seed + e). Give each round and client its
   * own seed, or every round sees the same batch order.
   */
  seed: number;
  onProgress?: (progress: TrainProgress) => void;
  /**
   * Give the event loop a turn every this many batches, so that sockets, timers and
   * heartbeats in the same thread keep running during training. Default: every batch
   * where setImmediate exists (Node: it costs microseconds), every 4 elsewhere (browsers
   * clamp setTimeout(0) to 4 ms).
   */
  yieldEveryBatches?: number;
  /**
   * Data-parallel training (Node, wasm and cpu backends): split each batch across this
   * many threads (this one and worker_threads), average the gradients, take the same SGD
   * step; equal to single-threaded SGD up to float rounding. 1 (default): this thread only.
   * 'auto' uses the cores that are idle now, for batches large enough to pay (see
   * chooseParticipants): opt-in, because it makes the thread count, and so the float
   * rounding of an update, depend on the machine's load.
   */
  workers?: number | 'auto';
  /**
   * Which loop trains. 'auto' (default): the native loop (native-training.ts: oneDNN and
   * OpenBLAS kernels called directly, no tfjs tape) where the 'openblas' backend is
   * selected, one thread trains and the model is one it supports; the tfjs loop
   * (optimizer.minimize) otherwise. 'tfjs': always the tfjs loop. 'native': the native
   * loop, or an error that says why it cannot. Both compute the same SGD step up to float
   * rounding.
   */
  loop?: TrainingLoop | 'auto';
}

export type TrainingLoop = 'native' | 'tfjs';

export interface TrainResult {
  /** Mean training loss over the last epoch (weighted by batch size). */
  loss: number;
  /** Training accuracy over the last epoch, measured on the batches as they trained. */
  accuracy: number;
  numExamples: number;
  durationMs: number;
  samplesPerSecond: number;
  /** Threads that trained (1 unless data-parallel). */
  workers: number;
  /** The loop that trained (see TrainOptions.loop). */
  loop: TrainingLoop;
}

export interface EvaluationResult {
  loss: number;
  accuracy: number;
  numExamples: number;
}

function invalid(message: string): TesseraError {
  return new TesseraError(ErrorCode.INVALID_ARGUMENT, message);
}

const hasSetImmediate = typeof globalThis.setImmediate === 'function';
const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';
const DEFAULT_YIELD_EVERY_BATCHES = hasSetImmediate ? 1 : 4;

/** setImmediate where it exists (Node): setTimeout(0) waits >= 1 ms there, 4 ms nested in browsers. */
const yieldToEventLoop: () => Promise<void> = hasSetImmediate
  ? () => new Promise((resolve) => globalThis.setImmediate(resolve))
  : () => new Promise((resolve) => setTimeout(resolve, 0));

interface ModelGeometry {
  /** Shape of one example, e.g. [784] or [28, 28, 1]. */
  exampleShape: number[];
  featureSize: number;
  numClasses: number;
}

function modelGeometry(model: LayersModel, where: string): ModelGeometry {
  const inputShape = model.inputs[0]?.shape;
  const outputShape = model.outputs[0]?.shape;
  const exampleShape = inputShape?.slice(1) ?? [];
  const numClasses = outputShape?.[outputShape.length - 1];
  if (
    exampleShape.length === 0 ||
    exampleShape.some((dimension) => typeof dimension !== 'number') ||
    typeof numClasses !== 'number'
  ) {
    throw invalid(`${where}: model '${model.name}' needs a fixed input shape and class count`);
  }
  const fixedShape = exampleShape as number[];
  return {
    exampleShape: fixedShape,
    featureSize: fixedShape.reduce((product, dimension) => product * dimension, 1),
    numClasses,
  };
}

function validateData(data: TrainingData, geometry: ModelGeometry, where: string): void {
  const { count } = data;
  if (!Number.isInteger(count) || count < 0) {
    throw invalid(`${where}: count must be a non-negative integer, got ${String(count)}`);
  }
  if (data.x.length !== count * geometry.featureSize) {
    throw invalid(
      `${where}: x has ${data.x.length} values, expected ${count} examples x ${geometry.featureSize} features = ${count * geometry.featureSize}`,
    );
  }
  if (data.y.length !== count) {
    throw invalid(`${where}: y has ${data.y.length} labels for ${count} examples`);
  }
  for (let i = 0; i < count; i++) {
    const label = data.y[i] ?? 0;
    if (label >= geometry.numClasses) {
      throw invalid(
        `${where}: label ${label} of example ${i} is outside 0..${geometry.numClasses - 1}`,
      );
    }
  }
}

function positiveInteger(value: number, name: string, where: string): number {
  if (!Number.isInteger(value) || value < 1) {
    throw invalid(`${where}: ${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

/**
 * Reusable host buffers for one batch: each batch is gathered into the same memory
 * rather than allocating count-sized arrays per step.
 */
class BatchBuilder {
  private readonly features: Float32Array;
  private readonly oneHot: Float32Array;
  private readonly labels: Uint8Array;

  constructor(
    private readonly data: TrainingData,
    private readonly geometry: ModelGeometry,
    batchSize: number,
  ) {
    this.features = new Float32Array(batchSize * geometry.featureSize);
    this.oneHot = new Float32Array(batchSize * geometry.numClasses);
    this.labels = new Uint8Array(batchSize);
  }

  /**
   * The examples order[start..start+size) (start..start+size when order is null) in the
   * shared buffers: features, one-hot labels (row-major) and class indices, valid until
   * the next call.
   */
  fill(
    order: ArrayLike<number> | null,
    start: number,
    size: number,
  ): { features: Float32Array; oneHot: Float32Array; labels: Uint8Array } {
    const { featureSize, numClasses } = this.geometry;
    this.oneHot.fill(0, 0, size * numClasses);
    for (let i = 0; i < size; i++) {
      const example = order === null ? start + i : (order[start + i] ?? 0);
      this.features.set(
        this.data.x.subarray(example * featureSize, (example + 1) * featureSize),
        i * featureSize,
      );
      const label = this.data.y[example] ?? 0;
      this.oneHot[i * numClasses + label] = 1;
      this.labels[i] = label;
    }
    return {
      features: this.features.subarray(0, size * featureSize),
      oneHot: this.oneHot.subarray(0, size * numClasses),
      labels: this.labels.subarray(0, size),
    };
  }

  /** The same examples as tensors; the caller disposes them. */
  build(
    order: ArrayLike<number> | null,
    start: number,
    size: number,
  ): { xs: tf.Tensor; ys: tf.Tensor } {
    const { exampleShape, numClasses } = this.geometry;
    const { features, oneHot } = this.fill(order, start, size);
    // tf.tensor copies on wasm and keeps the array on cpu; either way the tensors are
    // disposed before the buffers are refilled for the next batch.
    return {
      xs: tf.tensor(features, [size, ...exampleShape]),
      ys: tf.tensor2d(oneHot, [size, numClasses]),
    };
  }
}

/**
 * Smallest batch for which 'auto' trains data-parallel. Each step shares the gradients
 * (a copy and a sum of every parameter in each thread, a few ms for fedavg-cnn), which
 * small batches do not earn back. An estimate: the shared 2-core machine it was built on
 * had no idle core, so bench/train-speed.ts could not measure the crossover there.
 */
export const AUTO_PARALLEL_MIN_BATCH = 32;

/** How many threads train: 1, or more for data-parallel training (see TrainOptions.workers). */
async function chooseParticipants(
  requested: number | 'auto' | undefined,
  batchSize: number,
  where: string,
): Promise<number> {
  if (requested === undefined) return 1;
  if (requested !== 'auto') {
    const workers = positiveInteger(requested, 'workers', where);
    if (workers > 1 && !isNode) {
      throw invalid(`${where}: workers > 1 (data-parallel training) is available in Node only`);
    }
    return workers;
  }
  // Not with 'openblas' either: its products use the cores already.
  if (!isNode || tf.getBackend() !== 'wasm' || openblasKernelsInstalled()) return 1;
  if (batchSize < AUTO_PARALLEL_MIN_BATCH) return 1;
  if ((await import('./data-parallel.js')).trainingWorkersBusy()) return 1;
  const os = await import('node:os');
  // Only cores that are idle now: a thread without a core of its own slows every step
  // (measured: 2 threads on 2 cores under a load of 9 trained at half the speed of 1).
  const idleCores = Math.round(os.availableParallelism() - (os.loadavg()[0] ?? 0));
  return Math.max(1, Math.min(idleCores, Math.floor(batchSize / 16)));
}

const TRAINING_LOOPS: readonly (TrainingLoop | 'auto')[] = ['auto', 'native', 'tfjs'];

/** The native loop for this round where options.loop allows it and it can run; see TrainOptions.loop. */
function chooseNativeTrainer(
  model: LayersModel,
  requested: TrainingLoop | 'auto' | undefined,
  participants: number,
  batchSize: number,
  where: string,
): NativeTrainer | undefined {
  const loop = requested ?? 'auto';
  if (!TRAINING_LOOPS.includes(loop)) {
    throw invalid(
      `${where}: loop must be one of ${TRAINING_LOOPS.join(', ')}, got ${String(loop)}`,
    );
  }
  if (loop === 'tfjs') return undefined;
  const addon = installedOpenblasAddon();
  let reason: string;
  if (addon === undefined) {
    reason = `it runs on the 'openblas' backend only (the backend is ${tf.getBackend()})`;
  } else if (participants > 1) {
    reason = 'data-parallel workers train in the tfjs loop';
  } else {
    const planned = planNativeTraining(model);
    if (planned.ok) return new NativeTrainer(addon, planned.plan, batchSize);
    reason = planned.reason;
  }
  if (loop === 'native') throw invalid(`${where}: the native loop cannot train here: ${reason}`);
  return undefined;
}

/**
 * Local training for one round: plain minibatch SGD on softmax cross-entropy, a fresh
 * seeded shuffle every epoch, the last partial batch included. A custom loop rather
 * than model.fit: it reuses the batch buffers, keeps the tensor count flat, and yields to
 * the event loop so a client's connection stays alive while it trains.
 */
export async function trainLocal(
  model: LayersModel,
  data: TrainingData,
  options: TrainOptions,
): Promise<TrainResult> {
  const where = 'trainLocal';
  const geometry = modelGeometry(model, where);
  validateData(data, geometry, where);
  if (data.count === 0) throw invalid(`${where}: no examples to train on`);
  const epochs = positiveInteger(options.epochs, 'epochs', where);
  const batchSize = positiveInteger(options.batchSize, 'batchSize', where);
  const yieldEvery = positiveInteger(
    options.yieldEveryBatches ?? DEFAULT_YIELD_EVERY_BATCHES,
    'yieldEveryBatches',
    where,
  );
  if (!(options.learningRate > 0) || !Number.isFinite(options.learningRate)) {
    throw invalid(
      `${where}: learningRate must be a positive number, got ${String(options.learningRate)}`,
    );
  }
  if (!Number.isSafeInteger(options.seed)) {
    throw invalid(`${where}: seed must be a safe integer, got ${String(options.seed)}`);
  }

  const participants = await chooseParticipants(options.workers, batchSize, where);

  const started = performance.now();
  // Inside the timing: the native loop copies the weights in here, tfjs builds its optimizer below.
  const native = chooseNativeTrainer(model, options.loop, participants, batchSize, where);
  const parallel =
    participants > 1
      ? await (await import('./data-parallel.js')).DataParallelTrainer.create(
          model,
          participants,
          options.learningRate,
        )
      : undefined;
  const optimizer = tf.train.sgd(options.learningRate);
  // Only this model's variables: by default tfjs differentiates every trainable variable
  // alive in the process, including other models'.
  const variables = model.trainableWeights.map((weight) => weight.read() as tf.Variable);
  const batches = Math.ceil(data.count / batchSize);
  const batchBuilder = new BatchBuilder(data, geometry, batchSize);
  const order = new Uint32Array(data.count);
  let epochLossSum = 0;
  let epochCorrect = 0;
  let batchesSinceYield = 0;

  /** One SGD step on the examples order[start..start+size): the batch's mean loss and correct count. */
  const step = async (start: number, size: number): Promise<{ loss: number; correct: number }> => {
    if (native !== undefined) {
      const { features, labels } = batchBuilder.fill(order, start, size);
      return native.step(features, labels, size, options.learningRate);
    }
    if (parallel !== undefined) {
      const { features, oneHot } = batchBuilder.fill(order, start, size);
      return parallel.step(features, oneHot, size);
    }
    const { xs, ys } = batchBuilder.build(order, start, size);
    const kept: { correct?: tf.Scalar; loss?: tf.Scalar | null } = {};
    try {
      kept.loss = optimizer.minimize(
        () => {
          const probabilities = model.apply(xs, { training: true }) as tf.Tensor;
          // Kept out of minimize's tidy so the accuracy costs no second forward pass.
          kept.correct = tf.keep(countCorrect(probabilities, ys));
          return crossEntropy(probabilities, ys);
        },
        true,
        variables,
      );
      // Asynchronous reads: the WebGPU backend cannot read synchronously in Node (its
      // readSync draws through an OffscreenCanvas) and stalls the page in a browser.
      const [loss, correct] = await Promise.all([kept.loss?.data(), kept.correct?.data()]);
      return { loss: loss?.[0] ?? Number.NaN, correct: correct?.[0] ?? 0 };
    } finally {
      xs.dispose();
      ys.dispose();
      kept.loss?.dispose();
      kept.correct?.dispose();
    }
  };

  try {
    for (let epoch = 0; epoch < epochs; epoch++) {
      for (let i = 0; i < order.length; i++) order[i] = i;
      createRng(options.seed + epoch).shuffle(order);
      epochLossSum = 0;
      epochCorrect = 0;
      for (let batch = 0; batch < batches; batch++) {
        const start = batch * batchSize;
        const size = Math.min(batchSize, data.count - start);
        const { loss, correct } = await step(start, size);
        epochLossSum += loss * size;
        epochCorrect += correct;
        options.onProgress?.({
          epoch: epoch + 1,
          epochs,
          batch: batch + 1,
          batches,
          loss: epochLossSum / (start + size),
        });
        if (++batchesSinceYield >= yieldEvery) {
          batchesSinceYield = 0;
          await yieldToEventLoop();
        }
      }
    }
    native?.finish();
  } finally {
    optimizer.dispose();
    parallel?.release();
  }
  const durationMs = performance.now() - started;
  return {
    loss: epochLossSum / data.count,
    accuracy: epochCorrect / data.count,
    numExamples: data.count,
    durationMs,
    samplesPerSecond: durationMs > 0 ? (epochs * data.count * 1000) / durationMs : 0,
    workers: participants,
    loop: native === undefined ? 'tfjs' : 'native',
  };
}

/**
 * Loss and accuracy of `model` on `data`, in batches (inference only). Empty data gives
 * zeros with numExamples 0, which weighs nothing in a federated average.
 */
export async function evaluateModel(
  model: LayersModel,
  data: TrainingData,
  batchSize = 1000,
): Promise<EvaluationResult> {
  const where = 'evaluateModel';
  const geometry = modelGeometry(model, where);
  validateData(data, geometry, where);
  positiveInteger(batchSize, 'batchSize', where);
  if (data.count === 0) return { loss: 0, accuracy: 0, numExamples: 0 };
  const batchBuilder = new BatchBuilder(data, geometry, Math.min(batchSize, data.count));
  let lossSum = 0;
  let correct = 0;
  for (let start = 0; start < data.count; start += batchSize) {
    const size = Math.min(batchSize, data.count - start);
    const { xs, ys } = batchBuilder.build(null, start, size);
    let results: tf.Scalar[] = [];
    try {
      results = tf.tidy(() => {
        const probabilities = model.predict(xs) as tf.Tensor;
        return [crossEntropy(probabilities, ys), countCorrect(probabilities, ys)];
      });
      const [batchLoss, batchCorrect] = await Promise.all(results.map((r) => r.data()));
      lossSum += (batchLoss?.[0] ?? Number.NaN) * size;
      correct += batchCorrect?.[0] ?? 0;
    } finally {
      xs.dispose();
      ys.dispose();
      for (const result of results) result.dispose();
    }
    await yieldToEventLoop();
  }
  return { loss: lossSum / data.count, accuracy: correct / data.count, numExamples: data.count };
}
