/// <reference lib="dom" />
import {
  checkImageTaskData,
  checkTaskData,
  FileTaskData,
  ImageSetTaskData,
  RoundFailure,
  type TaskData,
  type TaskDataCheck,
  TfjsTrainer,
} from '@tessera/client';
import { type Examples, splitHoldout } from '@tessera/data';
import { createModel, modelSpec, readFlatWeights, trainLocal } from '@tessera/ml';
import { TesseraError } from '@tessera/protocol';
import { parseTaskDefinition, type TaskDefinition } from '@tessera/tasks';
import { initBrowserBackend } from './backend.js';
import { browserImageSource } from './image-source.js';
import { loadLocalExamples } from './local-data.js';
import type { DataChoice, PageToWorker, SecAggToWorker, WorkerToPage } from './messages.js';
import type { BrowserBackendName, ProbeResult } from './probe.js';
import { secAggInWorker } from './secagg-in-worker.js';

// The Web Worker: it decodes and holds the examples and trains the model, with the same trainer as
// the Node client (@tessera/client's TfjsTrainer), so training never blocks the page. It answers
// the page with weights, counts and metrics only.

/** The part of DedicatedWorkerGlobalScope used here (the DOM lib types `self` as a Window). */
interface WorkerScope {
  postMessage(message: WorkerToPage, transfer?: Transferable[]): void;
  addEventListener(type: 'message', listener: (event: MessageEvent<PageToWorker>) => void): void;
}
const scope = self as unknown as WorkerScope;
const post = (message: WorkerToPage, transfer: Transferable[] = []) =>
  scope.postMessage(message, transfer);

/** Same seed as the Node client's default partition seed: the split is reproducible. */
const HOLDOUT_SEED = 42;

function select(source: Examples, indices: Uint32Array): Examples {
  const { featureSize } = source;
  const x = new Float32Array(indices.length * featureSize);
  const y = new Uint8Array(indices.length);
  indices.forEach((from, to) => {
    x.set(source.x.subarray(from * featureSize, (from + 1) * featureSize), to * featureSize);
    y[to] = source.y[from] ?? 0;
  });
  return { x, y, count: indices.length, featureSize };
}

let trainer: Promise<TfjsTrainer> | null = null;
/** Set once a backend is started: at load when the user named one, else after the page's probe. */
let backendReady = false;

async function load(request: LoadRequest): Promise<TfjsTrainer> {
  // 'auto' starts nothing yet: the page measures the candidates on the task's model (known at
  // the first round) and then names one (use-backend).
  if (request.backend !== 'auto') {
    const backend = await initBrowserBackend(request.backend);
    backendReady = true;
    post({ type: 'backend', ...backend });
  }
  if (request.data.kind === 'task-file' || request.data.kind === 'task-images') {
    return loadTaskData(request, request.data);
  }
  const local = await loadLocalExamples(request.data, request.assetBase);
  const all = Uint32Array.from({ length: local.examples.count }, (_, i) => i);
  const { train, holdout } = splitHoldout(all, request.holdoutFraction, HOLDOUT_SEED);
  post({
    type: 'loaded',
    description: local.description,
    train: train.length,
    holdout: holdout.length,
    classes: local.classes,
  });
  return new TfjsTrainer(
    select(local.examples, train),
    holdout.length > 0 ? select(local.examples, holdout) : null,
  );
}

type LoadRequest = Extract<PageToWorker, { type: 'load' }>;
/** A task's data: a file, or image class folders. */
type TaskDataChoice = Extract<DataChoice, { kind: 'task-file' | 'task-images' }>;

/** A data check that failed: the page shows its lines and does not join. */
class DataCheckFailed extends RoundFailure {
  constructor(readonly lines: string[]) {
    super('DATA_SCHEMA_MISMATCH', lines[lines.length - 1] ?? 'the data does not fit the task');
  }
}

/**
 * Any task's data, read per task when a round names one (the same pure readers as the Node
 * client's --data FILE|DIR) and, when the user gave the task's definition, checked against it
 * now, before joining: a mismatch is said plainly and nothing connects.
 */
async function loadTaskData(request: LoadRequest, data: TaskDataChoice): Promise<TfjsTrainer> {
  const split = { holdoutFraction: request.holdoutFraction, partitionSeed: HOLDOUT_SEED };
  let taskData: TaskData;
  let description: string;
  let check: (task: TaskDefinition) => Promise<TaskDataCheck>;
  if (data.kind === 'task-file') {
    const { file } = data;
    const fileData = await FileTaskData.open({ name: file.name, read: () => file.text() }, split);
    taskData = fileData;
    description = `${file.name}: ${fileData.numExamples + (fileData.numHoldout ?? 0)} rows, read per task`;
    check = async (task) =>
      checkTaskData(task, { name: file.name, text: await file.text() }, split);
  } else {
    const { files } = data;
    const folder = files[0]?.path?.split('/')[0] ?? 'the picked folder';
    const images = await ImageSetTaskData.open(browserImageSource(folder, files), split);
    taskData = images;
    description = `${folder}: ${images.numExamples + images.numHoldout} images in ${new Set(files.map((f) => f.className)).size} class folders, read per task`;
    check = (task) => checkImageTaskData(task, images);
  }
  let lines: string[] | undefined;
  if (request.checkTask !== undefined) {
    let task: TaskDefinition;
    try {
      task = parseTaskDefinition(JSON.parse(await request.checkTask.text()));
    } catch (error) {
      throw new DataCheckFailed([
        `${request.checkTask.name}: not a task definition: ${failure(error).message}`,
      ]);
    }
    const result = await check(task);
    if (!result.ok) throw new DataCheckFailed(result.lines);
    lines = result.lines;
  }
  post({
    type: 'loaded',
    description,
    train: taskData.numExamples,
    holdout: taskData.numHoldout ?? 0,
    classes: [],
    ...(lines === undefined ? {} : { check: lines }),
  });
  return new TfjsTrainer(null, null, { taskData });
}

function failure(error: unknown): { code: string; message: string } {
  return {
    code: error instanceof TesseraError || error instanceof RoundFailure ? error.code : 'INTERNAL',
    message: error instanceof Error ? error.message : String(error),
  };
}

/**
 * Times `steps` training steps of the model on random data of its input shape, after one warm-up
 * step (shader compilation, kernel set-up), each phase ending with a read of the weights so that
 * queued GPU work is counted.
 */
async function probe(message: Extract<PageToWorker, { type: 'probe' }>): Promise<ProbeResult> {
  const { backend } = message;
  try {
    await initBrowserBackend(backend);
    const spec = modelSpec(message.model);
    const count = message.batchSize * message.steps;
    const examples = {
      x: Float32Array.from({ length: count * spec.featureSize }, () => Math.random()),
      y: Uint8Array.from({ length: count }, (_, i) => i % spec.numClasses),
      count,
    };
    const model = createModel(spec.name, { seed: 0 });
    const options = { epochs: 1, batchSize: message.batchSize, learningRate: 0.01, seed: 1 };
    const warmup = {
      x: examples.x.subarray(0, message.batchSize * spec.featureSize),
      y: examples.y.subarray(0, message.batchSize),
      count: message.batchSize,
    };
    await trainLocal(model, warmup, options);
    await readFlatWeights(model);
    const started = performance.now();
    await trainLocal(model, examples, options);
    await readFlatWeights(model);
    const seconds = Math.max((performance.now() - started) / 1000, 1e-6);
    model.dispose();
    // The page adds what it read of the device (adapter.ts) before the probes began.
    return {
      backend,
      status: 'measured',
      samplesPerSecond: count / seconds,
      adapter: null,
      software: false,
    };
  } catch (error) {
    const reason = failure(error).message.split('\n')[0] ?? '';
    return { backend, status: 'failed', reason };
  }
}

async function useBackend(id: number, backend: BrowserBackendName): Promise<void> {
  const started = await initBrowserBackend(backend);
  backendReady = true;
  // Models built on the previous backend are rebuilt on this one at the next round.
  (await trainer)?.dispose();
  post({ type: 'backend-set', id, name: started.name, detail: started.detail });
}

async function handle(message: Exclude<PageToWorker, SecAggToWorker>): Promise<void> {
  if (message.type === 'probe') {
    post({ type: 'probed', result: await probe(message) });
    return;
  }
  if (message.type === 'load') {
    if (trainer) return;
    trainer = load(message);
    trainer.catch((error: unknown) =>
      post({
        type: 'load-failed',
        ...failure(error),
        ...(error instanceof DataCheckFailed ? { check: error.lines } : {}),
      }),
    );
    return;
  }
  const { id } = message;
  try {
    if (message.type === 'use-backend') {
      await useBackend(id, message.backend);
      return;
    }
    if (!trainer) throw new Error('the worker was asked to compute before it loaded data');
    const ready = await trainer;
    // Statistics are counts and sums of the rows, computed without tfjs.
    if (message.type === 'statistics') {
      post({ type: 'summarised', id, statistics: await ready.statistics(message.task) });
      return;
    }
    if (!backendReady)
      throw new Error('the worker was asked to compute before a backend was chosen');
    if (message.type === 'train') {
      const outcome = await ready.train(message.request, (progress) =>
        post({ type: 'progress', id, progress }),
      );
      post({ type: 'trained', id, outcome }, [outcome.weights.buffer]);
    } else {
      post({ type: 'evaluated', id, outcome: await ready.evaluate(message.request) });
    }
  } catch (error) {
    post({
      type: 'failed',
      id,
      message: failure(error).message,
      ...(error instanceof RoundFailure ? { code: error.code } : {}),
    });
  }
}

const secAgg = secAggInWorker(post);
const isSecAgg = (message: PageToWorker): message is SecAggToWorker =>
  message.type.startsWith('secagg-');

// One computation at a time, in arrival order (the client sends one at a time anyway). A
// secure aggregation's key steps go on while the round trains, so they are not queued behind it.
let queue: Promise<void> = Promise.resolve();
scope.addEventListener('message', (event) => {
  const message = event.data;
  if (isSecAgg(message)) secAgg(message);
  else queue = queue.then(() => handle(message));
});
