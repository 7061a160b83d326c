import {
  type EvaluateOutcome,
  type EvaluateRequest,
  type LocalTrainer,
  RoundFailure,
  TFJS_TRAINER_SETTINGS,
  type TrainerProgress,
  type TrainOutcome,
  type TrainRequest,
} from '@tessera/client/core';
import type { TabularStatistics } from '@tessera/data';
import type { TaskDefinition } from '@tessera/tasks';
import type { PageToWorker, WorkerToPage } from './messages.js';
import type { BrowserBackendName } from './probe.js';

type BackendSet = { name: BrowserBackendName; detail: string };
type Answer = TrainOutcome | EvaluateOutcome | BackendSet | TabularStatistics;

type Pending = {
  resolve(outcome: Answer): void;
  reject(error: Error): void;
  onProgress?: (progress: TrainerProgress) => void;
};

/**
 * The page's side of the training worker: the client (on the page, with the socket) calls it like
 * any trainer; each call is a message to the worker and its answer. The request's weights stay the
 * caller's: the client reads the global model again after training (the secure-aggregation change,
 * SCAFFOLD's control step), so a copy is transferred, never the caller's own buffer.
 */
export class WorkerTrainer implements LocalTrainer {
  /** The worker trains with TfjsTrainer, so it applies what TfjsTrainer applies. */
  readonly supportedSettings = TFJS_TRAINER_SETTINGS;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  constructor(
    private readonly worker: Worker,
    readonly numExamples: number,
    readonly numHoldout: number | undefined,
  ) {
    worker.addEventListener('message', (event: MessageEvent<WorkerToPage>) => {
      const message = event.data;
      if (!('id' in message)) return;
      const pending = this.pending.get(message.id);
      if (!pending) return;
      if (message.type === 'progress') {
        try {
          pending.onProgress?.(message.progress);
        } catch (error) {
          // The client abandons the round (it is closing): stop waiting for the worker.
          this.pending.delete(message.id);
          pending.reject(error as Error);
        }
        return;
      }
      this.pending.delete(message.id);
      if (message.type === 'failed') {
        // A RoundFailure's code crosses the worker boundary, so the update says it too.
        pending.reject(
          message.code === undefined
            ? new Error(message.message)
            : new RoundFailure(message.code, message.message),
        );
      } else if (message.type === 'backend-set')
        pending.resolve({ name: message.name, detail: message.detail });
      else if (message.type === 'summarised') pending.resolve(message.statistics);
      else pending.resolve(message.outcome);
    });
  }

  train(request: TrainRequest, onProgress: (progress: TrainerProgress) => void) {
    // A copy goes to the worker: transferring the caller's own buffer would detach the global
    // model it still reads after training (the change a secure aggregation masks, trained −
    // global, and SCAFFOLD's control step, x − y, both take it).
    const weights = request.weights.slice();
    return this.call(
      { type: 'train', id: this.nextId++, request: { ...request, weights } },
      [weights.buffer],
      onProgress,
    ) as Promise<TrainOutcome>;
  }

  evaluate(request: EvaluateRequest) {
    const weights = request.weights.slice();
    return this.call({ type: 'evaluate', id: this.nextId++, request: { ...request, weights } }, [
      weights.buffer,
    ]) as Promise<EvaluateOutcome>;
  }

  /** The statistics round's summary of the worker's rows (TfjsTrainer.statistics there). */
  statistics(task: TaskDefinition) {
    return this.call(
      { type: 'statistics', id: this.nextId++, task },
      [],
    ) as Promise<TabularStatistics>;
  }

  /** Starts `backend` in the worker; computations sent after this one run on it. */
  useBackend(backend: BrowserBackendName): Promise<BackendSet> {
    return this.call(
      { type: 'use-backend', id: this.nextId++, backend },
      [],
    ) as Promise<BackendSet>;
  }

  dispose(): void {
    this.worker.terminate();
    for (const pending of this.pending.values()) pending.reject(new Error('the worker stopped'));
    this.pending.clear();
  }

  private call(
    message: Extract<PageToWorker, { id: number }>,
    transfer: Transferable[],
    onProgress?: (progress: TrainerProgress) => void,
  ): Promise<Answer> {
    return new Promise((resolve, reject) => {
      this.pending.set(message.id, { resolve, reject, ...(onProgress ? { onProgress } : {}) });
      this.worker.postMessage(message, transfer);
    });
  }
}
