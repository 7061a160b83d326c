/**
 * The worker thread behind WorkerCentralEvaluator: evaluates global models off the
 * coordinator's event loop, on the MNIST test set (built-in MNIST tasks) or on a task's
 * held-out set. One request at a time, in arrival order (models and data are reused across
 * requests). A held-out set it lacks is answered `missing`; the caller sends it again with it.
 */
import { parentPort } from 'node:worker_threads';
import type { EvaluationEngine } from '@tessera/ml';
import {
  type CentralEvaluationOptions,
  type CentralResult,
  HoldoutEvaluator,
  type HoldoutSource,
  MnistCentralEvaluator,
} from './central-eval.js';
import { lowerThreadPriority } from './thread-priority.js';

// Background work beside the next round: its forward passes (and the threads they start)
// yield the cores to the event loop that answers clients and /healthz.
lowerThreadPriority();

export type EvaluateRequest =
  | { id: number; kind: 'mnist'; model: string; weights: Float32Array }
  | {
      id: number;
      kind: 'holdout';
      /** `<task sha256>:<held-out set sha256>`. */
      key: string;
      /** The set and its task, or null when the worker should have them already. */
      source: HoldoutSource | null;
      weights: Float32Array;
    };

/**
 * Sent once per model (architecture or held-out set) when its evaluator is built: which
 * engine evaluates it and, for tfjs, why not the native one. The coordinator logs it.
 */
export interface EngineNotice {
  kind: 'engine';
  model: string;
  engine: EvaluationEngine;
  reason?: string;
}

export type EvaluateResponse =
  | ({ id: number; ok: true } & CentralResult)
  | { id: number; ok: false; missing: true }
  | { id: number; ok: false; missing: false; message: string };

const port = parentPort;
if (port === null) throw new Error('central-eval-worker must run as a worker thread');

// Every core by default: the coordinator process trains nothing (see CentralEvaluationOptions).
const options: CentralEvaluationOptions = {
  onEngine: (chosen) => port.postMessage({ kind: 'engine', ...chosen } satisfies EngineNotice),
};
const mnist = new MnistCentralEvaluator(options);
const holdouts = new HoldoutEvaluator(4, options);
let queue: Promise<void> = Promise.resolve();

async function answer(request: EvaluateRequest): Promise<EvaluateResponse> {
  if (request.kind === 'mnist') {
    // The figures and the metrics only (not the sums behind them).
    const result = await mnist.evaluate(request.model, request.weights);
    const { loss, accuracy, numExamples } = result;
    return {
      id: request.id,
      ok: true,
      loss,
      accuracy,
      numExamples,
      metrics: { ...result.metrics },
    };
  }
  if (request.source === null && !holdouts.has(request.key)) {
    return { id: request.id, ok: false, missing: true };
  }
  const result = await holdouts.evaluate(request.key, request.source, request.weights);
  return { id: request.id, ok: true, ...result };
}

port.on('message', (request: EvaluateRequest) => {
  queue = queue.then(async () => {
    let response: EvaluateResponse;
    try {
      response = await answer(request);
    } catch (error) {
      response = { id: request.id, ok: false, missing: false, message: (error as Error).message };
    }
    port.postMessage(response);
  });
});
