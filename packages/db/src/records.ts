/**
 * The plain records the repositories return: Dates, numbers, strings and Uint8Arrays only,
 * never Prisma's model types, so callers do not depend on the generated client.
 */
import type { RoundPhases, StoredRunConfig, TaskRef } from '@tessera/protocol';
import type { LeaseFence } from './leases.js';

export const RUN_STATUSES = [
  'created',
  'running',
  'completed',
  'failed',
  'stopped',
  'paused',
] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

/** `committed` when the round row is written; `evaluated` once an evaluation is recorded. */
export const ROUND_STATUSES = ['committed', 'evaluated'] as const;
export type RoundStatus = (typeof ROUND_STATUSES)[number];

export interface FederationRecord {
  id: string;
  name: string;
  description: string | null;
  createdAt: Date;
}

/** An organisation's credential within a federation. The token itself is never stored. */
export interface ClientRecord {
  id: string;
  federationId: string;
  organisation: string;
  label: string | null;
  createdAt: Date;
  revokedAt: Date | null;
  lastSeenAt: Date | null;
}

/** live: real clients; simulation: the simulator's virtual clients; replay: recomputed from another run. */
export const RUN_ORIGINS = ['live', 'simulation', 'replay'] as const;
export type RunOrigin = (typeof RUN_ORIGINS)[number];

// A run's config is defined once, by its schema in @tessera/protocol (run-config.ts).
export {
  DEFAULT_UPDATE_STORAGE_LIMIT_MB,
  type RunConfig,
  type RunConfigInput,
  type StoredRunConfig,
} from '@tessera/protocol';

export interface RunRecord {
  id: string;
  federationId: string;
  name: string;
  status: RunStatus;
  config: StoredRunConfig;
  /** The last committed round; 0 before round 1 commits. */
  currentRound: number;
  origin: RunOrigin;
  /** For a replay: the run whose recorded updates it was computed from. */
  sourceRunId: string | null;
  /** Bytes of client updates kept so far. */
  keptUpdateBytes: number;
  /** The first round committed without its updates' bytes (storage limit), or null. */
  updatesTruncatedAtRound: number | null;
  /**
   * How the run's round seeds derive from `config.seed` (the coordinator's seeds.ts): 1 for
   * runs created before version 2, 2 since. Set by the database, never by the caller.
   */
  seedDerivation: number;
  /**
   * The federated statistics round's result, where the task needs one: the combined
   * statistics (@tessera/data's TabularStatistics; never a client's own) and the task with
   * their constants filled in, which the run trains from then on. Null until the round ran.
   */
  statistics: Record<string, unknown> | null;
  resolvedTask: TaskRef | null;
  error: string | null;
  /**
   * Why the run ended on its own before its last round, e.g. "privacy budget: epsilon would
   * be 2.1 > budget 2" for a dp-fedavg run stopped by its budget; null otherwise.
   */
  endReason: string | null;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
}

/**
 * What became of a selected client in a round: its update was aggregated (updated), it said
 * it could not train (failed), the coordinator refused its update (rejected), it disconnected
 * before replying (dropped), or it let the deadline pass (timed-out).
 */
export const CLIENT_OUTCOMES = ['updated', 'failed', 'rejected', 'dropped', 'timed-out'] as const;
export type ClientOutcomeKind = (typeof CLIENT_OUTCOMES)[number];

/** Stored reasons are clipped to this many characters by whoever records them. */
export const MAX_OUTCOME_REASON_LENGTH = 500;
export const MAX_OUTCOME_CODE_LENGTH = 64;

export interface ClientOutcome {
  clientId: string;
  outcome: ClientOutcomeKind;
  /**
   * A machine-readable cause: the coordinator's ErrorCode for a rejected update, UNAVAILABLE
   * for a client dropped because the partial sum holding its update was lost (several
   * coordinators); else null.
   */
  code: string | null;
  /**
   * Why, in words: the client's own message (failed), the coordinator's refusal (rejected),
   * "disconnected" or "partial aggregate lost: …" (dropped), "deadline passed" (timed-out);
   * null for updated.
   */
  reason: string | null;
}

export interface RoundRecord {
  id: string;
  runId: string;
  number: number;
  status: RoundStatus;
  startedAt: Date;
  finishedAt: Date;
  durationMs: number;
  selectedClientIds: string[];
  participantClientIds: string[];
  droppedClientIds: string[];
  numExamples: number;
  trainLoss: number | null;
  trainAccuracy: number | null;
  federatedLoss: number | null;
  federatedAccuracy: number | null;
  federatedNumExamples: number | null;
  centralLoss: number | null;
  centralAccuracy: number | null;
  centralNumExamples: number | null;
  /**
   * The task's loss and metrics from central evaluation (accuracy, auc, mae, rmse: those the
   * task asks for), on MNIST's test set or the task's held-out set; null where none ran.
   */
  centralMetrics: Record<string, number> | null;
  metrics: Record<string, number>;
  /** Each selected client's outcome, in selection order (empty for rounds recorded before). */
  outcomes: ClientOutcome[];
  /** The round's privacy mechanisms (RoundPrivacyRecord: DP-FedAvg, SecAgg, local DP); null without any. */
  privacy: RoundPrivacyRecord | null;
  /** Where the round's time went (RoundPhases); null for rounds recorded before phases were. */
  phases: RoundPhases | null;
}

/** Where a round's time went (@tessera/protocol's RoundPhases, defined there for the console). */
export type { RoundPhases };

/** The phases a commit writes: those that end before it. */
export type PhasesBeforeCommit = Pick<
  RoundPhases,
  'waitingMs' | 'distributionMs' | 'trainingMs' | 'aggregationMs'
>;

/** The phases recorded after the commit (rounds.recordPhases). */
export type PhasesAfterCommit = {
  commitMs: number;
  evaluationMs: number;
  /** Null or absent: the round had no central evaluation. */
  centralEvaluationMs?: number | null;
};

/**
 * What a dp-fedavg round releases about its privacy, as @tessera/aggregation's RoundPrivacy
 * gives it (flat: numbers, strings, booleans, nulls). The fields researchers read:
 * epsilon (at delta, after this round), delta, clipNorm, noiseStd, steps, clippedCount.
 */
export type RoundPrivacyRecord = Readonly<Record<string, number | string | boolean | null>>;

export interface ClientUpdateInput {
  clientId: string;
  /** Order of arrival within the round, from 0. */
  arrivalIndex: number;
  numExamples: number;
  durationMs: number;
  sizeBytes: number;
  /**
   * sha256 (lowercase hex) of the update's bytes as received. Required without `weights`;
   * with them it may be left out: commit then hashes the bytes it stores (and checks a given
   * one against them), so that each update is hashed once.
   */
  sha256?: string;
  metrics: Record<string, number>;
  /** The update's bytes, kept when the run keeps updates (checked against sha256). */
  weights?: Uint8Array | null;
  /**
   * SCAFFOLD's control-variate change Δc_i (float32 bytes, as many values as `weights`), kept
   * with `weights` and under the same rule; commit hashes the bytes it stores. Absent or null
   * for every other strategy.
   */
  controlDelta?: Uint8Array | null;
  /** The client's runtime and tfjs backend, as it announced them at the handshake. */
  runtime?: string | null;
  backend?: string | null;
}

export interface ClientUpdateRecord
  extends Omit<ClientUpdateInput, 'weights' | 'sha256' | 'controlDelta'> {
  id: string;
  sha256: string;
  roundId: string;
  /** The round's number within its run. */
  round: number;
  runtime: string | null;
  backend: string | null;
  /** Whether the update's bytes were kept (read them with rounds.updatesWithWeights). */
  kept: boolean;
  /**
   * The sha256 of the SCAFFOLD control-variate change Δc_i kept with the update's bytes; null
   * where none was kept (another strategy, bytes not kept, or committed before Δc_i was kept).
   */
  controlDeltaSha256: string | null;
}

/** A kept update with its bytes, verified against its sha256 on the way out. */
export interface KeptUpdate {
  clientId: string;
  arrivalIndex: number;
  numExamples: number;
  sha256: string;
  weights: Uint8Array;
  /**
   * Its SCAFFOLD control-variate change Δc_i, verified against the sha256 stored with it; null
   * where none was kept (another strategy, or an update committed before Δc_i was kept).
   */
  controlDelta: Uint8Array | null;
}

export interface RoundCommit {
  runId: string;
  round: number;
  startedAt: Date;
  finishedAt: Date;
  selectedClientIds: string[];
  participantClientIds: string[];
  droppedClientIds: string[];
  numExamples: number;
  trainLoss: number | null;
  trainAccuracy: number | null;
  metrics: Record<string, number>;
  /** Each selected client's outcome (at most one per client, only selected clients). */
  outcomes?: ClientOutcome[];
  updates: ClientUpdateInput[];
  /** The new global weights: little-endian float32 bytes. */
  checkpoint: Uint8Array;
  /** The strategy's state after this round (its own byte format), stored with the checkpoint. */
  strategyState?: Uint8Array | null;
  /** DP-FedAvg's accounting of the round (AggregateResult.privacy); null or absent without DP. */
  privacy?: RoundPrivacyRecord | null;
  /** The round's phases so far; absent: none recorded (RoundRecord.phases stays null). */
  phases?: PhasesBeforeCommit;
  /**
   * The writer's run lease (LeaseRepository): when given, the commit is refused with CONFLICT
   * (`data.lease: 'lost'`) unless it is the run's current lease, checked in the transaction.
   */
  fence?: LeaseFence;
}

export interface EvaluationResult {
  loss: number;
  accuracy: number;
  numExamples: number;
}

export interface RoundEvaluation {
  federated?: EvaluationResult;
  /** `metrics`: the task's loss and metrics on the held-out set (RoundRecord.centralMetrics). */
  central?: EvaluationResult & { metrics?: Record<string, number> };
}

export interface CheckpointRecord {
  /** 0 for the initial model, otherwise the round that produced these weights. */
  round: number;
  /** Little-endian float32 bytes. */
  weights: Uint8Array;
  /** sha256 (lowercase hex) of `weights`. */
  sha256: string;
  paramCount: number;
  /** The strategy's state after this round, or null (stateless strategy, round 0). */
  strategyState: Uint8Array | null;
}

/**
 * A task with the constants of a run's statistics round filled in (derived from the stored
 * task `sourceSha256`, content-addressed by its own sha256).
 */
export interface ResolvedTaskRecord {
  sha256: string;
  sourceSha256: string;
  definition: Record<string, unknown>;
  paramCount: number;
  createdAt: Date;
}

export interface TaskRecord {
  id: string;
  name: string;
  version: number;
  /** sha256 of the definition's canonical JSON: what runs and rounds record. */
  sha256: string;
  /** The task definition as @tessera/tasks validated it. */
  definition: Record<string, unknown>;
  paramCount: number;
  /** Whether initial weights were uploaded with it (TaskRepository.weights). */
  hasWeights: boolean;
  builtin: boolean;
  createdAt: Date;
}

/** The formats a held-out set is uploaded in. */
export const HOLDOUT_FORMATS = ['csv', 'tsv', 'jsonl'] as const;
export type HoldoutFormat = (typeof HOLDOUT_FORMATS)[number];

/** A task's held-out set, without its bytes (TaskRepository.holdout has them). */
export interface TaskHoldoutRecord {
  taskSha256: string;
  format: HoldoutFormat;
  /** sha256 of the file as uploaded, and its size. */
  sha256: string;
  byteLength: number;
  /** Examples in it. */
  rows: number;
  uploadedAt: Date;
}
