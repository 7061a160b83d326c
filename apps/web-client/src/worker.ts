/// <reference lib="dom" />
import { TfjsTrainer } from '@tessera/client';
import { type Examples, splitHoldout } from '@tessera/data';
import { TesseraError } from '@tessera/protocol';
import { initBrowserBackend } from './backend.js';
import { loadLocalExamples } from './local-data.js';
import type { PageToWorker, WorkerToPage } from './messages.js';

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

async function load(request: Extract<PageToWorker, { type: 'load' }>): Promise<TfjsTrainer> {
  const backend = await initBrowserBackend(request.backend);
  post({ type: 'backend', ...backend });
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

function failure(error: unknown): { code: string; message: string } {
  return {
    code: error instanceof TesseraError ? error.code : 'INTERNAL',
    message: error instanceof Error ? error.message : String(error),
  };
}

async function handle(message: PageToWorker): Promise<void> {
  if (message.type === 'load') {
    if (trainer) return;
    trainer = load(message);
    trainer.catch((error: unknown) => post({ type: 'load-failed', ...failure(error) }));
    return;
  }
  const { id } = message;
  try {
    if (!trainer) throw new Error('the worker was asked to compute before it loaded data');
    const ready = await trainer;
    if (message.type === 'train') {
      const outcome = await ready.train(message.request, (progress) =>
        post({ type: 'progress', id, progress }),
      );
      post({ type: 'trained', id, outcome }, [outcome.weights.buffer]);
    } else {
      post({ type: 'evaluated', id, outcome: await ready.evaluate(message.request) });
    }
  } catch (error) {
    post({ type: 'failed', id, message: failure(error).message });
  }
}

// One computation at a time, in arrival order (the client sends one at a time anyway).
let queue: Promise<void> = Promise.resolve();
scope.addEventListener('message', (event) => {
  queue = queue.then(() => handle(event.data));
});
