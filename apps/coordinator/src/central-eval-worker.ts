/**
 * The worker thread behind WorkerCentralEvaluator: evaluates global models off the
 * coordinator's event loop, on the MNIST test set (built-in MNIST tasks) or on a task's
 * held-out set. One request at a time, in arrival order (models and data are reused across
 * requests). A held-out set it lacks is answered `missing`; the caller sends it again with it.
 */
import { parentPort } from 'node:worker_threads';
import {
  type CentralEvaluationOptions,
  type CentralResult,
  HoldoutEvaluator,
  type HoldoutSource,
  MnistCentralEvaluator,
} from './central-eval.js';
import { createLogger, parseLogLevel } from './logger.js';

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

export type EvaluateResponse =
  | ({ id: number; ok: true } & CentralResult)
  | { id: number; ok: false; missing: true }
  | { id: number; ok: false; missing: false; message: string };

const port = parentPort;
if (port === null) throw new Error('central-eval-worker must run as a worker thread');

// The coordinator's level (main.ts reads LOG_LEVEL too; the worker shares its environment).
const logger = createLogger(parseLogLevel(process.env['LOG_LEVEL'], 'info'));
// Every core by default: the coordinator process trains nothing (see CentralEvaluationOptions).
const options: CentralEvaluationOptions = {
  onEngine: ({ model, engine, reason }) =>
    logger.info('central evaluation engine', { model, engine, ...(reason ? { reason } : {}) }),
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
