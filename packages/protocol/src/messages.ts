import { z } from 'zod';
import { ErrorCode, TesseraError } from './errors.js';
import { WIRE_LIMITS } from './limits.js';
import type { TaskRef, TrainConfig } from './run-config.js';
import type { SecAggSetupMessage } from './secagg.js';
import { isStorableText, UNSTORABLE_TEXT_MESSAGE } from './text.js';

/**
 * Every message of the wire protocol, as a zod schema and its inferred type. Frames that come
 * in are parsed with `parseFrame` before they touch any state; docs/protocol.md describes the
 * same shapes for implementers in other languages.
 */

const text = (maxLength: number) =>
  z.string().max(maxLength).refine(isStorableText, UNSTORABLE_TEXT_MESSAGE);

const id = text(WIRE_LIMITS.maxIdLength).min(1);
/** Counts and durations: integers that fit the INTEGER columns they are stored in. */
const count = z.number().int().nonnegative().max(WIRE_LIMITS.maxInteger);
const exampleCount = z.number().int().min(1).max(WIRE_LIMITS.maxNumExamples);
const finite = z.number().refine(Number.isFinite, 'must be a finite number');
/** A metric or a loss: finite and small enough that example-weighted sums cannot overflow. */
const bounded = finite.pipe(
  z.number().min(-WIRE_LIMITS.maxMetricMagnitude).max(WIRE_LIMITS.maxMetricMagnitude),
);
const fraction = finite.pipe(z.number().min(0).max(1));
/** Raw little-endian float32 bytes (MessagePack bin). Buffer is a Uint8Array, so Node passes too. */
const bytes = z.instanceof(Uint8Array);
// The pre-scan (msgpack-scan.ts) has bounded the map's size before it was built; this bound is
// the protocol's own. `accuracy` is recorded as the round's training accuracy, a fraction.
const metrics = z
  .record(text(WIRE_LIMITS.maxMetricKeyLength), bounded)
  .refine((m) => Object.keys(m).length <= WIRE_LIMITS.maxMetrics, {
    message: `at most ${WIRE_LIMITS.maxMetrics} metrics`,
  })
  .superRefine((m, context) => {
    const accuracy = m['accuracy'];
    if (accuracy !== undefined && !(accuracy >= 0 && accuracy <= 1)) {
      context.addIssue({ code: 'custom', path: ['accuracy'], message: 'must be within [0, 1]' });
    }
  });
/**
 * Why a client could not train or evaluate: a message for people and, optionally, a short
 * machine-readable code (e.g. `DATA_SHAPE_MISMATCH`), recorded with the round's outcomes.
 */
const failure = z.object({
  message: text(WIRE_LIMITS.maxErrorMessageLength),
  code: z
    .string()
    .regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'must be 1-64 characters of A-Z a-z 0-9 _ . : -')
    .optional(),
});

export const wireErrorSchema = z.object({
  code: z.string(),
  message: z.string(),
  data: z.record(z.string(), z.unknown()).optional(),
});

// ---- handshake ---------------------------------------------------------------------------

export const clientRuntimeSchema = z.enum(['node', 'browser', 'other']);

/** Sent as Socket.IO's handshake `auth` object. */
export const helloSchema = z.object({
  token: text(WIRE_LIMITS.maxTokenLength).min(1),
  protocolVersion: z.number().int(),
  client: z.object({
    name: text(WIRE_LIMITS.maxClientNameLength),
    version: text(WIRE_LIMITS.maxClientVersionLength),
    runtime: clientRuntimeSchema,
    /** The tfjs backend (or other engine) the client trains on, e.g. `wasm`, `tensorflow-gpu`, `webgpu`. */
    backend: text(WIRE_LIMITS.maxBackendLength),
    /** Examples the client holds for training (a hint for the admin; the update carries the real count). */
    numExamples: count.max(WIRE_LIMITS.maxNumExamples),
    /**
     * Held-out examples the client can evaluate on. 0 means it declines federated evaluation,
     * so the coordinator does not send it the model to evaluate; absent means unknown (asked).
     */
    numHoldout: count.max(WIRE_LIMITS.maxNumExamples).optional(),
  }),
});
export type Hello = z.infer<typeof helloSchema>;

/** First event from the coordinator after a successful connect. */
export interface Welcome {
  clientId: string;
  federationId: string;
  organisation: string;
  protocolVersion: number;
  /** Largest frame the coordinator accepts, in bytes. */
  maxFrameBytes: number;
}

// ---- coordinator -> client ---------------------------------------------------------------

export interface ModelDescriptor {
  name: string;
  paramCount: number;
}

/**
 * What the run's strategy asks of a client's local training (docs/protocol.md §5.2): FedProx
 * sends `{name: 'fedprox', settings: {proximalMu}}`. Coordinator to client, so the client checks
 * it with this schema before it reads a setting; the engine checks its strategy's settings with
 * it before sending them.
 */
export const trainStrategySchema = z.object({
  name: text(WIRE_LIMITS.maxStrategyTextLength).min(1),
  settings: z
    .record(
      text(WIRE_LIMITS.maxStrategyTextLength).min(1),
      z.union([finite, z.boolean(), text(WIRE_LIMITS.maxStrategyTextLength)]),
    )
    .refine((s) => Object.keys(s).length <= WIRE_LIMITS.maxStrategySettings, {
      message: `at most ${WIRE_LIMITS.maxStrategySettings} settings`,
    }),
});
export type TrainStrategy = z.infer<typeof trainStrategySchema>;

export interface TrainInstruction {
  runId: string;
  round: number;
  model: ModelDescriptor;
  /** What the run trains: fetch its definition once per sha256 with the `task` event. */
  task: TaskRef;
  /** The run's local-training settings under the run's names, and the round seed (run-config.ts). */
  config: TrainConfig;
  /**
   * Settings of the run's strategy that the client's training must honour; absent when the
   * strategy has none. A client that cannot honour one fails the round (§5.2).
   */
  strategy?: TrainStrategy;
  /**
   * A secure-aggregation run's round setup (§5.11): the client masks its change and sends it
   * through `secagg` instead of an `update`. Absent in every other run.
   */
  secureAggregation?: SecAggSetupMessage;
  /** Unix ms after which the coordinator stops waiting for this round's updates. */
  deadline: number;
  weights: Uint8Array;
  /**
   * SCAFFOLD's server control variate c, raw little-endian float32 like `weights` (4 bytes per
   * parameter), sent with `strategy.name` `scaffold` only (§5.2); absent otherwise.
   */
  controlVariate?: Uint8Array;
}

export interface EvaluateInstruction {
  runId: string;
  round: number;
  model: ModelDescriptor;
  task: TaskRef;
  batchSize: number;
  deadline: number;
  weights: Uint8Array;
}

/**
 * The federated statistics round (docs/protocol.md §5.10), before round 1 of a run whose task
 * leaves preprocessing constants to statistics: summarise your rows for `task`, reply with
 * `statistics`. `task` is the task as the run names it (its constants still open).
 */
export interface StatisticsInstruction {
  runId: string;
  task: TaskRef;
  /** Unix ms after which the coordinator stops waiting for this round's replies. */
  deadline: number;
}

/** The coordinator closed a round the client was part of (deadline, run stopped). */
export interface RoundClosed {
  runId: string;
  round: number;
  reason: string;
}

// ---- client -> coordinator ---------------------------------------------------------------

export const trainReplySchema = z.discriminatedUnion('status', [
  z.object({
    status: z.literal('ok'),
    runId: id,
    round: count,
    weights: bytes,
    numExamples: exampleCount,
    durationMs: count,
    metrics,
    /** SCAFFOLD's Δc_i, float32 like `weights`; only when the instruction carried controlVariate. */
    controlDelta: bytes.optional(),
  }),
  z.object({
    status: z.literal('failed'),
    runId: id,
    round: count,
    error: failure,
  }),
]);
export type TrainReply = z.infer<typeof trainReplySchema>;

export const evaluateReplySchema = z.discriminatedUnion('status', [
  z.object({
    status: z.literal('ok'),
    runId: id,
    round: count,
    numExamples: exampleCount,
    loss: bounded,
    accuracy: fraction,
  }),
  z.object({
    status: z.literal('failed'),
    runId: id,
    round: count,
    error: failure,
  }),
]);
export type EvaluateReply = z.infer<typeof evaluateReplySchema>;

/**
 * `statistics` (C→S, acked): the answer to a StatisticsInstruction. `statistics` is the
 * client's summary of its own rows (@tessera/data's TabularStatistics: rows, then per column
 * {name, type: 'numeric', count, mean, m2} or {name, type: 'categorical', counts}); its
 * content is checked by the coordinator against the run's task (parseTabularStatistics), so
 * this schema checks only the envelope. The pre-scan bounds its size (CLIENT_FRAME_LIMITS).
 */
export const statisticsReplySchema = z.discriminatedUnion('status', [
  z.object({ status: z.literal('ok'), runId: id, statistics: z.unknown() }),
  z.object({ status: z.literal('failed'), runId: id, error: failure }),
]);
export type StatisticsReply = z.infer<typeof statisticsReplySchema>;

/** `task` (C→S, acked): the definition of a task a run of the client's federation trains. */
export const taskRequestSchema = z.object({
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits'),
});
export type TaskRequest = z.infer<typeof taskRequestSchema>;

/**
 * The answer to `task`: the definition as stored (its canonical JSON hashes to the sha256
 * asked for, which the client checks), or NOT_FOUND.
 */
export type TaskAck =
  | { ok: true; task: Record<string, unknown> }
  | { ok: false; error: z.infer<typeof wireErrorSchema> };

/** Progress while training, so admins see a live client; best effort, never acknowledged. */
export const progressSchema = z.object({
  runId: id,
  round: count,
  epoch: count,
  epochs: count,
  batch: count,
  batches: count,
  loss: bounded.nullable(),
});
export type Progress = z.infer<typeof progressSchema>;

/** What every acknowledged client frame gets back. */
export type Ack = { ok: true } | { ok: false; error: z.infer<typeof wireErrorSchema> };

/**
 * Validates an untrusted frame. Throws MALFORMED_FRAME naming the first offending field, so the
 * sender learns what was wrong and where.
 */
export function parseFrame<S extends z.ZodType>(
  schema: S,
  frame: unknown,
  what: string,
): z.infer<S> {
  const result = schema.safeParse(frame);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const where = issue && issue.path.length > 0 ? issue.path.join('.') : '(frame)';
  throw new TesseraError(
    ErrorCode.MALFORMED_FRAME,
    `malformed ${what}: ${where}: ${issue?.message ?? 'invalid'}`,
    { field: where },
  );
}
