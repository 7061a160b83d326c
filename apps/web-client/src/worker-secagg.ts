import {
  type OpenSecAggSession,
  RoundFailure,
  type SecAggSend,
  type SecAggSession,
} from '@tessera/client/core';
import type { Ack, SecAggServerFrame } from '@tessera/protocol';
import type { SecAggToPage, SecAggToWorker } from './messages.js';

/**
 * The page's side of a secure-aggregation round whose computing runs in the training worker
 * (secagg-in-worker.ts): the client's round loop calls it like SecAggParticipation; each call
 * is a message to the worker, and the frames the worker makes go out through the page's socket.
 * The page itself never expands a mask.
 */

/** The part of a Worker used here (a MessagePort has the same, which the tests use). */
export interface SecAggWorker {
  postMessage(message: SecAggToWorker, transfer?: Transferable[]): void;
  addEventListener(type: 'message', listener: (event: MessageEvent) => void): void;
  removeEventListener(type: 'message', listener: (event: MessageEvent) => void): void;
}

/**
 * Opens each round's part in `worker`; numbers its calls for the whole session. `log` is told
 * when a round's masked input was taken, and how long after training.
 */
export function openSecAggInWorker(
  worker: SecAggWorker,
  log: (line: string) => void = () => undefined,
): OpenSecAggSession {
  let nextCall = 1;
  const numberCall = () => nextCall++;
  return async (runId, round, setup, clientId, send) => {
    const session = numberCall();
    const part = new WorkerSecAggSession(worker, session, runId, round, send, numberCall, log);
    try {
      await part.call(session, {
        type: 'secagg-open',
        call: session,
        runId,
        round,
        setup,
        clientId,
      });
    } catch (error) {
      part.detach();
      throw error;
    }
    return part;
  };
}

class WorkerSecAggSession implements SecAggSession {
  readonly masked: Promise<Ack>;
  private resolveMasked: ((ack: Ack) => void) | undefined;
  private rejectMasked: ((reason: Error) => void) | undefined;
  private readonly calls = new Map<number, { resolve(): void; reject(error: Error): void }>();
  private readonly listener = (event: MessageEvent) => this.receive(event.data as SecAggToPage);

  constructor(
    private readonly worker: SecAggWorker,
    private readonly session: number,
    readonly runId: string,
    readonly round: number,
    private readonly send: SecAggSend,
    private readonly numberCall: () => number,
    private readonly log: (line: string) => void,
  ) {
    this.masked = new Promise<Ack>((resolve, reject) => {
      this.resolveMasked = resolve;
      this.rejectMasked = reject;
    });
    // Read only once training is done: a key step may fail before that.
    this.masked.catch(() => {});
    worker.addEventListener('message', this.listener);
  }

  advertise(): Promise<void> {
    const call = this.numberCall();
    return this.call(call, { type: 'secagg-advertise', session: this.session, call });
  }

  handle(frame: SecAggServerFrame): Promise<void> {
    const call = this.numberCall();
    return this.call(call, { type: 'secagg-frame', session: this.session, call, frame });
  }

  provide(global: Float32Array, trained: Float32Array, numExamples: number): void {
    // Copies: the client still reads both after this (what it kept, what it reports).
    const message: SecAggToWorker = {
      type: 'secagg-provide',
      session: this.session,
      global: global.slice(),
      trained: trained.slice(),
      numExamples,
    };
    this.worker.postMessage(message, [message.global.buffer, message.trained.buffer]);
  }

  abandon(reason: string): void {
    this.worker.postMessage({ type: 'secagg-abandon', session: this.session, reason });
    this.resolveMasked?.({ ok: false, error: { code: 'UNAVAILABLE', message: reason } });
    for (const pending of this.calls.values()) pending.reject(new Error(reason));
    this.calls.clear();
    this.detach();
  }

  detach(): void {
    this.worker.removeEventListener('message', this.listener);
  }

  call(call: number, message: SecAggToWorker): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.calls.set(call, { resolve, reject });
      this.worker.postMessage(message);
    });
  }

  private receive(message: SecAggToPage): void {
    switch (message.type) {
      case 'secagg-done':
      case 'secagg-failed': {
        const pending = this.calls.get(message.call);
        if (pending === undefined) return;
        this.calls.delete(message.call);
        if (message.type === 'secagg-done') pending.resolve();
        else pending.reject(new RoundFailure(message.code, message.message));
        return;
      }
      case 'secagg-send':
        if (message.session !== this.session) return;
        void this.send(message.frame).then((ack) =>
          this.worker.postMessage({ type: 'secagg-sent', send: message.send, ack }),
        );
        return;
      case 'secagg-masked':
        if (message.session !== this.session) return;
        if (message.ack.ok) {
          this.log(
            `round ${this.round}: masked in the training worker, taken by the coordinator ${Math.round(message.afterTrainingMs)} ms after training`,
          );
        }
        this.resolveMasked?.(message.ack);
        return;
      case 'secagg-mask-failed':
        if (message.session === this.session) {
          this.rejectMasked?.(new RoundFailure(message.code, message.message));
        }
        return;
    }
  }
}
