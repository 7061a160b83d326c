import { ErrorCode, TesseraError } from '@tessera/protocol';
import { checkUpdate, roundFinished } from './checks.js';
import { ExactWeightedSum } from './exact-sum.js';
import { checkPartial, type RoundPartial } from './partial.js';
import { refuseState, type StrategyState } from './state.js';
import type {
  AggregateResult,
  EvaluationReply,
  EvaluationResult,
  RoundAggregator,
  Strategy,
  TrainUpdate,
} from './strategy.js';
import {
  type AggregationArithmetic,
  createModelSum,
  type ModelSum,
  WeightedMean,
  WeightedMetrics,
} from './weighted.js';

/**
 * Federated Averaging (McMahan et al., "Communication-Efficient Learning of Deep Networks from
 * Decentralized Data", AISTATS 2017, Algorithm 1): w_{t+1} = sum_k (n_k / m_t) w_k, with
 * m_t = sum_k n_k over the clients whose updates arrived in round t. Clients that were
 * selected but dropped do not count in m_t. The sum is computed in the run's recorded
 * `arithmetic` (weighted.ts).
 */
export class FedAvg implements Strategy {
  readonly name = 'fedavg';
  readonly options: Readonly<{ arithmetic: AggregationArithmetic }>;

  constructor(options: { arithmetic?: AggregationArithmetic } = {}) {
    this.options = { arithmetic: options.arithmetic ?? 'float64-sequential' };
  }

  beginRound(_round: number, globalWeights: Float32Array): RoundAggregator {
    return new FedAvgAggregator(globalWeights.length, this.name, this.options.arithmetic);
  }

  aggregateEvaluation(replies: readonly EvaluationReply[]): EvaluationResult | null {
    return weightedEvaluation(replies);
  }

  state(): StrategyState | null {
    return null;
  }

  restore(state: StrategyState | null): void {
    refuseState(this.name, state);
  }
}

export class FedAvgAggregator implements RoundAggregator {
  private readonly weights: ModelSum;
  private readonly metrics = new WeightedMetrics();
  private count = 0;
  private finished = false;

  constructor(
    private readonly paramCount: number,
    private readonly strategy: string,
    arithmetic: AggregationArithmetic = 'float64-sequential',
  ) {
    this.weights = createModelSum(arithmetic, paramCount);
  }

  get numUpdates(): number {
    return this.count;
  }

  add(update: TrainUpdate): void {
    if (this.finished) throw roundFinished(this.strategy);
    checkUpdate(update, this.paramCount);
    this.weights.add(update.weights, update.numExamples);
    this.metrics.add(update.metrics, update.numExamples);
    this.count++;
  }

  /**
   * Merges what another coordinator process folded of this round (exact arithmetic only: a
   * float64 sequential sum would depend on the split). Checked first (checkPartial); a refused
   * partial throws its TesseraError and leaves the round as it was.
   */
  addPartial(partial: RoundPartial): void {
    if (this.finished) throw roundFinished(this.strategy);
    if (!(this.weights instanceof ExactWeightedSum)) {
      throw new TesseraError(
        ErrorCode.CONFLICT,
        `${this.strategy}: partial aggregates need arithmetic 'exact'; this round sums in float64 in arrival order`,
        { field: 'partial' },
      );
    }
    const sum = checkPartial(partial, this.paramCount);
    this.weights.merge(sum);
    this.metrics.merge(partial.metrics);
    this.count += partial.numUpdates;
  }

  finish(): AggregateResult {
    return this.finishWith((sum) => sum.mean());
  }

  /** Ends the round with `combine` of the example-weighted sums (FedOpt takes the float64 mean). */
  finishWith(combine: (sum: ModelSum) => Float32Array): AggregateResult {
    if (this.finished) throw roundFinished(this.strategy);
    this.finished = true;
    const numExamples = this.weights.weight;
    return {
      weights: this.count === 0 ? null : combine(this.weights),
      metrics: this.metrics.means(),
      numExamples,
      numUpdates: this.count,
    };
  }
}

/** Federated evaluation: example-weighted mean loss and accuracy over the clients that replied. */
export function weightedEvaluation(replies: readonly EvaluationReply[]): EvaluationResult | null {
  let numExamples = 0;
  const loss = new WeightedMean();
  const accuracy = new WeightedMean();
  for (const reply of replies) {
    numExamples += reply.numExamples;
    loss.add(reply.loss, reply.numExamples);
    accuracy.add(reply.accuracy, reply.numExamples);
  }
  if (numExamples === 0) return null;
  return { loss: loss.value, accuracy: accuracy.value, numExamples };
}
