import type { TabularStatistics } from '@tessera/data';
import type { ModelDescriptor, TrainConfig } from '@tessera/protocol';
import type { TaskDefinition } from '@tessera/tasks';
import type { LocalTrainingSetting, LocalTrainingSettings } from './strategy-settings.js';

/** What the client reports as it trains: one call per batch. */
export interface TrainerProgress {
  /** 1-based. */
  epoch: number;
  epochs: number;
  /** 1-based, within the epoch. */
  batch: number;
  batches: number;
  loss: number | null;
}

export interface TrainRequest {
  model: ModelDescriptor;
  /** The task the run trains, fetched once per sha256 and checked against it by the client. */
  task: TaskDefinition;
  /** The global model, checked (length, finite) by the client. */
  weights: Float32Array;
  config: TrainConfig;
  /**
   * What the run's strategy asks of this round's training (FedProx's proximalMu), checked by
   * the client against `supportedSettings`; absent or empty: plain SGD.
   */
  settings?: LocalTrainingSettings;
  /**
   * SCAFFOLD's c − c_i, added to every gradient (@tessera/ml's gradientCorrection); set by the
   * client when `settings.controlVariateOption` is, absent otherwise.
   */
  gradientCorrection?: Float32Array;
}

export interface TrainOutcome {
  weights: Float32Array;
  loss: number;
  accuracy: number;
  numExamples: number;
  durationMs: number;
  samplesPerSecond: number;
  /** Local SGD steps taken (SCAFFOLD's K); a SCAFFOLD round fails without it. */
  steps?: number;
  /**
   * The update's training metrics as sent (docs/protocol.md §5.6): `loss`, `accuracy` for
   * classification tasks only, and the task's other metrics (auc, mae, rmse). Absent: `loss`
   * and `accuracy` of the fields above. The client adds `samplesPerSecond`.
   */
  metrics?: Readonly<Record<string, number>>;
}

export interface EvaluateRequest {
  model: ModelDescriptor;
  task: TaskDefinition;
  weights: Float32Array;
  batchSize: number;
}

export interface EvaluateOutcome {
  loss: number;
  accuracy: number;
  numExamples: number;
}

/**
 * A round this client cannot do, with a short code for the round's outcomes (what admins see):
 * e.g. TASK_HASH_MISMATCH, DATA_SCHEMA_MISMATCH, TASK_NOT_SUPPORTED. The message says what to
 * change.
 */
export class RoundFailure extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'RoundFailure';
  }
}

/**
 * Where local training happens, apart from the connection: in this thread (TfjsTrainer, the Node
 * client) or in a Web Worker (the browser client, whose page keeps the socket so that a long GPU
 * step in the worker never starves the connection's heartbeats). It holds the examples; the
 * client only ever sees weights, counts and metrics.
 */
export interface LocalTrainer {
  /** Examples it trains on. */
  readonly numExamples: number;
  /**
   * Held-out examples for federated evaluation (0: it declines evaluation; undefined: not
   * known before a task says how to read the data, so the hello omits it, §4.1).
   */
  readonly numHoldout: number | undefined;
  /**
   * The strategy settings its training applies. The client fails a round that asks for one
   * not listed (absent: none), so a trainer that ignores a setting never trains without it.
   */
  readonly supportedSettings?: readonly LocalTrainingSetting[];
  train(
    request: TrainRequest,
    onProgress: (progress: TrainerProgress) => void,
  ): Promise<TrainOutcome>;
  evaluate(request: EvaluateRequest): Promise<EvaluateOutcome>;
  /**
   * The federated statistics round (docs/protocol.md): this client's summary of its own rows
   * for the columns whose constants `task` leaves to statistics (counts, means, sums of
   * squared deviations, category counts; never a row). Absent: the client declines the round.
   * A RoundFailure says why its data cannot be summarised (e.g. DATA_SCHEMA_MISMATCH).
   */
  statistics?(task: TaskDefinition): Promise<TabularStatistics>;
  dispose(): void;
}
