/**
 * The strategy seam (after Flower): a strategy only decides how replies become the next global
 * model. The coordinator owns the loop, the sockets, the database and the clock.
 *
 * Aggregation streams: the coordinator opens a `RoundAggregator` for each round and folds every
 * validated update into it as it arrives, so memory is O(parameters) for the rules that allow
 * it (FedAvg and its server optimisers, norm-bounded FedAvg, centered clipping with one
 * iteration); the rules that need every update at once (median, trimmed mean, Krum, Bulyan)
 * say so and hold O(clients x parameters).
 *
 * State: a strategy that carries something across rounds exposes it as a `StrategyState`
 * (`state()`, bytes via `encodeStrategyState`) and takes it back with `restore`, so a run
 * resumed in a new process, or a replay, continues exactly. `finish()` of round r adopts the
 * state after r; beginning round r again (a retried attempt) starts from the state round r
 * started from the first time.
 *
 * Client side: a strategy whose rule needs something of the clients' local training (FedProx's
 * proximal term) says so with `configureTrain`; the engine sends it in the train instruction as
 * `strategy: {name, settings}` (docs/protocol.md §5.2), and a client that cannot honour a
 * setting fails the round rather than train without it.
 */
import type { PrivacyStatus, RoundPrivacy } from './dp.js';
import type { RoundPartial } from './partial.js';
import type { StrategyState } from './state.js';

export interface TrainUpdate {
  clientId: string;
  /** Examples the client trained on this round: FedAvg's n_k. */
  numExamples: number;
  /** The client's full model after local training (not a delta). */
  weights: Float32Array;
  /** Client-reported training metrics (loss, accuracy, ...), averaged weighted by numExamples. */
  metrics: Readonly<Record<string, number>>;
  /**
   * SCAFFOLD's Δc_i = c_i⁺ − c_i, the change of the client's control variate (the update
   * frame's `controlDelta`, docs/protocol.md §5.6); absent for every other strategy.
   */
  controlDelta?: Float32Array;
}

export interface AggregateResult {
  /** The next global model, or null to keep the previous one (no usable updates). */
  weights: Float32Array | null;
  /** Example-weighted means of the clients' metrics, plus the round's totals. */
  metrics: Record<string, number>;
  numExamples: number;
  numUpdates: number;
  /**
   * What a differentially private rule did (dp-fedavg): clip norm, noise, clipped count,
   * epsilon so far. The engine records it with the round; absent for the other rules.
   */
  privacy?: RoundPrivacy;
}

/**
 * The sum of the clients' clipped changes, each weighed 1, as secure aggregation unmasks it
 * (the coordinator never sees a term of it): what dp-fedavg noises under SecAgg.
 */
export interface ClippedChangeSum {
  /** sum_k clip(w_k - g, C), within `maxAbsError` per coordinate (the quantisation). */
  changeSum: Float64Array;
  /** How many clients' changes it sums (SecAgg's survivors). */
  count: number;
  /** The bound on |changeSum[i] - the exact sum| from fixed-point encoding. */
  maxAbsError: number;
}

export interface RoundAggregator {
  /**
   * Folds one update in, in arrival order. It is checked first (length, finite values, example
   * count); a refused update throws a TesseraError and leaves the round as it was.
   */
  add(update: TrainUpdate): void;
  readonly numUpdates: number;
  /**
   * Rules that clip on the clients under secure aggregation (Strategy.clientClipNorm): folds in
   * the unmasked sum of clipped changes, checked first (length, finite values, and that no sum
   * of `count` changes of norm <= C could be longer); a refused sum leaves the round as it was.
   */
  addClippedSum?(sum: ClippedChangeSum): void;
  /**
   * The linear rules in `exact` arithmetic (FedAvg, FedProx, FedAvgM, FedOpt): merges the
   * updates another coordinator process folded of this round (RoundPartial), checked first
   * (format, length, counts); a refused partial leaves the round as it was. The result is the
   * same bytes as folding those updates here. Absent for the rules that need each update.
   */
  addPartial?(partial: RoundPartial): void;
  /**
   * A vector every selected client gets with its train instruction (SCAFFOLD's server control
   * variate c, one value per parameter; the train instruction's `controlVariate`); absent for
   * the rules that send none. Fixed for the round: it is what the round began from.
   */
  readonly controlVariate?: Float32Array;
  /**
   * Ends the round. Call once. No updates: `weights` is null and the state is unchanged. A rule
   * that cannot run on the updates it got (Krum with n < 2f + 3) throws INVALID_ARGUMENT.
   */
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

/**
 * Settings a client's local training must honour (FedProx: `{proximalMu: 0.01}`): flat, each
 * a finite number, a boolean or a short text, within the wire's bounds (WIRE_LIMITS).
 */
export type ClientTrainSettings = Readonly<Record<string, number | boolean | string>>;

export interface Strategy {
  readonly name: string;
  /** Options as given, normalised, for the run record. */
  readonly options: Readonly<Record<string, unknown>>;
  /**
   * What the selected clients' training must honour in `round`: one set of settings for all of
   * them, or a map by client id (a client it leaves out, or an empty set, gets none). Absent
   * for a strategy that asks nothing of the clients. Called once per attempt, before the train
   * instructions go out; it must not depend on anything but its arguments and its options, so
   * a retried attempt and a replay send the same.
   */
  configureTrain?(
    round: number,
    clientIds: readonly string[],
  ): ClientTrainSettings | ReadonlyMap<string, ClientTrainSettings>;
  beginRound(round: number, globalWeights: Float32Array): RoundAggregator;
  aggregateEvaluation(replies: readonly EvaluationReply[]): EvaluationResult | null;
  /** The state after the last finished round; null for a stateless strategy or before round 1. */
  state(): StrategyState | null;
  /**
   * Continues from `state` (null: from the start). A state of another strategy, version or
   * shape is refused with INVALID_ARGUMENT (field `strategyState`); a stateless strategy
   * accepts only null.
   */
  restore(state: StrategyState | null): void;
  /**
   * Differentially private rules only: the privacy spent after the last finished round and
   * whether the next round stays within the run's budget. The engine asks before it begins
   * each round and stops the run, saying why, when `nextRoundAllowed` is false.
   */
  privacyStatus?(): PrivacyStatus;
  /**
   * Differentially private rules only: q, when the accounting assumes Poisson sampling (each
   * idle eligible client in a round independently with probability q, from an unpredictable
   * source). The engine then samples that way instead of a fixed-size sample, and commits a
   * round with whatever updates arrived rather than retrying it for minClients.
   */
  readonly poissonSamplingRate?: number;
  /**
   * dp-fedavg with fixed clipping: C, the L2 bound each client clips its own change to when
   * the coordinator cannot (secure aggregation); the round then takes the clipped changes' sum
   * (RoundAggregator.addClippedSum). Absent for every rule that cannot take such a sum.
   */
  readonly clientClipNorm?: number;
}
