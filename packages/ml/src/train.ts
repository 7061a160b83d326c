import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { createRng } from '@tessera/data';
import { ErrorCode, TesseraError } from '@tessera/protocol';

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
}

export interface TrainResult {
  /** Mean training loss over the last epoch (weighted by batch size). */
  loss: number;
  /** Training accuracy over the last epoch, measured on the batches as they trained. */
  accuracy: number;
  numExamples: number;
  durationMs: number;
  samplesPerSecond: number;
}

export interface EvaluationResult {
  loss: number;
  accuracy: number;
  numExamples: number;
}

/** Keras' clip for the log of softmax outputs: keeps log(0) out of the loss and gradient. */
const PROBABILITY_EPSILON = 1e-7;

function invalid(message: string): TesseraError {
  return new TesseraError(ErrorCode.INVALID_ARGUMENT, message);
}

const hasSetImmediate = typeof globalThis.setImmediate === 'function';
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

/** Mean categorical cross-entropy of softmax outputs against one-hot targets. */
function crossEntropy(probabilities: tf.Tensor, oneHot: tf.Tensor): tf.Scalar {
  const clipped = tf.clipByValue(probabilities, PROBABILITY_EPSILON, 1 - PROBABILITY_EPSILON);
  return tf.neg(tf.mean(tf.sum(tf.mul(oneHot, tf.log(clipped)), -1))) as tf.Scalar;
}

function countCorrect(probabilities: tf.Tensor, oneHot: tf.Tensor): tf.Scalar {
  return tf.sum(tf.cast(tf.equal(tf.argMax(probabilities, -1), tf.argMax(oneHot, -1)), 'float32'));
}

/**
 * Reusable host buffers for one batch: each batch is gathered into the same memory
 * rather than allocating count-sized arrays per step.
 */
class BatchBuilder {
  private readonly features: Float32Array;
  private readonly oneHot: Float32Array;

  constructor(
    private readonly data: TrainingData,
    private readonly geometry: ModelGeometry,
    batchSize: number,
  ) {
    this.features = new Float32Array(batchSize * geometry.featureSize);
    this.oneHot = new Float32Array(batchSize * geometry.numClasses);
  }

  /**
   * Tensors for the examples order[start..start+size) (start..start+size when order is
   * null); the caller disposes them.
   */
  build(
    order: ArrayLike<number> | null,
    start: number,
    size: number,
  ): { xs: tf.Tensor; ys: tf.Tensor } {
    const { featureSize, numClasses, exampleShape } = this.geometry;
    this.oneHot.fill(0, 0, size * numClasses);
    for (let i = 0; i < size; i++) {
      const example = order === null ? start + i : (order[start + i] ?? 0);
      this.features.set(
        this.data.x.subarray(example * featureSize, (example + 1) * featureSize),
        i * featureSize,
      );
      this.oneHot[i * numClasses + (this.data.y[example] ?? 0)] = 1;
    }
    // tf.tensor copies on wasm and keeps the array on cpu; either way the tensors are
    // disposed before the buffers are refilled for the next batch.
    return {
      xs: tf.tensor(this.features.subarray(0, size * featureSize), [size, ...exampleShape]),
      ys: tf.tensor2d(this.oneHot.subarray(0, size * numClasses), [size, numClasses]),
    };
  }
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

  const started = performance.now();
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
  try {
    for (let epoch = 0; epoch < epochs; epoch++) {
      for (let i = 0; i < order.length; i++) order[i] = i;
      createRng(options.seed + epoch).shuffle(order);
      epochLossSum = 0;
      epochCorrect = 0;
      for (let batch = 0; batch < batches; batch++) {
        const start = batch * batchSize;
        const size = Math.min(batchSize, data.count - start);
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
          epochLossSum += (kept.loss?.dataSync()[0] ?? Number.NaN) * size;
          epochCorrect += kept.correct?.dataSync()[0] ?? 0;
        } finally {
          xs.dispose();
          ys.dispose();
          kept.loss?.dispose();
          kept.correct?.dispose();
        }
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
  } finally {
    optimizer.dispose();
  }
  const durationMs = performance.now() - started;
  return {
    loss: epochLossSum / data.count,
    accuracy: epochCorrect / data.count,
    numExamples: data.count,
    durationMs,
    samplesPerSecond: durationMs > 0 ? (epochs * data.count * 1000) / durationMs : 0,
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
    try {
      tf.tidy(() => {
        const probabilities = model.predict(xs) as tf.Tensor;
        lossSum += (crossEntropy(probabilities, ys).dataSync()[0] ?? Number.NaN) * size;
        correct += countCorrect(probabilities, ys).dataSync()[0] ?? 0;
      });
    } finally {
      xs.dispose();
      ys.dispose();
    }
    await yieldToEventLoop();
  }
  return { loss: lossSum / data.count, accuracy: correct / data.count, numExamples: data.count };
}
