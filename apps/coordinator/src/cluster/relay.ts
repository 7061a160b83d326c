import { randomUUID } from 'node:crypto';
import { type Ack, ErrorCode, isErrorCode, TesseraError } from '@tessera/protocol';
import { pack, unpack } from 'msgpackr';
import { PendingAnswers } from './pending-answers.js';
import type { RedisClient } from './redis.js';
import { RunChannels } from './run-channels.js';

/**
 * A client's reply to a run's round, or its message of the round's secure aggregation,
 * schema-checked where it arrived.
 */
export interface ForwardedFrame {
  runId: string;
  event: 'update' | 'evaluation' | 'statistics' | 'secagg';
  clientId: string;
  /**
   * The frame as its schema parsed it (weights and masked vectors stay raw bytes: msgpack
   * carries them as-is).
   */
  frame: unknown;
}

interface Request extends ForwardedFrame {
  id: string;
  from: string;
}

interface Answer {
  id: string;
  ack: Ack;
}

export interface ReplyRelayOptions {
  commands: RedisClient;
  subscriber: RedisClient;
  prefix: string;
  processId: string;
  /** How long a forwarded reply waits for the owner's answer (then UNAVAILABLE). Default 30 s. */
  answerTimeoutMs?: number;
  /**
   * The most bytes of forwarded replies from this process not yet answered (default 8 MiB;
   * one reply always goes). Redis queues what a subscriber has not read yet and drops the
   * subscriber's connection past `client-output-buffer-limit pubsub` (32 MiB, or 8 MiB for 60 s,
   * by default), losing what was queued: a round's updates sent at once would pass it.
   */
  maxInFlightBytes?: number;
}

export const DEFAULT_RELAY_IN_FLIGHT_BYTES = 8 * 1024 * 1024;

/**
 * Carries replies (and SecAgg messages) that reach a process which does not own their run to
 * the process that does, and the owner's verdict back, over Redis pub/sub (msgpack: weights
 * and masked vectors travel as raw bytes; the Socket.IO adapter's serverSideEmit would turn
 * them into JSON). The owner of a run subscribes
 * to the run's channel while its engine runs, so PUBLISH's receiver count says at once whether
 * any process owns it. The sender's ack carries the owner's answer: the same codes as a reply
 * sent to the owner directly.
 */
export class ReplyRelay {
  private readonly pending = new PendingAnswers<Ack>();
  private readonly served: RunChannels;
  private readonly answers: string;
  private readonly timeoutMs: number;
  private readonly maxInFlightBytes: number;
  private inFlightBytes = 0;
  /** Forwards waiting for room in the window, first come first served. */
  private readonly queue: Array<() => void> = [];
  private readonly onAnswer = (message: Buffer) => {
    const answer = unpack(message) as Answer;
    this.pending.settle(answer.id, answer.ack);
  };

  private constructor(private readonly options: ReplyRelayOptions) {
    this.answers = `${options.prefix}answers:${options.processId}`;
    this.timeoutMs = options.answerTimeoutMs ?? 30_000;
    this.maxInFlightBytes = options.maxInFlightBytes ?? DEFAULT_RELAY_IN_FLIGHT_BYTES;
    this.served = new RunChannels(options.subscriber, (runId) => this.runChannel(runId));
  }

  static async start(options: ReplyRelayOptions): Promise<ReplyRelay> {
    const relay = new ReplyRelay(options);
    await options.subscriber.subscribe(relay.answers, relay.onAnswer, true);
    return relay;
  }

  private runChannel(runId: string): string {
    return `${this.options.prefix}run:${runId}`;
  }

  /**
   * This process owns the run: replies to it that arrive elsewhere are given to `receive`, and
   * the sender is answered when `receive` returned (or, for a SecAgg message, its promise
   * settled): ok, or the code it threw.
   */
  async serve(
    runId: string,
    receive: (forwarded: ForwardedFrame) => void | Promise<void>,
  ): Promise<void> {
    const listener = (message: Buffer) => {
      const request = unpack(message) as Request;
      const answer = (ack: Ack) =>
        void this.options.commands
          .publish(
            `${this.options.prefix}answers:${request.from}`,
            pack({ id: request.id, ack } satisfies Answer),
          )
          .catch(() => {});
      const refused = (cause: unknown) =>
        answer({ ok: false, error: TesseraError.from(cause).toWire() });
      try {
        const received = receive({
          runId: request.runId,
          event: request.event,
          clientId: request.clientId,
          frame: request.frame,
        });
        if (received) received.then(() => answer({ ok: true }), refused);
        else answer({ ok: true });
      } catch (cause) {
        refused(cause);
      }
    };
    await this.served.serve(runId, listener);
  }

  async unserve(runId: string): Promise<void> {
    await this.served.unserve(runId);
  }

  /**
   * Gives the reply to its run's owner and resolves when the owner accepted it; rejects with
   * the owner's coded error, WRONG_RUN when no process runs the run, UNAVAILABLE when the owner
   * does not answer in time (it died: the client's next round goes to the new owner).
   */
  async forward(forwarded: ForwardedFrame): Promise<void> {
    const id = randomUUID();
    const packed = pack({ ...forwarded, id, from: this.options.processId } satisfies Request);
    await this.room(packed.byteLength);
    try {
      await this.send(forwarded.runId, id, packed);
    } finally {
      this.inFlightBytes -= packed.byteLength;
      this.queue.shift()?.();
    }
  }

  /** Waits until `bytes` more fit in the window (at once when nothing is in flight). */
  private async room(bytes: number): Promise<void> {
    while (this.inFlightBytes > 0 && this.inFlightBytes + bytes > this.maxInFlightBytes)
      await new Promise<void>((resolve) => this.queue.push(resolve));
    this.inFlightBytes += bytes;
  }

  private async send(runId: string, id: string, packed: Buffer): Promise<void> {
    const answered = this.pending.wait(id, this.timeoutMs, () => ({
      ok: false,
      error: {
        code: ErrorCode.UNAVAILABLE,
        message: `the coordinator that owns run ${runId} did not answer`,
      },
    }));
    const receivers = await this.options.commands.publish(this.runChannel(runId), packed);
    if (receivers === 0) {
      this.pending.cancel(id);
      throw new TesseraError(ErrorCode.WRONG_RUN, `run ${runId} is not running on any coordinator`);
    }
    const ack = await answered;
    if (!ack.ok) throw wireToError(ack.error);
  }

  async close(): Promise<void> {
    if (this.options.subscriber.isReady) {
      await this.served.unserveAll();
      await this.options.subscriber.unsubscribe(this.answers, this.onAnswer, true).catch(() => {});
    }
    this.pending.closeAll(() => ({
      ok: false,
      error: { code: ErrorCode.UNAVAILABLE, message: 'coordinator shutting down' },
    }));
  }
}

function wireToError(error: Extract<Ack, { ok: false }>['error']): TesseraError {
  const code = isErrorCode(error.code) ? error.code : ErrorCode.UNAVAILABLE;
  return new TesseraError(code, error.message, error.data);
}
