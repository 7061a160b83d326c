/**
 * The worker thread behind WorkerCentralEvaluator: evaluates global models on the MNIST test
 * set off the coordinator's event loop. One request at a time, in arrival order (the models
 * are reused across requests).
 */
import { parentPort } from 'node:worker_threads';
import { MnistCentralEvaluator } from './central-eval.js';

export interface EvaluateRequest {
  id: number;
  model: string;
  weights: Float32Array;
}

export type EvaluateResponse =
  | { id: number; ok: true; loss: number; accuracy: number; numExamples: number }
  | { id: number; ok: false; message: string };

const port = parentPort;
if (port === null) throw new Error('central-eval-worker must run as a worker thread');

const evaluator = new MnistCentralEvaluator();
let queue: Promise<void> = Promise.resolve();

port.on('message', (request: EvaluateRequest) => {
  queue = queue.then(async () => {
    let response: EvaluateResponse;
    try {
      const result = await evaluator.evaluate(request.model, request.weights);
      response = { id: request.id, ok: true, ...result };
    } catch (error) {
      response = { id: request.id, ok: false, message: (error as Error).message };
    }
    port.postMessage(response);
  });
});
