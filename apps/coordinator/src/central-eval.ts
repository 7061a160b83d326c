import { Worker } from 'node:worker_threads';
import type { EvaluationResult } from '@tessera/aggregation';
import { type Examples, loadMnist, type TaskExamples, toExamples } from '@tessera/data';
import type { Database, HoldoutFormat, RunRecord } from '@tessera/db';
import {
  buildTaskModel,
  createModel,
  createModelEvaluator,
  type EngineEvaluationResult,
  type EvaluationEngine,
  initBackend,
  MNIST_OBJECTIVE,
  type ModelEvaluator,
  setFlatWeights,
  type TrainingObjective,
  taskObjective,
} from '@tessera/ml';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { TaskDefinition } from '@tessera/tasks';
import type { EngineNotice, EvaluateRequest, EvaluateResponse } from './central-eval-worker.js';
import type { CentralEvaluator } from './engine.js';
import { holdoutExamples, readHoldout } from './holdout.js';
import type { Logger } from './logger.js';
import { runTaskDefinition } from './run-task.js';
import { builtWorkerExecArgv } from './worker-argv.js';

type LayersModel = ReturnType<typeof createModel>;

/** Examples per forward pass in central evaluation, either engine. */
const CENTRAL_EVALUATION_BATCH = 1000;

/** How central evaluation runs (both evaluators). */
export interface CentralEvaluationOptions {
  /**
   * 'auto' (default): the native evaluator of @tessera/ml (oneDNN, OpenBLAS) where the addon
   * is built and its plan takes the model, tfjs's evaluateModel otherwise. 'tfjs': always tfjs.
   */
  engine?: EvaluationEngine | 'auto';
  /**
   * Threads of the native evaluator; default os.availableParallelism(). The addon's count is
   * process-wide, which suits the coordinator: it trains no model (clients train in their own
   * processes, the CLI's simulated ones too) and sets no count of its own elsewhere (its
   * initBackend calls keep the addon's); the prediction worker's OpenBLAS kernels share it.
   */
  threads?: number;
  /** Told once per model (architecture or held-out set) which engine evaluates it, and why tfjs. */
  onEngine?: (chosen: { model: string; engine: EvaluationEngine; reason?: string }) => void;
}

/** A model built once and the evaluator that serves every round's weights loaded into it. */
async function modelEvaluator(
  model: LayersModel,
  objective: TrainingObjective,
  name: string,
  options: CentralEvaluationOptions,
): Promise<ModelEvaluator> {
  const evaluator = await createModelEvaluator(model, objective, {
    batchSize: CENTRAL_EVALUATION_BATCH,
    engine: options.engine ?? 'auto',
    ...(options.threads === undefined ? {} : { threads: options.threads }),
  });
  options.onEngine?.({
    model: name,
    engine: evaluator.engine,
    ...(evaluator.reason === undefined ? {} : { reason: evaluator.reason }),
  });
  return evaluator;
}

/**
 * Central evaluation on the MNIST test set (10,000 images), which every model of the zoo takes.
 * The test set and one model (and its evaluator) per architecture are loaded once and reused
 * across rounds.
 */
export class MnistCentralEvaluator {
  private examples: Examples | null = null;
  private readonly models = new Map<string, { model: LayersModel; evaluator: ModelEvaluator }>();

  constructor(private readonly options: CentralEvaluationOptions = {}) {}

  async evaluate(model: string, weights: Float32Array): Promise<EngineEvaluationResult> {
    // The fastest tfjs backend present (the tfjs engine, and building the model); without
    // this tfjs would run on its slow CPU backend.
    await initBackend();
    this.examples ??= toExamples(loadMnist('test'));
    let entry = this.models.get(model);
    if (!entry) {
      const instance = createModel(model as Parameters<typeof createModel>[0], { seed: 0 });
      const evaluator = await modelEvaluator(instance, MNIST_OBJECTIVE, model, this.options);
      entry = { model: instance, evaluator };
      this.models.set(model, entry);
    }
    setFlatWeights(entry.model, weights);
    return entry.evaluator.evaluate(this.examples);
  }
}

/** Central results with the task's own metrics (accuracy, auc, mae, rmse: what it asks for). */
export type CentralResult = EvaluationResult & { metrics?: Record<string, number> };

/** A held-out set and the task it is read and encoded with, as the worker receives them. */
export interface HoldoutSource {
  task: TaskDefinition;
  format: HoldoutFormat;
  bytes: Uint8Array;
}

interface LoadedHoldout {
  model: LayersModel;
  evaluator: ModelEvaluator;
  examples: TaskExamples;
  task: TaskDefinition;
}

/**
 * Central evaluation on tasks' held-out sets: each set read and encoded once (as the clients
 * encode their data), one model per task built once, the round's weights loaded into it.
 * Keeps the few most recently used; evicted models are disposed.
 */
export class HoldoutEvaluator {
  private readonly loaded = new Map<string, LoadedHoldout>();

  constructor(
    private readonly capacity = 4,
    private readonly options: CentralEvaluationOptions = {},
  ) {}

  /** Whether the set keyed `key` is loaded (else evaluate needs its source). */
  has(key: string): boolean {
    return this.loaded.has(key);
  }

  async evaluate(
    key: string,
    source: HoldoutSource | null,
    weights: Float32Array,
  ): Promise<CentralResult> {
    await initBackend();
    let entry = this.loaded.get(key);
    if (entry === undefined) {
      if (source === null) {
        throw new TesseraError(ErrorCode.INTERNAL, `held-out set ${key} is not loaded`);
      }
      const examples = holdoutExamples(
        readHoldout(source.bytes, source.format, source.task),
        source.task,
      );
      const model = await buildTaskModel(source.task, { seed: 0 });
      const objective = taskObjective(source.task);
      const evaluator = await modelEvaluator(model, objective, source.task.name, this.options);
      entry = { model, evaluator, examples, task: source.task };
    }
    this.loaded.delete(key);
    this.loaded.set(key, entry);
    while (this.loaded.size > this.capacity) {
      const [oldestKey, oldest] = this.loaded.entries().next().value as [string, LoadedHoldout];
      this.loaded.delete(oldestKey);
      oldest.model.dispose();
    }
    setFlatWeights(entry.model, weights);
    const { x, y, count } = entry.examples;
    const result = await entry.evaluator.evaluate({ x, y, count });
    const metrics: Record<string, number> = {};
    for (const [name, value] of Object.entries(result.metrics)) {
      if (typeof value === 'number') metrics[name] = value;
    }
    return {
      loss: result.loss,
      accuracy: result.accuracy,
      numExamples: result.numExamples,
      metrics,
    };
  }
}

/**
 * Central evaluation of a run's global models on a worker thread, so that evaluating a large
 * model does not stall the coordinator's sockets and REST API: the built-in MNIST tasks on
 * the MNIST test set (as MnistCentralEvaluator), other tasks on the held-out set an admin
 * uploaded for the task (PUT /api/tasks/:name/versions/:v/holdout), and none without one.
 * The worker starts on first use; close() ends it.
 */
export class WorkerCentralEvaluator implements CentralEvaluator {
  private worker: Worker | null = null;
  private nextId = 0;
  private readonly pending = new Map<
    number,
    { resolve: (response: EvaluateResponse) => void; reject: (error: Error) => void }
  >();

  /** logger: where the engine each model is evaluated on is logged (once per model). */
  constructor(
    private readonly db: Database,
    private readonly logger?: Logger,
  ) {}

  async evaluate(
    run: Pick<RunRecord, 'config' | 'resolvedTask'>,
    weights: Float32Array,
  ): Promise<CentralResult | null> {
    const { model } = run.config;
    if (model !== null) return this.answer(await this.send({ kind: 'mnist', model }, weights));
    // The held-out set belongs to the task version the run names; it is read and encoded with
    // the definition the run trains (runTaskDefinition), which may have constants filled in.
    const taskSha256 = run.config.task.sha256;
    const summary = (await this.db.tasks.holdouts([taskSha256])).get(taskSha256);
    if (summary === undefined) return null;
    const task = await runTaskDefinition(this.db, run);
    const key = `${task.sha256}:${summary.sha256}`;
    let response = await this.send({ kind: 'holdout', key, source: null }, weights);
    if (!response.ok && response.missing) {
      const holdout = await this.db.tasks.holdout(taskSha256);
      if (holdout === null) return null;
      const source = { task: task.definition, format: holdout.format, bytes: holdout.data };
      // The key names the bytes: a set replaced since the summary was read gets its own key.
      const sourceKey = `${task.sha256}:${holdout.sha256}`;
      response = await this.send({ kind: 'holdout', key: sourceKey, source }, weights);
    }
    return this.answer(response);
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = null;
    if (worker) await worker.terminate();
  }

  private answer(response: EvaluateResponse): CentralResult {
    if (response.ok) {
      const { loss, accuracy, numExamples, metrics } = response;
      return { loss, accuracy, numExamples, ...(metrics === undefined ? {} : { metrics }) };
    }
    if (response.missing) {
      throw new TesseraError(ErrorCode.INTERNAL, 'central evaluation worker lost the held-out set');
    }
    throw new TesseraError(ErrorCode.INTERNAL, `central evaluation failed: ${response.message}`);
  }

  private send(
    what: DistributiveOmit<EvaluateRequest, 'id' | 'weights'>,
    weights: Float32Array,
  ): Promise<EvaluateResponse> {
    const worker = this.start();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // A copy is transferred: the engine keeps using its weights.
      const copy = weights.slice();
      worker.postMessage({ id, ...what, weights: copy } as EvaluateRequest, [copy.buffer]);
    });
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    // Built JavaScript runs the worker: next door in dist/, or, when this module is loaded from
    // its TypeScript source (tests), from ../dist/.
    const script = new URL(
      import.meta.url.endsWith('.ts')
        ? '../dist/central-eval-worker.js'
        : './central-eval-worker.js',
      import.meta.url,
    );
    const worker = new Worker(script, { execArgv: builtWorkerExecArgv() });
    worker.unref();
    worker.on('message', (response: EvaluateResponse | EngineNotice) => {
      if ('kind' in response) {
        const { model, engine, reason } = response;
        this.logger?.info('central evaluation engine', {
          model,
          engine,
          ...(reason === undefined ? {} : { reason }),
        });
        return;
      }
      const waiter = this.pending.get(response.id);
      if (!waiter) return;
      this.pending.delete(response.id);
      waiter.resolve(response);
    });
    const failAll = (error: Error) => {
      for (const waiter of this.pending.values()) waiter.reject(error);
      this.pending.clear();
      this.worker = null;
    };
    worker.on('error', (error) => failAll(error));
    worker.on('exit', (code) => {
      if (this.pending.size > 0) {
        failAll(new TesseraError(ErrorCode.INTERNAL, `central evaluation worker exited (${code})`));
      }
    });
    this.worker = worker;
    return worker;
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
