/**
 * The strategy seam (after Flower): a strategy only decides how replies become the next global
 * model. The coordinator owns the loop, the sockets, the database and the clock.
 *
 * Aggregation streams: the coordinator opens a `RoundAggregator` for each round and folds every
 * validated update into it as it arrives, so memory is O(parameters), never O(clients x parameters).
 */

export interface TrainUpdate {
  clientId: string;
  /** Examples the client trained on this round: FedAvg's n_k. */
  numExamples: number;
  /** The client's full model after local training (not a delta). */
  weights: Float32Array;
  /** Client-reported training metrics (loss, accuracy, ...), averaged weighted by numExamples. */
  metrics: Readonly<Record<string, number>>;
}

export interface AggregateResult {
  /** The next global model, or null to keep the previous one (no usable updates). */
  weights: Float32Array | null;
  /** Example-weighted means of the clients' metrics, plus the round's totals. */
  metrics: Record<string, number>;
  numExamples: number;
  numUpdates: number;
}

export interface RoundAggregator {
  /** Folds one update in. The caller validated it; order of calls is the arrival order. */
  add(update: TrainUpdate): void;
  readonly numUpdates: number;
  /** Ends the round. Call once. */
  finish(): AggregateResult;
}

export interface EvaluationReply {
  clientId: string;
  numExamples: number;
  loss: number;
  accuracy: number;
}

export interface EvaluationResult {
  loss: number;
  accuracy: number;
  numExamples: number;
}

export interface Strategy {
  readonly name: string;
  /** Options as given, normalised, for the run record. */
  readonly options: Readonly<Record<string, unknown>>;
  beginRound(round: number, globalWeights: Float32Array): RoundAggregator;
  aggregateEvaluation(replies: readonly EvaluationReply[]): EvaluationResult | null;
}
