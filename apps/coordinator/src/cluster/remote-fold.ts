import { randomUUID } from 'node:crypto';
import { checkExactUpdate, PartialRound, type RoundPartial } from '@tessera/aggregation';
import {
  ErrorCode,
  isErrorCode,
  parseFrame,
  sha256Hex,
  TesseraError,
  type TrainReply,
  trainReplySchema,
  type WireError,
} from '@tessera/protocol';
import { pack, unpack } from 'msgpackr';
import { z } from 'zod';
import { PendingAnswers } from './pending-answers.js';
import type { RedisClient } from './redis.js';
import { RunChannels } from './run-channels.js';

/**
 * Aggregation where the updates arrive (issue 16 item 3; docs/research.md "Folding where the
 * updates arrive"). In a run whose rule sums exactly (the FedAvg family with `arithmetic:
 * 'exact'`, see RunEngine.foldsRemotely), an update that reaches a process which does not own
 * the run is checked there and, once the owner said the client may answer this round, folded
 * there into a partial sum; only its small claim crosses Redis. When the owner closes the round
 * it collects each process's partial and merges it (RoundAggregator.addPartial). Four messages,
 * msgpack over Redis pub/sub:
 *
 * - claim, arrival → owner on `<prefix>fold:<runId>` (the owner subscribes while it runs the
 *   run): the client, round, example count, duration, size, sha256 of the weights' bytes,
 *   parameter count and metrics;
 * - verdict, owner → arrival on `<prefix>fold-answers:<process>`: fold (with the key of the
 *   round's attempt), forward (this run does not fold remotely: send the whole frame through
 *   the ReplyRelay), or the owner's coded refusal (not selected, duplicate, round closed...);
 * - collect, owner → arrival on `<prefix>partials:<process>`: the run and the attempt's key;
 * - partial, arrival → owner on `<prefix>fold-answers:<owner>`: the clients folded and their
 *   RoundPartial, or none.
 *
 * The arrival side folds only after a `fold` verdict, so a refused client leaves nothing in
 * any partial, and acks its client only after folding. A process that does not answer a
 * collect in time (it died) loses its partial: the owner records its clients dropped.
 */
export interface RemoteFoldOptions {
  commands: RedisClient;
  subscriber: RedisClient;
  prefix: string;
  processId: string;
  /** How long a claim waits for the owner's verdict (then UNAVAILABLE). Default 30 s. */
  verdictTimeoutMs?: number;
  /** How long the owner waits for each process's partial (then its clients drop). Default 10 s. */
  collectTimeoutMs?: number;
  /** Told of each update folded here for a run another process owns (metrics). */
  onFolded?: (runId: string) => void;
  /** Told of each partial asked for as owner: received (null or a sum) or lost (metrics). */
  onCollected?: (received: boolean) => void;
}

/** What a process tells a run's owner of an update it checked, instead of the update. */
export interface RemoteUpdateClaim {
  runId: string;
  round: number;
  clientId: string;
  numExamples: number;
  durationMs: number;
  /** The weights' size on the wire, and the sha256 of those bytes (the round's update record). */
  sizeBytes: number;
  sha256: string;
  /** float32 values in the update: the owner checks it against the model. */
  numParameters: number;
  metrics: Record<string, number>;
}

/** The owner's answer to a claim: fold into the partial of this attempt, or send the frame. */
export type ClaimVerdict = { fold: true; key: string } | { fold: false };

/** A partial as it reaches the owner: the clients it sums, and the sum. */
export interface CollectedPartial extends RoundPartial {
  clientIds: string[];
}

const okReplySchema = trainReplySchema.options[0];
/** A claim crossed Redis from another process: parsed again before the engine sees it. */
const claimSchema = okReplySchema
  .pick({ runId: true, round: true, numExamples: true, durationMs: true, metrics: true })
  .extend({
    clientId: z.string().min(1).max(200),
    sizeBytes: z.int().min(0),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    numParameters: z.int().min(0),
  });

type Message =
  | { kind: 'claim'; id: string; from: string; claim: RemoteUpdateClaim }
  | {
      kind: 'verdict';
      id: string;
      verdict: ClaimVerdict | { fold: false; error: WireError };
    }
  | { kind: 'collect'; id: string; from: string; runId: string; key: string }
  | { kind: 'partial'; id: string; partial: CollectedPartial | null };

interface OpenPartial {
  runId: string;
  key: string;
  round: PartialRound;
  clientIds: string[];
}

export class RemoteFold {
  private readonly answersChannel: string;
  private readonly partialsChannel: string;
  private readonly pending = new PendingAnswers<Message>();
  private readonly served: RunChannels;
  /** Partials this process folds for runs owned elsewhere, by attempt key. */
  private readonly partials = new Map<string, OpenPartial>();
  /** Claims of each run waiting for their verdict: a collect waits for them to settle. */
  private readonly claiming = new Map<string, Set<Promise<unknown>>>();
  /** Runs whose owner said they do not fold remotely (a run's config never changes). */
  private readonly forwardOnly = new Set<string>();
  private readonly onAnswer = (message: Buffer) => {
    const answer = unpack(message) as Message;
    this.pending.settle(answer.id, answer);
  };
  private readonly onCollect = (message: Buffer) => {
    void this.answerCollect(unpack(message) as Message).catch(() => {});
  };

  private constructor(private readonly options: RemoteFoldOptions) {
    this.answersChannel = `${options.prefix}fold-answers:${options.processId}`;
    this.partialsChannel = `${options.prefix}partials:${options.processId}`;
    this.served = new RunChannels(options.subscriber, (runId) => this.runChannel(runId));
  }

  static async start(options: RemoteFoldOptions): Promise<RemoteFold> {
    const fold = new RemoteFold(options);
    await options.subscriber.subscribe(fold.answersChannel, fold.onAnswer, true);
    await options.subscriber.subscribe(fold.partialsChannel, fold.onCollect, true);
    return fold;
  }

  private runChannel(runId: string): string {
    return `${this.options.prefix}fold:${runId}`;
  }

  // ---- the arrival side --------------------------------------------------------------------

  /**
   * An update for a run another process owns: checked, claimed, and folded here when the owner
   * says so. Resolves true when it was folded (ack the client ok), false when it must go to
   * the owner whole (a failed reply, SCAFFOLD's controlDelta, an update these checks refuse,
   * whose refusal the owner records; a run that does not fold remotely; or no process serving
   * the run's claims, where the relay says WRONG_RUN); rejects with the owner's coded refusal,
   * UNAVAILABLE past the verdict timeout.
   */
  async tryFold(runId: string, clientId: string, reply: TrainReply): Promise<boolean> {
    if (reply.status !== 'ok' || reply.controlDelta !== undefined) return false;
    if (this.forwardOnly.has(runId)) return false;
    const { weights: bytes } = reply;
    if (bytes.byteLength % 4 !== 0) return false;
    const update = {
      clientId,
      numExamples: reply.numExamples,
      weights: new Float32Array(bytes.byteLength / 4),
      metrics: reply.metrics,
    };
    new Uint8Array(update.weights.buffer).set(bytes);
    try {
      checkExactUpdate(update, update.weights.length);
    } catch {
      return false;
    }
    const claim: RemoteUpdateClaim = {
      runId,
      round: reply.round,
      clientId,
      numExamples: reply.numExamples,
      durationMs: reply.durationMs,
      sizeBytes: bytes.byteLength,
      // Off the event loop (libuv's pool), like the owner's own hashing of unkept updates.
      sha256: await sha256Hex(bytes),
      numParameters: update.weights.length,
      metrics: reply.metrics,
    };
    const asked = this.ask(runId, claim);
    let claims = this.claiming.get(runId);
    if (!claims) {
      claims = new Set();
      this.claiming.set(runId, claims);
    }
    claims.add(asked);
    let verdict: ClaimVerdict | 'unserved';
    try {
      verdict = await asked;
    } finally {
      claims.delete(asked);
      if (claims.size === 0) this.claiming.delete(runId);
    }
    if (verdict === 'unserved') return false;
    if (!verdict.fold) {
      this.forwardOnly.add(runId);
      return false;
    }
    let open = this.partials.get(verdict.key);
    if (!open) {
      open = {
        runId,
        key: verdict.key,
        round: new PartialRound(update.weights.length),
        clientIds: [],
      };
      this.partials.set(verdict.key, open);
    }
    // Checked above against the same length: it folds. (Were it to throw, the client is
    // missing from the partial the owner collects, and the owner drops it.)
    open.round.add(update);
    open.clientIds.push(clientId);
    this.options.onFolded?.(runId);
    return true;
  }

  /** The owner's verdict; 'unserved' when no process listens for the run's claims. */
  private async ask(runId: string, claim: RemoteUpdateClaim): Promise<ClaimVerdict | 'unserved'> {
    const id = randomUUID();
    const answered = this.awaitAnswer(
      id,
      this.options.verdictTimeoutMs ?? 30_000,
      `the coordinator that owns run ${runId} did not answer`,
    );
    const receivers = await this.options.commands.publish(
      this.runChannel(runId),
      pack({ kind: 'claim', id, from: this.options.processId, claim } satisfies Message),
    );
    if (receivers === 0) {
      this.pending.cancel(id);
      return 'unserved';
    }
    const answer = await answered;
    if (answer.kind !== 'verdict') throw unexpected(answer);
    const { verdict } = answer;
    if ('error' in verdict) throw wireToError(verdict.error);
    return verdict;
  }

  /** The owner asks for a partial: once the run's claims in flight settled, it goes, and is forgotten. */
  private async answerCollect(message: Message): Promise<void> {
    if (message.kind !== 'collect') return;
    const inFlight = this.claiming.get(message.runId);
    if (inFlight) await Promise.allSettled([...inFlight]);
    const open = this.partials.get(message.key);
    // This attempt is over: so is every other partial of the run (an earlier attempt, or a
    // former owner's round), which no one will collect any more.
    for (const [key, partial] of this.partials)
      if (partial.runId === message.runId) this.partials.delete(key);
    const partial: CollectedPartial | null =
      open === undefined ? null : { clientIds: open.clientIds, ...open.round.toPartial() };
    await this.options.commands.publish(
      `${this.options.prefix}fold-answers:${message.from}`,
      pack({ kind: 'partial', id: message.id, partial } satisfies Message),
    );
  }

  // ---- the owner's side ----------------------------------------------------------------------

  /**
   * This process owns the run: claims of updates that reach other processes are given to
   * `accept`, which records the client in the round and returns the verdict, or throws the
   * client's coded refusal.
   */
  async serve(runId: string, accept: (from: string, claim: RemoteUpdateClaim) => ClaimVerdict) {
    const listener = (raw: Buffer) => {
      const message = unpack(raw) as Message;
      if (message.kind !== 'claim') return;
      let verdict: Extract<Message, { kind: 'verdict' }>['verdict'];
      try {
        const claim = parseFrame(claimSchema, message.claim, 'claim');
        if (claim.runId !== runId)
          throw new TesseraError(
            ErrorCode.WRONG_RUN,
            `claim for run ${claim.runId} sent to ${runId}`,
          );
        verdict = accept(message.from, claim);
      } catch (cause) {
        verdict = { fold: false, error: TesseraError.from(cause).toWire() };
      }
      void this.options.commands
        .publish(
          `${this.options.prefix}fold-answers:${message.from}`,
          pack({ kind: 'verdict', id: message.id, verdict } satisfies Message),
        )
        .catch(() => {});
    };
    await this.served.serve(runId, listener);
  }

  async unserve(runId: string): Promise<void> {
    await this.served.unserve(runId);
  }

  /**
   * Asks each process for its partial of the attempt `key`, all at once. Each entry: the
   * partial, null when the process folded nothing for it, or the error that says why none came
   * (UNAVAILABLE: the process is gone, or did not answer within the collect timeout).
   */
  async collect(
    runId: string,
    key: string,
    processIds: readonly string[],
  ): Promise<Map<string, CollectedPartial | null | TesseraError>> {
    const timeoutMs = this.options.collectTimeoutMs ?? 10_000;
    const answers = await Promise.all(
      processIds.map(async (processId) => {
        try {
          const id = randomUUID();
          const answered = this.awaitAnswer(
            id,
            timeoutMs,
            `coordinator ${processId} did not deliver its partial of run ${runId} within ${timeoutMs} ms`,
          );
          const receivers = await this.options.commands.publish(
            `${this.options.prefix}partials:${processId}`,
            pack({
              kind: 'collect',
              id,
              from: this.options.processId,
              runId,
              key,
            } satisfies Message),
          );
          if (receivers === 0) {
            this.pending.cancel(id);
            throw new TesseraError(
              ErrorCode.UNAVAILABLE,
              `coordinator ${processId} is gone: its partial of run ${runId} is lost`,
            );
          }
          const answer = await answered;
          if (answer.kind !== 'partial') throw unexpected(answer);
          this.options.onCollected?.(true);
          return [processId, answer.partial] as const;
        } catch (cause) {
          this.options.onCollected?.(false);
          return [processId, TesseraError.from(cause)] as const;
        }
      }),
    );
    return new Map<string, CollectedPartial | null | TesseraError>(answers);
  }

  // ---- both -----------------------------------------------------------------------------------

  /** An answer with this id, or an UNAVAILABLE one (as a rejection) past `timeoutMs`. */
  private awaitAnswer(id: string, timeoutMs: number, late: string): Promise<Message> {
    return this.pending.wait(id, timeoutMs, () => {
      throw new TesseraError(ErrorCode.UNAVAILABLE, late);
    });
  }

  async close(): Promise<void> {
    if (this.options.subscriber.isReady) {
      await this.served.unserveAll();
      for (const [channel, listener] of [
        [this.answersChannel, this.onAnswer],
        [this.partialsChannel, this.onCollect],
      ] as const)
        await this.options.subscriber.unsubscribe(channel, listener, true).catch(() => {});
    }
    this.pending.closeAll((id) => ({
      kind: 'verdict',
      id,
      verdict: {
        fold: false,
        error: { code: ErrorCode.UNAVAILABLE, message: 'coordinator shutting down' },
      },
    }));
    this.partials.clear();
  }
}

function unexpected(message: Message): TesseraError {
  return new TesseraError(ErrorCode.UNAVAILABLE, `unexpected ${message.kind} answer`);
}

function wireToError(error: WireError): TesseraError {
  const code = isErrorCode(error.code) ? error.code : ErrorCode.UNAVAILABLE;
  return new TesseraError(code, error.message, error.data);
}
