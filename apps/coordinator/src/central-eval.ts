import { Worker } from 'node:worker_threads';
import type { EvaluationResult } from '@tessera/aggregation';
import { type Examples, loadMnist, toExamples } from '@tessera/data';
import { createModel, evaluateModel, initBackend, setFlatWeights } from '@tessera/ml';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { EvaluateRequest, EvaluateResponse } from './central-eval-worker.js';
import type { CentralEvaluator } from './engine.js';
import { builtWorkerExecArgv } from './worker-argv.js';

type LayersModel = ReturnType<typeof createModel>;

/**
 * Central evaluation on the MNIST test set (10,000 images), which every model of the zoo takes.
 * The test set and one model per architecture are loaded once and reused across rounds.
 */
export class MnistCentralEvaluator implements CentralEvaluator {
  private examples: Examples | null = null;
  private readonly models = new Map<string, LayersModel>();

  async evaluate(model: string, weights: Float32Array): Promise<EvaluationResult> {
    // The fastest backend present (WASM here); without this tfjs would run on its slow CPU backend.
    await initBackend();
    this.examples ??= toExamples(loadMnist('test'));
    let instance = this.models.get(model);
    if (!instance) {
      instance = createModel(model as Parameters<typeof createModel>[0], { seed: 0 });
      this.models.set(model, instance);
    }
    setFlatWeights(instance, weights);
    return evaluateModel(instance, this.examples);
  }
}

/**
 * Central evaluation on a worker thread, so that evaluating a large model on 10,000 images
 * does not stall the coordinator's sockets and REST API. Same results as
 * MnistCentralEvaluator (it runs one). The worker starts on first use; close() ends it.
 */
export class WorkerCentralEvaluator implements CentralEvaluator {
  private worker: Worker | null = null;
  private nextId = 0;
  private readonly pending = new Map<
    number,
    { resolve: (result: EvaluationResult) => void; reject: (error: Error) => void }
  >();

  evaluate(model: string, weights: Float32Array): Promise<EvaluationResult> {
    const worker = this.start();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // A copy is transferred: the engine keeps using its weights.
      const copy = weights.slice();
      worker.postMessage({ id, model, weights: copy } satisfies EvaluateRequest, [copy.buffer]);
    });
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = null;
    if (worker) await worker.terminate();
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
    worker.on('message', (response: EvaluateResponse) => {
      const waiter = this.pending.get(response.id);
      if (!waiter) return;
      this.pending.delete(response.id);
      if (response.ok) {
        const { loss, accuracy, numExamples } = response;
        waiter.resolve({ loss, accuracy, numExamples });
      } else {
        waiter.reject(
          new TesseraError(ErrorCode.INTERNAL, `central evaluation failed: ${response.message}`),
        );
      }
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
