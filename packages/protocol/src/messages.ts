import { z } from 'zod';
import { ErrorCode, TesseraError } from './errors.js';

/**
 * Every message of the wire protocol, as a zod schema and its inferred type. Frames that come
 * in are parsed with `parseFrame` before they touch any state; docs/protocol.md describes the
 * same shapes for implementers in other languages.
 */

const id = z.string().min(1).max(128);
const count = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const finite = z.number().refine(Number.isFinite, 'must be a finite number');
/** Raw little-endian float32 bytes (MessagePack bin). Buffer is a Uint8Array, so Node passes too. */
const bytes = z.instanceof(Uint8Array);
const metrics = z.record(z.string().max(64), finite).refine((m) => Object.keys(m).length <= 64, {
  message: 'at most 64 metrics',
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
  token: z.string().min(1).max(512),
  protocolVersion: z.number().int(),
  client: z.object({
    name: z.string().max(64),
    version: z.string().max(32),
    runtime: clientRuntimeSchema,
    /** The tfjs backend (or other engine) the client trains on, e.g. `wasm`, `tensorflow-gpu`, `webgpu`. */
    backend: z.string().max(64),
    /** Examples the client holds for training (a hint for the admin; the update carries the real count). */
    numExamples: count,
    /**
     * Held-out examples the client can evaluate on. 0 means it declines federated evaluation,
     * so the coordinator does not send it the model to evaluate; absent means unknown (asked).
     */
    numHoldout: count.optional(),
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

export interface TrainConfig {
  epochs: number;
  batchSize: number;
  learningRate: number;
  /** Seed for the client's per-epoch shuffles: the run seed mixed with the round. */
  seed: number;
}

export interface TrainInstruction {
  runId: string;
  round: number;
  model: ModelDescriptor;
  config: TrainConfig;
  /** Unix ms after which the coordinator stops waiting for this round's updates. */
  deadline: number;
  weights: Uint8Array;
}

export interface EvaluateInstruction {
  runId: string;
  round: number;
  model: ModelDescriptor;
  batchSize: number;
  deadline: number;
  weights: Uint8Array;
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
    numExamples: count.min(1),
    durationMs: count,
    metrics,
  }),
  z.object({
    status: z.literal('failed'),
    runId: id,
    round: count,
    error: z.object({ message: z.string().max(2000) }),
  }),
]);
export type TrainReply = z.infer<typeof trainReplySchema>;

export const evaluateReplySchema = z.discriminatedUnion('status', [
  z.object({
    status: z.literal('ok'),
    runId: id,
    round: count,
    numExamples: count.min(1),
    loss: finite,
    accuracy: finite.pipe(z.number().min(0).max(1)),
  }),
  z.object({
    status: z.literal('failed'),
    runId: id,
    round: count,
    error: z.object({ message: z.string().max(2000) }),
  }),
]);
export type EvaluateReply = z.infer<typeof evaluateReplySchema>;

/** Progress while training, so admins see a live client; best effort, never acknowledged. */
export const progressSchema = z.object({
  runId: id,
  round: count,
  epoch: count,
  epochs: count,
  batch: count,
  batches: count,
  loss: finite.nullable(),
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
