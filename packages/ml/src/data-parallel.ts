/**
 * Data-parallel local training across worker_threads (Node only): each batch is split
 * into shards, the calling thread and the workers each compute the gradient of their
 * shard, and all of them take the same SGD step with the sum, which is the gradient of
 * the whole batch's mean loss: the same update as single-threaded SGD, up to float
 * rounding. tfjs's WebAssembly backend is single-threaded in Node; this is how a client
 * uses its other cores.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { Replica, type ShardResult } from './data-parallel-replica.js';
import { openblasKernelsInstalled } from './openblas-kernels.js';
import { getFlatWeights } from './weights.js';

export type ToWorker =
  | { type: 'start'; backend: string }
  | {
      type: 'load';
      topology: string;
      weights: Float32Array;
      gradients: SharedArrayBuffer;
      slot: number;
    }
  | {
      type: 'shard';
      x: Float32Array;
      y: Float32Array;
      size: number;
      batchSize: number;
      parity: number;
    }
  | { type: 'apply'; slots: number; learningRate: number; parity: number };

export type FromWorker =
  | { type: 'started'; backend: string }
  | { type: 'loaded' }
  | ({ type: 'shard' } & ShardResult)
  | { type: 'error'; message: string };

/** The tfjs backends a worker can run (the native ones use every core already). */
export const DATA_PARALLEL_BACKENDS: readonly string[] = ['wasm', 'cpu'];

type NodeWorker = import('node:worker_threads').Worker;

/** A worker and the replies it still owes, in the order the requests went out. */
class TrainingWorker {
  private readonly waiting: {
    resolve: (reply: FromWorker) => void;
    reject: (error: Error) => void;
  }[] = [];
  private failure: Error | undefined;

  constructor(readonly worker: NodeWorker) {
    worker.on('message', (reply: FromWorker) => {
      const next = this.waiting.shift();
      if (reply.type === 'error') {
        next?.reject(new TesseraError(ErrorCode.INTERNAL, `training worker: ${reply.message}`));
      } else {
        next?.resolve(reply);
      }
    });
    const fail = (error: Error) => {
      this.failure = error;
      for (const pending of this.waiting.splice(0)) pending.reject(error);
    };
    worker.on('error', (error) =>
      fail(new TesseraError(ErrorCode.INTERNAL, `training worker failed: ${error.message}`)),
    );
    worker.on('exit', (code) =>
      fail(new TesseraError(ErrorCode.INTERNAL, `training worker exited (code ${code})`)),
    );
  }

  /** Sends a message without waiting for a reply ('apply' has none). */
  send(message: ToWorker, transfer: ArrayBuffer[] = []): void {
    if (this.failure !== undefined) throw this.failure;
    this.worker.postMessage(message, transfer);
  }

  request(message: ToWorker, transfer: ArrayBuffer[] = []): Promise<FromWorker> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.worker.postMessage(message, transfer);
    });
  }
}

/**
 * How a worker is started: the built .js next to this file, or, when running from the
 * TypeScript sources (tests, tsx), the .ts through tsx's loader, registered inside the
 * worker (a --import in execArgv comes too late for a worker's entry module).
 */
async function startWorker(): Promise<NodeWorker> {
  const { Worker } = await import('node:worker_threads');
  const fromSources = import.meta.url.endsWith('.ts');
  if (!fromSources) return new Worker(new URL('./data-parallel-worker.js', import.meta.url));
  const entry = new URL('./data-parallel-worker.ts', import.meta.url).href;
  const bootstrap = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(bootstrap, { eval: true, execArgv: ['--conditions=@tessera/source'] });
}

/** Workers kept between calls (starting one costs ~0.5 s: tfjs, the wasm module). */
let pool: { backend: string; workers: TrainingWorker[] } | undefined;
/** The pool serves one trainLocal at a time: two would interleave their steps. */
let poolBusy = false;

/** Whether a data-parallel trainLocal is running in this process now. */
export function trainingWorkersBusy(): boolean {
  return poolBusy;
}

async function workersFor(backend: string, count: number): Promise<TrainingWorker[]> {
  if (pool !== undefined && pool.backend !== backend) await closeTrainingWorkers();
  const current = pool ?? { backend, workers: [] };
  pool = current;
  while (current.workers.length < count) {
    const worker = new TrainingWorker(await startWorker());
    current.workers.push(worker);
    const started = await worker.request({ type: 'start', backend });
    if (started.type !== 'started' || started.backend !== backend) {
      await closeTrainingWorkers();
      throw new TesseraError(
        ErrorCode.UNAVAILABLE,
        `a training worker could not start the '${backend}' backend`,
      );
    }
  }
  return current.workers.slice(0, count);
}

/** Stops the training workers kept for data-parallel training (they are started again when needed). */
export async function closeTrainingWorkers(): Promise<void> {
  const current = pool;
  pool = undefined;
  if (current === undefined) return;
  await Promise.all(current.workers.map((w) => w.worker.terminate()));
}

/** Splits `size` examples into `parts` contiguous shards, the first ones one larger. */
export function shardSizes(size: number, parts: number): number[] {
  const base = Math.floor(size / parts);
  return Array.from({ length: parts }, (_, i) => base + (i < size % parts ? 1 : 0));
}

/**
 * A data-parallel trainer over `participants` threads (this one and participants - 1
 * workers), for one trainLocal call.
 */
export class DataParallelTrainer {
  private steps = 0;

  private constructor(
    private readonly replica: Replica,
    private readonly workers: TrainingWorker[],
    private readonly learningRate: number,
  ) {}

  static async create(
    model: LayersModel,
    participants: number,
    learningRate: number,
  ): Promise<DataParallelTrainer> {
    // 'openblas' runs on the wasm backend but already spreads its products over the cores.
    const backend = openblasKernelsInstalled() ? 'openblas' : tf.getBackend();
    if (!DATA_PARALLEL_BACKENDS.includes(backend)) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `trainLocal: workers > 1 needs the wasm or cpu backend, not '${backend}' (it uses every core itself)`,
      );
    }
    if (poolBusy) {
      throw new TesseraError(
        ErrorCode.CONFLICT,
        'trainLocal: another data-parallel trainLocal is running in this process; wait for it or use workers: 1',
      );
    }
    poolBusy = true;
    try {
      return await DataParallelTrainer.start(model, participants, learningRate, backend);
    } catch (error) {
      poolBusy = false;
      throw error;
    }
  }

  private static async start(
    model: LayersModel,
    participants: number,
    learningRate: number,
    backend: string,
  ): Promise<DataParallelTrainer> {
    const workers = await workersFor(backend, participants - 1);
    const paramCount = model.trainableWeights.reduce(
      (total, weight) => total + weight.read().size,
      0,
    );
    if (model.weights.length !== model.trainableWeights.length) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `trainLocal: data-parallel training needs a model whose weights are all trainable ('${model.name}' is not)`,
      );
    }
    const gradients = new SharedArrayBuffer(2 * participants * paramCount * 4);
    const topology = JSON.stringify(model.toJSON(null, false));
    const weights = getFlatWeights(model);
    // Hold the process open while training (the pool is unref'd between calls).
    for (const w of workers) w.worker.ref();
    try {
      await Promise.all(
        workers.map((w, i) =>
          w.request({ type: 'load', topology, weights, gradients, slot: i + 1 }),
        ),
      );
    } catch (error) {
      await closeTrainingWorkers();
      throw error;
    }
    const replica = new Replica(model, new Float32Array(gradients), 0);
    return new DataParallelTrainer(replica, workers, learningRate);
  }

  /**
   * One SGD step on a batch of `size` examples (features and one-hot labels, row-major),
   * split across the participants. Returns the batch's mean loss and correct count.
   */
  async step(features: Float32Array, oneHot: Float32Array, size: number): Promise<ShardResult> {
    const parity = this.steps++ % 2;
    const slots = Math.min(this.workers.length + 1, size);
    const sizes = shardSizes(size, this.workers.length + 1);
    const featureSize = features.length / size;
    const numClasses = oneHot.length / size;
    // Every worker answers every step, with an empty shard if need be: its answer says it
    // has finished the last step's sum, whose bank the step after this one reuses.
    const replies: Promise<FromWorker>[] = [];
    let start = sizes[0] ?? 0;
    for (let slot = 1; slot <= this.workers.length; slot++) {
      const shard = sizes[slot] ?? 0;
      const x = features.slice(start * featureSize, (start + shard) * featureSize);
      const y = oneHot.slice(start * numClasses, (start + shard) * numClasses);
      const worker = this.workers[slot - 1] as TrainingWorker;
      const message: ToWorker = { type: 'shard', x, y, size: shard, batchSize: size, parity };
      replies.push(worker.request(message, [x.buffer, y.buffer]));
      start += shard;
    }
    const own = sizes[0] ?? 0;
    let ownResult: ShardResult | undefined;
    let ownError: unknown;
    try {
      ownResult = this.replica.computeShard(
        features.subarray(0, own * featureSize),
        oneHot.subarray(0, own * numClasses),
        own,
        size,
        parity,
      );
    } catch (error) {
      ownError = error;
    }
    // Wait for the workers even when this thread failed, so no reply is left behind.
    const settled = await Promise.allSettled(replies);
    if (ownResult === undefined) throw ownError;
    let total = ownResult;
    for (const result of settled) {
      if (result.status === 'rejected') throw result.reason;
      const reply = result.value;
      if (reply.type !== 'shard') {
        throw new TesseraError(ErrorCode.INTERNAL, 'training worker: unexpected reply');
      }
      total = { loss: total.loss + reply.loss, correct: total.correct + reply.correct };
    }
    // Every replica steps, also those without a shard this time, so that they stay equal.
    for (const worker of this.workers) {
      worker.send({ type: 'apply', slots, learningRate: this.learningRate, parity });
    }
    this.replica.applySum(slots, this.learningRate, parity);
    return total;
  }

  /** Ends this trainer's use of the pool; lets the process exit while the workers idle. */
  release(): void {
    for (const w of this.workers) w.worker.unref();
    poolBusy = false;
  }
}
