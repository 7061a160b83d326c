import { RoundFailure, SecAggParticipation, type SecAggSession } from '@tessera/client/core';
import { type Ack, ErrorCode, TesseraError } from '@tessera/protocol';
import type { SecAggToPage, SecAggToWorker } from './messages.js';

/**
 * The worker's side of a secure-aggregation round: the same SecAggParticipation a Node client
 * runs, here in the training worker, so that the key agreement, the Shamir shares and above all
 * the masking (a PRG expansion over the whole model per peer, added into the vector) run beside
 * the training, off the page's thread. Its frames go out through the page's socket. One round's
 * part at a time: opening the next abandons the previous, as the client's round loop does.
 */

/** The code and message a failure crosses the worker boundary with (RoundFailure's, TesseraError's). */
export function failureOf(error: unknown): { code: string; message: string } {
  const code =
    error instanceof RoundFailure || error instanceof TesseraError
      ? error.code
      : ErrorCode.INTERNAL;
  return { code, message: error instanceof Error ? error.message : String(error) };
}

/** Returns the handler of the page's secagg messages; `post` sends to the page. */
export function secAggInWorker(post: (message: SecAggToPage) => void) {
  /** The round's part open now; providedAt: when its trained weights arrived (performance.now). */
  interface OpenPart {
    session: number;
    part: SecAggSession;
    providedAt?: number;
  }
  let current: OpenPart | null = null;
  let nextSend = 1;
  const awaitingAck = new Map<number, (ack: Ack) => void>();

  const partOf = (session: number): SecAggSession => {
    if (current?.session !== session) {
      throw new TesseraError(
        ErrorCode.WRONG_ROUND,
        'this secure aggregation was abandoned: a newer round began',
      );
    }
    return current.part;
  };
  const answer = (call: number, work: () => Promise<void>): void => {
    // Through a promise, so that a synchronous refusal (partOf) is answered like any other.
    Promise.resolve()
      .then(work)
      .then(
        () => post({ type: 'secagg-done', call }),
        (error: unknown) => post({ type: 'secagg-failed', call, ...failureOf(error) }),
      );
  };

  return (message: SecAggToWorker): void => {
    switch (message.type) {
      case 'secagg-open': {
        const session = message.call;
        answer(session, async () => {
          current?.part.abandon('a new round began');
          current = null;
          const part = await SecAggParticipation.create(
            message.runId,
            message.round,
            message.setup,
            message.clientId,
            (frame) =>
              new Promise<Ack>((resolve) => {
                const number = nextSend++;
                awaitingAck.set(number, resolve);
                post({ type: 'secagg-send', session, send: number, frame });
              }),
          );
          const opened: OpenPart = { session, part };
          current = opened;
          part.masked.then(
            (ack) =>
              post({
                type: 'secagg-masked',
                session,
                ack,
                afterTrainingMs: performance.now() - (opened.providedAt ?? performance.now()),
              }),
            (error: unknown) => post({ type: 'secagg-mask-failed', session, ...failureOf(error) }),
          );
        });
        return;
      }
      case 'secagg-advertise':
        answer(message.call, () => partOf(message.session).advertise());
        return;
      case 'secagg-frame':
        answer(message.call, () => partOf(message.session).handle(message.frame));
        return;
      case 'secagg-provide':
        if (current?.session === message.session) {
          current.providedAt = performance.now();
          current.part.provide(message.global, message.trained, message.numExamples);
        }
        return;
      case 'secagg-abandon':
        if (current?.session === message.session) {
          current.part.abandon(message.reason);
          current = null;
        }
        return;
      case 'secagg-sent': {
        const resolve = awaitingAck.get(message.send);
        awaitingAck.delete(message.send);
        resolve?.(message.ack);
        return;
      }
    }
  };
}
