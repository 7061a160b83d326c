import type {
  AggregateResult,
  EvaluationReply,
  EvaluationResult,
  RoundAggregator,
  Strategy,
  TrainUpdate,
} from './strategy.js';
import { WeightedMean, WeightedMetrics, WeightedSum } from './weighted.js';

/**
 * Federated Averaging (McMahan et al., "Communication-Efficient Learning of Deep Networks from
 * Decentralized Data", AISTATS 2017, Algorithm 1): w_{t+1} = sum_k (n_k / m_t) w_k, with
 * m_t = sum_k n_k over the clients whose updates arrived in round t. Clients that were
 * selected but dropped do not count in m_t.
 */
export class FedAvg implements Strategy {
  readonly name = 'fedavg';
  readonly options: Readonly<Record<string, unknown>> = {};

  beginRound(_round: number, globalWeights: Float32Array): RoundAggregator {
    return new FedAvgAggregator(globalWeights.length);
  }

  aggregateEvaluation(replies: readonly EvaluationReply[]): EvaluationResult | null {
    return weightedEvaluation(replies);
  }
}

class FedAvgAggregator implements RoundAggregator {
  private readonly weights: WeightedSum;
  private readonly metrics = new WeightedMetrics();
  private count = 0;
  private finished = false;

  constructor(paramCount: number) {
    this.weights = new WeightedSum(paramCount);
  }

  get numUpdates(): number {
    return this.count;
  }

  add(update: TrainUpdate): void {
    if (this.finished) throw new Error('FedAvg: round already finished');
    this.weights.add(update.weights, update.numExamples);
    this.metrics.add(update.metrics, update.numExamples);
    this.count++;
  }

  finish(): AggregateResult {
    this.finished = true;
    const numExamples = this.weights.weight;
    return {
      weights: this.count === 0 ? null : this.weights.mean(),
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
