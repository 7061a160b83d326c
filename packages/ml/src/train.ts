import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel, LayerVariable } from '@tensorflow/tfjs-layers';
import { createRng } from '@tessera/data';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import {
  emptyMetricSums,
  exactAuc,
  type MetricSums,
  type MetricValues,
  metricValues,
  scoreBin,
  type TaskDefinition,
  type TaskLoss,
  type TaskMetric,
} from '@tessera/tasks';
import { batchStatistics, lossFunction } from './losses.js';
import { type NativeProximal, NativeTrainer, planNativeTraining } from './native-training.js';
import { installedOpenblasAddon, openblasKernelsInstalled } from './openblas-kernels.js';

/**
 * Labelled examples, features flat and row-major (count * featureSize). y: the class index
 * of each example (multiclass: 0..classes-1; binary: 0 negative, 1 positive), or its target
 * value (regression).
 */
export interface TrainingData<Labels extends LabelArray = Uint8Array> {
  x: Float32Array;
  y: Labels;
  count: number;
}

/** Class indices (any integer array wide enough for the classes), or regression targets. */
export type LabelArray = Uint8Array | Uint16Array | Int32Array | Float32Array;

/** What training minimises and what it reports: a task's loss and metrics. */
export interface TrainingObjective {
  loss: TaskLoss;
  /** Reported besides the loss, which always is. */
  metrics: readonly TaskMetric[];
}

/** The zoo's objective, and the default: softmax cross-entropy, accuracy. */
export const MNIST_OBJECTIVE: TrainingObjective = {
  loss: 'softmax-cross-entropy',
  metrics: ['accuracy'],
};

export function taskObjective(task: TaskDefinition): TrainingObjective {
  return { loss: task.loss, metrics: task.metrics };
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
   * Seeds the per-epoch shuffles (epoch e uses seed + e) and, in the native loop, the
   * dropout masks (drawn from the seed, the layer and the step). Give each round and client
   * its own seed, or every round sees the same batch order.
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
  /** The loss to minimise and the metrics to report; default MNIST_OBJECTIVE. */
  objective?: TrainingObjective;
  /**
   * FedProx's proximal term (Li et al. 2020): the loss gains μ/2 ||w - anchor||² over the
   * trainable weights, so each step adds μ (w - anchor) to their gradients before the SGD
   * step, in both loops. `anchor`: flat weights in getFlatWeights' layout, the global model
   * the round started from. μ = 0 is plain SGD. The reported loss stays the data loss.
   * Data-parallel workers do not add it: 'auto' trains in one thread, a count > 1 is refused.
   */
  proximal?: ProximalTerm;
  /**
   * SCAFFOLD's correction c − c_i (Karimireddy et al. 2020): flat, in getFlatWeights' layout,
   * added to the gradient of every trainable weight in every step of both loops, so the step
   * is w ← w − lr (g − c_i + c). Constant over the round. Data-parallel workers do not add it.
   */
  gradientCorrection?: Float32Array;
}

export interface ProximalTerm {
  mu: number;
  anchor: Float32Array;
}

export type TrainingLoop = 'native' | 'tfjs';

export interface TrainResult {
  /** Mean training loss over the last epoch (weighted by batch size). */
  loss: number;
  /**
   * Training accuracy over the last epoch, measured on the batches as they trained; 0 for
   * a regression (see metrics).
   */
  accuracy: number;
  /** The objective's loss and metrics over the last epoch, as trained (auc from the histogram). */
  metrics: MetricValues;
  /** The sums they were computed from, to combine with other clients' (see @tessera/tasks). */
  sums: MetricSums;
  numExamples: number;
  durationMs: number;
  samplesPerSecond: number;
  /** Threads that trained (1 unless data-parallel). */
  workers: number;
  /** The loop that trained (see TrainOptions.loop). */
  loop: TrainingLoop;
  /** SGD steps taken (epochs × batches per epoch): SCAFFOLD's K. */
  steps: number;
}

export interface EvaluationResult {
  loss: number;
  /** 0 for a regression (see metrics). */
  accuracy: number;
  numExamples: number;
  /** The objective's loss and metrics on this data; auc exact (rank-based). */
  metrics: MetricValues;
  /** The sums they were computed from, to combine with other clients' (see @tessera/tasks). */
  sums: MetricSums;
}

function invalid(message: string): TesseraError {
  return new TesseraError(ErrorCode.INVALID_ARGUMENT, message);
}

const hasSetImmediate = typeof globalThis.setImmediate === 'function';
const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';
const DEFAULT_YIELD_EVERY_BATCHES = hasSetImmediate ? 1 : 4;

/** setImmediate where it exists (Node): setTimeout(0) waits >= 1 ms there, 4 ms nested in browsers. */
export const yieldToEventLoop: () => Promise<void> = hasSetImmediate
  ? () => new Promise((resolve) => globalThis.setImmediate(resolve))
  : () => new Promise((resolve) => setTimeout(resolve, 0));

/** A model's shapes as the loops and evaluateModel read them (native-evaluation.ts too). */
export interface ModelGeometry {
  /** Shape of one example, e.g. [784] or [28, 28, 1]. */
  exampleShape: number[];
  featureSize: number;
  /** Output units: classes for softmax cross-entropy, 1 otherwise. */
  numClasses: number;
  /** Numbers per example in the target tensor: one-hot classes, or the one 0/1 or value. */
  targetWidth: number;
  loss: TaskLoss;
}

export function modelGeometry(
  model: LayersModel,
  objective: TrainingObjective,
  where: string,
): ModelGeometry {
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
  const { loss } = objective;
  if (loss !== 'softmax-cross-entropy' && numClasses !== 1) {
    throw invalid(
      `${where}: ${loss} needs a model with one output unit, '${model.name}' has ${numClasses}`,
    );
  }
  const fixedShape = exampleShape as number[];
  return {
    exampleShape: fixedShape,
    featureSize: fixedShape.reduce((product, dimension) => product * dimension, 1),
    numClasses,
    targetWidth: loss === 'softmax-cross-entropy' ? numClasses : 1,
    loss,
  };
}

export function validateData(
  data: TrainingData<LabelArray>,
  geometry: ModelGeometry,
  where: string,
): void {
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
  const { loss, numClasses } = geometry;
  for (let i = 0; i < count; i++) {
    const label = data.y[i] ?? 0;
    if (loss === 'mean-squared-error') {
      if (!Number.isFinite(label)) {
        throw invalid(`${where}: target ${label} of example ${i} is not a finite number`);
      }
    } else if (loss === 'sigmoid-binary-cross-entropy') {
      if (label !== 0 && label !== 1) {
        throw invalid(`${where}: label ${label} of example ${i} is not 0 or 1 (binary)`);
      }
    } else if (!Number.isInteger(label) || label < 0 || label >= numClasses) {
      throw invalid(`${where}: label ${label} of example ${i} is outside 0..${numClasses - 1}`);
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
  private readonly targets: Float32Array;
  private readonly labels: Int32Array;

  constructor(
    private readonly data: TrainingData<LabelArray>,
    private readonly geometry: ModelGeometry,
    batchSize: number,
  ) {
    this.features = new Float32Array(batchSize * geometry.featureSize);
    this.targets = new Float32Array(batchSize * geometry.targetWidth);
    this.labels = new Int32Array(batchSize);
  }

  /**
   * The examples order[start..start+size) (start..start+size when order is null) in the
   * shared buffers: features, targets (row-major: one-hot classes for softmax
   * cross-entropy, else the label or value) and class indices (the native loop's labels,
   * softmax only), valid until the next call.
   */
  fill(
    order: ArrayLike<number> | null,
    start: number,
    size: number,
  ): { features: Float32Array; targets: Float32Array; labels: Int32Array } {
    const { featureSize, targetWidth, loss } = this.geometry;
    const oneHot = loss === 'softmax-cross-entropy';
    if (oneHot) this.targets.fill(0, 0, size * targetWidth);
    for (let i = 0; i < size; i++) {
      const example = order === null ? start + i : (order[start + i] ?? 0);
      this.features.set(
        this.data.x.subarray(example * featureSize, (example + 1) * featureSize),
        i * featureSize,
      );
      const label = this.data.y[example] ?? 0;
      if (oneHot) {
        this.targets[i * targetWidth + label] = 1;
        this.labels[i] = label;
      } else {
        this.targets[i] = label;
      }
    }
    return {
      features: this.features.subarray(0, size * featureSize),
      targets: this.targets.subarray(0, size * targetWidth),
      labels: this.labels.subarray(0, size),
    };
  }

  /** The same examples as tensors; the caller disposes them. */
  build(
    order: ArrayLike<number> | null,
    start: number,
    size: number,
  ): { xs: tf.Tensor; ys: tf.Tensor; targets: Float32Array } {
    const { exampleShape, targetWidth } = this.geometry;
    const { features, targets } = this.fill(order, start, size);
    // tf.tensor copies on wasm and keeps the array on cpu; either way the tensors are
    // disposed before the buffers are refilled for the next batch.
    return {
      xs: tf.tensor(features, [size, ...exampleShape]),
      ys: tf.tensor2d(targets, [size, targetWidth]),
      targets,
    };
  }
}

/** A batch's contribution: its mean loss, batchStatistics' values, and its scores (auc). */
export interface BatchOutcome {
  size: number;
  loss: number;
  statistics: ArrayLike<number>;
  /** The positive class's probabilities and the batch's 0/1 targets, where auc is reported. */
  scores?: { probabilities: ArrayLike<number>; targets: ArrayLike<number> };
}

/** The objective's metric sums over batches, plus every score where a local exact AUC is wanted. */
export class MetricAccumulator {
  readonly sums: MetricSums;
  private correct = 0;
  private readonly scores: number[] | undefined;
  private readonly scoreTargets: number[] | undefined;

  constructor(
    private readonly objective: TrainingObjective,
    keepScores: boolean,
  ) {
    this.sums = emptyMetricSums(objective.metrics);
    const keep = keepScores && this.sums.scoreHistogram !== undefined;
    this.scores = keep ? [] : undefined;
    this.scoreTargets = keep ? [] : undefined;
  }

  /** Wants the batch's scores (for the auc histogram). */
  get needsScores(): boolean {
    return this.sums.scoreHistogram !== undefined;
  }

  add(batch: BatchOutcome): void {
    const { sums } = this;
    sums.examples += batch.size;
    sums.lossSum += batch.loss * batch.size;
    if (this.objective.loss === 'mean-squared-error') {
      if (sums.absoluteErrorSum !== undefined) sums.absoluteErrorSum += batch.statistics[0] ?? 0;
      if (sums.squaredErrorSum !== undefined) sums.squaredErrorSum += batch.statistics[1] ?? 0;
    } else {
      this.correct += batch.statistics[0] ?? 0;
      if (sums.correct !== undefined) sums.correct = this.correct;
    }
    const histogram = sums.scoreHistogram;
    if (histogram !== undefined && batch.scores !== undefined) {
      const { probabilities, targets } = batch.scores;
      for (let i = 0; i < batch.size; i++) {
        const score = probabilities[i] ?? 0;
        const bins = targets[i] === 1 ? histogram.positive : histogram.negative;
        const bin = scoreBin(score);
        bins[bin] = (bins[bin] as number) + 1;
        this.scores?.push(score);
        this.scoreTargets?.push(targets[i] ?? 0);
      }
    }
  }

  /** Correct predictions over the examples so far (0 for a regression). */
  /**
   * What the batches added so far give as an evaluation of `numExamples` examples (none:
   * loss and accuracy 0). evaluateModel and the native evaluator both end with it.
   */
  evaluation(numExamples: number): EvaluationResult {
    const values = this.values();
    return {
      loss: numExamples === 0 ? 0 : values.loss,
      accuracy: numExamples === 0 ? 0 : this.accuracy(),
      numExamples,
      metrics: values,
      sums: this.sums,
    };
  }

  accuracy(): number {
    return this.sums.examples > 0 ? this.correct / this.sums.examples : 0;
  }

  values(): MetricValues {
    const exact =
      this.scores !== undefined && this.scoreTargets !== undefined
        ? { auc: exactAuc(this.scores, this.scoreTargets) }
        : {};
    return metricValues(this.sums, this.objective.metrics, exact);
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
  loss: TaskLoss,
  adjustsGradients: boolean,
  where: string,
): Promise<number> {
  if (requested === undefined) return 1;
  if (requested !== 'auto') {
    const workers = positiveInteger(requested, 'workers', where);
    // The replicas take plain SGD steps; one without the proximal term would be FedAvg's.
    if (workers > 1 && adjustsGradients) {
      throw invalid(
        `${where}: workers > 1 (data-parallel training) does not add the proximal term (FedProx) or the control-variate correction (SCAFFOLD)`,
      );
    }
    if (workers > 1 && !isNode) {
      throw invalid(`${where}: workers > 1 (data-parallel training) is available in Node only`);
    }
    // The workers' replicas (data-parallel-replica.ts) compute softmax cross-entropy.
    if (workers > 1 && loss !== 'softmax-cross-entropy') {
      throw invalid(
        `${where}: workers > 1 (data-parallel training) trains softmax cross-entropy only, not ${loss}`,
      );
    }
    return workers;
  }
  if (loss !== 'softmax-cross-entropy' || adjustsGradients) return 1;
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
  geometry: ModelGeometry,
  proximal: NativeProximal | undefined,
  correction: ReadonlyMap<LayerVariable, Float32Array> | undefined,
  seed: number,
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
    const planned = planNativeTraining(model, geometry.loss);
    if (planned.ok) {
      return new NativeTrainer(addon, planned.plan, batchSize, {
        ...(proximal === undefined ? {} : { proximal }),
        ...(correction === undefined ? {} : { correction }),
        seed,
      });
    }
    reason = planned.reason;
  }
  if (loop === 'native') throw invalid(`${where}: the native loop cannot train here: ${reason}`);
  return undefined;
}

/**
 * The proximal term checked against the model: μ finite and >= 0, the anchor one value per
 * parameter and finite; each trainable variable's part of the anchor (views, not copies).
 * Undefined for μ = 0: the round is plain SGD, computed as without the option.
 */
function proximalAnchors(
  model: LayersModel,
  proximal: ProximalTerm | undefined,
  where: string,
): { mu: number; anchors: Map<LayerVariable, Float32Array> } | undefined {
  if (proximal === undefined) return undefined;
  const { mu, anchor } = proximal;
  if (!(mu >= 0) || !Number.isFinite(mu)) {
    throw invalid(`${where}: proximal.mu must be a finite number >= 0, got ${String(mu)}`);
  }
  if (mu === 0) return undefined;
  return { mu, anchors: byTrainableVariable(model, anchor, 'proximal.anchor', where) };
}

/**
 * A flat vector in getFlatWeights' layout, checked (one finite value per parameter), as each
 * trainable variable's part of it (views, not copies).
 */
function byTrainableVariable(
  model: LayersModel,
  flat: Float32Array,
  name: string,
  where: string,
): Map<LayerVariable, Float32Array> {
  let total = 0;
  for (const variable of model.weights) total += variable.read().size;
  if (!(flat instanceof Float32Array) || flat.length !== total) {
    throw new TesseraError(
      ErrorCode.WEIGHTS_LENGTH_MISMATCH,
      `${where}: ${name} has ${flat?.length} values; '${model.name}' has ${total} parameters`,
      { expected: total, got: flat?.length },
    );
  }
  const parts = new Map<LayerVariable, Float32Array>();
  let offset = 0;
  for (const variable of model.weights) {
    const size = variable.read().size;
    const values = flat.subarray(offset, offset + size);
    const bad = values.findIndex((value) => !Number.isFinite(value));
    if (bad >= 0) {
      throw new TesseraError(
        ErrorCode.NON_FINITE_WEIGHTS,
        `${where}: ${name}[${offset + bad}] is ${values[bad]}`,
        { index: offset + bad },
      );
    }
    if (variable.trainable) parts.set(variable, values);
    offset += size;
  }
  return parts;
}

/**
 * Local training for one round: plain minibatch SGD on the objective's loss (default
 * softmax cross-entropy), a fresh seeded shuffle every epoch, the last partial batch
 * included. A custom loop rather than model.fit: it reuses the batch buffers, keeps the
 * tensor count flat, and yields to the event loop so a client's connection stays alive
 * while it trains.
 */
export async function trainLocal(
  model: LayersModel,
  data: TrainingData<LabelArray>,
  options: TrainOptions,
): Promise<TrainResult> {
  const where = 'trainLocal';
  const objective = options.objective ?? MNIST_OBJECTIVE;
  const geometry = modelGeometry(model, objective, where);
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

  const proximal = proximalAnchors(model, options.proximal, where);
  const correction =
    options.gradientCorrection === undefined
      ? undefined
      : byTrainableVariable(model, options.gradientCorrection, 'gradientCorrection', where);
  const participants = await chooseParticipants(
    options.workers,
    batchSize,
    objective.loss,
    proximal !== undefined || correction !== undefined,
    where,
  );

  const started = performance.now();
  // Inside the timing: the native loop copies the weights in here, tfjs builds its optimizer below.
  const native = chooseNativeTrainer(
    model,
    options.loop,
    participants,
    batchSize,
    geometry,
    proximal,
    correction,
    options.seed,
    where,
  );
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
  // The tfjs loop's copy of the anchor, one tensor per trainable variable (none in the native loop).
  const proximalTensors =
    proximal === undefined || native !== undefined
      ? undefined
      : {
          mu: tf.scalar(proximal.mu),
          anchors: model.trainableWeights.map((weight) =>
            tf.tensor(
              (proximal.anchors.get(weight) as Float32Array).slice(),
              weight.shape as number[],
              'float32',
            ),
          ),
        };
  // The tfjs loop's copy of SCAFFOLD's correction, one tensor per trainable variable.
  const correctionTensors =
    correction === undefined || native !== undefined
      ? undefined
      : model.trainableWeights.map((weight) =>
          tf.tensor(
            (correction.get(weight) as Float32Array).slice(),
            weight.shape as number[],
            'float32',
          ),
        );
  const batches = Math.ceil(data.count / batchSize);
  const batchBuilder = new BatchBuilder(data, geometry, batchSize);
  const order = new Uint32Array(data.count);
  const computeLoss = lossFunction(objective.loss);
  let epochMetrics = new MetricAccumulator(objective, false);
  let epochLossSum = 0;
  let batchesSinceYield = 0;

  /** One SGD step on the examples order[start..start+size): what the batch adds to the metrics. */
  const step = async (start: number, size: number): Promise<BatchOutcome> => {
    if (native !== undefined) {
      const { features, labels, targets } = batchBuilder.fill(order, start, size);
      // Class indices for softmax cross-entropy; the 0/1 or value targets otherwise.
      const classes = objective.loss === 'softmax-cross-entropy';
      const { loss, statistics, probabilities } = native.step(
        features,
        classes ? labels : targets,
        size,
        options.learningRate,
      );
      return {
        size,
        loss,
        statistics,
        ...(probabilities === undefined ? {} : { scores: { probabilities, targets } }),
      };
    }
    if (parallel !== undefined) {
      const { features, targets } = batchBuilder.fill(order, start, size);
      const { loss, correct } = await parallel.step(features, targets, size);
      return { size, loss, statistics: [correct] };
    }
    const { xs, ys, targets } = batchBuilder.build(order, start, size);
    const kept: { statistics?: tf.Tensor; outputs?: tf.Tensor; loss?: tf.Scalar | null } = {};
    const dataLoss = () => {
      const outputs = model.apply(xs, { training: true }) as tf.Tensor;
      // Kept out of minimize's tidy so the metrics cost no second forward pass.
      kept.statistics = tf.keep(batchStatistics(objective.loss, outputs, ys));
      if (epochMetrics.needsScores) kept.outputs = tf.keep(outputs);
      return computeLoss(outputs, ys) as tf.Scalar;
    };
    try {
      if (proximalTensors === undefined && correctionTensors === undefined) {
        kept.loss = optimizer.minimize(dataLoss, true, variables);
      } else {
        // The data loss's gradients, plus μ (w - anchor): the gradient of μ/2 ||w - anchor||²,
        // or plus SCAFFOLD's c − c_i.
        const { value, grads } = optimizer.computeGradients(dataLoss, variables);
        kept.loss = value;
        const adjusted = tf.tidy(() =>
          variables.map((variable, i) => {
            let gradient = grads[variable.name] as tf.Tensor;
            if (proximalTensors !== undefined) {
              const { mu, anchors } = proximalTensors;
              gradient = tf.add(gradient, tf.mul(tf.sub(variable, anchors[i] as tf.Tensor), mu));
            }
            if (correctionTensors !== undefined) {
              gradient = tf.add(gradient, correctionTensors[i] as tf.Tensor);
            }
            return { name: variable.name, tensor: gradient };
          }),
        );
        tf.dispose(grads);
        optimizer.applyGradients(adjusted);
        tf.dispose(adjusted.map((named) => named.tensor));
      }
      // Asynchronous reads: the WebGPU backend cannot read synchronously in Node (its
      // readSync draws through an OffscreenCanvas) and stalls the page in a browser.
      const [loss, statistics, probabilities] = await Promise.all([
        kept.loss?.data(),
        kept.statistics?.data(),
        kept.outputs?.data(),
      ]);
      return {
        size,
        loss: loss?.[0] ?? Number.NaN,
        statistics: statistics ?? [],
        ...(probabilities === undefined ? {} : { scores: { probabilities, targets } }),
      };
    } finally {
      xs.dispose();
      ys.dispose();
      kept.loss?.dispose();
      kept.statistics?.dispose();
      kept.outputs?.dispose();
    }
  };

  try {
    for (let epoch = 0; epoch < epochs; epoch++) {
      for (let i = 0; i < order.length; i++) order[i] = i;
      createRng(options.seed + epoch).shuffle(order);
      epochLossSum = 0;
      epochMetrics = new MetricAccumulator(objective, false);
      for (let batch = 0; batch < batches; batch++) {
        const start = batch * batchSize;
        const size = Math.min(batchSize, data.count - start);
        const outcome = await step(start, size);
        epochMetrics.add(outcome);
        epochLossSum += outcome.loss * size;
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
    if (proximalTensors !== undefined) tf.dispose([proximalTensors.mu, ...proximalTensors.anchors]);
    if (correctionTensors !== undefined) tf.dispose(correctionTensors);
  }
  const durationMs = performance.now() - started;
  return {
    loss: epochLossSum / data.count,
    accuracy: epochMetrics.accuracy(),
    metrics: epochMetrics.values(),
    sums: epochMetrics.sums,
    numExamples: data.count,
    durationMs,
    samplesPerSecond: durationMs > 0 ? (epochs * data.count * 1000) / durationMs : 0,
    workers: participants,
    loop: native === undefined ? 'tfjs' : 'native',
    steps: epochs * batches,
  };
}

/**
 * Loss and metrics of `model` on `data` for the objective (default MNIST_OBJECTIVE), in
 * batches (inference only); a local auc is exact (rank-based), its sums carry the histogram
 * that combines across clients. Empty data gives zeros with numExamples 0, which weighs
 * nothing in a federated average.
 */
export async function evaluateModel(
  model: LayersModel,
  data: TrainingData<LabelArray>,
  batchSize = 1000,
  objective: TrainingObjective = MNIST_OBJECTIVE,
): Promise<EvaluationResult> {
  const where = 'evaluateModel';
  const geometry = modelGeometry(model, objective, where);
  validateData(data, geometry, where);
  positiveInteger(batchSize, 'batchSize', where);
  const metrics = new MetricAccumulator(objective, true);
  if (data.count === 0) {
    return metrics.evaluation(0);
  }
  const computeLoss = lossFunction(objective.loss);
  const batchBuilder = new BatchBuilder(data, geometry, Math.min(batchSize, data.count));
  for (let start = 0; start < data.count; start += batchSize) {
    const size = Math.min(batchSize, data.count - start);
    const { xs, ys, targets } = batchBuilder.build(null, start, size);
    let results: tf.Tensor[] = [];
    try {
      results = tf.tidy(() => {
        const outputs = model.predict(xs) as tf.Tensor;
        const computed = [computeLoss(outputs, ys), batchStatistics(objective.loss, outputs, ys)];
        return metrics.needsScores ? [...computed, outputs] : computed;
      });
      const [loss, statistics, probabilities] = await Promise.all(results.map((r) => r.data()));
      metrics.add({
        size,
        loss: loss?.[0] ?? Number.NaN,
        statistics: statistics ?? [],
        ...(probabilities === undefined ? {} : { scores: { probabilities, targets } }),
      });
    } finally {
      xs.dispose();
      ys.dispose();
      for (const result of results) result.dispose();
    }
    await yieldToEventLoop();
  }
  return metrics.evaluation(data.count);
}
