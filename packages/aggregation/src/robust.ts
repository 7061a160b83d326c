import { ErrorCode, TesseraError } from '@tessera/protocol';
import { weightedEvaluation } from './fedavg.js';
import type {
  AggregateResult,
  EvaluationReply,
  EvaluationResult,
  RoundAggregator,
  Strategy,
  TrainUpdate,
} from './strategy.js';
import { WeightedMetrics } from './weighted.js';

/**
 * Coordinate-wise robust statistics need every update at once, so unlike FedAvg these
 * aggregators hold O(clients x parameters) memory for the round. Updates are kept in arrival
 * order and each coordinate is computed from the same sorted values, so the result does not
 * depend on that order at all.
 */
abstract class BufferingAggregator implements RoundAggregator {
  protected readonly updates: Float32Array[] = [];
  private readonly metrics = new WeightedMetrics();
  private numExamples = 0;
  private finished = false;

  constructor(
    private readonly paramCount: number,
    private readonly strategyName: string,
  ) {}

  get numUpdates(): number {
    return this.updates.length;
  }

  add(update: TrainUpdate): void {
    if (this.finished) throw new Error(`${this.strategyName}: round already finished`);
    if (update.weights.length !== this.paramCount) {
      throw new TesseraError(
        ErrorCode.WEIGHTS_LENGTH_MISMATCH,
        `update has ${update.weights.length} parameters; the model has ${this.paramCount}`,
      );
    }
    this.updates.push(update.weights);
    this.metrics.add(update.metrics, update.numExamples);
    this.numExamples += update.numExamples;
  }

  finish(): AggregateResult {
    this.finished = true;
    return {
      weights: this.updates.length === 0 ? null : this.combine(),
      metrics: this.metrics.means(),
      numExamples: this.numExamples,
      numUpdates: this.updates.length,
    };
  }

  /** Sorts each coordinate's values across clients and reduces them with `reduce`. */
  protected perCoordinate(reduce: (sorted: Float64Array) => number): Float32Array {
    const count = this.updates.length;
    const column = new Float64Array(count);
    const out = new Float32Array(this.paramCount);
    for (let i = 0; i < this.paramCount; i++) {
      for (let k = 0; k < count; k++) column[k] = (this.updates[k] as Float32Array)[i] as number;
      column.sort();
      out[i] = reduce(column);
    }
    return out;
  }

  protected abstract combine(): Float32Array;
}

/**
 * FedMedian: the coordinate-wise median of the clients' models (Yin, Chen, Ramchandran,
 * Bartlett, "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates",
 * ICML 2018). Unweighted; with an even count, the mean of the two middle values.
 */
export class FedMedian implements Strategy {
  readonly name = 'fedmedian';
  readonly options: Readonly<Record<string, unknown>> = {};

  beginRound(_round: number, globalWeights: Float32Array): RoundAggregator {
    return new (class extends BufferingAggregator {
      protected combine(): Float32Array {
        return this.perCoordinate((sorted) => {
          const middle = sorted.length >> 1;
          return sorted.length % 2 === 1
            ? (sorted[middle] as number)
            : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
        });
      }
    })(globalWeights.length, this.name);
  }

  aggregateEvaluation(replies: readonly EvaluationReply[]): EvaluationResult | null {
    return weightedEvaluation(replies);
  }
}

/**
 * Coordinate-wise trimmed mean (Yin et al., ICML 2018, as above): for each coordinate, drop
 * the floor(beta * K) largest and smallest of the K clients' values and average the rest.
 * beta in [0, 0.5); beta = 0 is the unweighted mean.
 */
export class TrimmedMean implements Strategy {
  readonly name = 'trimmed-mean';
  readonly options: Readonly<{ beta: number }>;

  constructor(readonly beta: number) {
    if (!(beta >= 0 && beta < 0.5)) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `trimmed-mean: beta must be in [0, 0.5), got ${beta}`,
        { field: 'strategyOptions.beta' },
      );
    }
    this.options = { beta };
  }

  beginRound(_round: number, globalWeights: Float32Array): RoundAggregator {
    const beta = this.beta;
    return new (class extends BufferingAggregator {
      protected combine(): Float32Array {
        const trim = Math.floor(beta * this.updates.length);
        return this.perCoordinate((sorted) => {
          let sum = 0;
          for (let k = trim; k < sorted.length - trim; k++) sum += sorted[k] as number;
          return sum / (sorted.length - 2 * trim);
        });
      }
    })(globalWeights.length, this.name);
  }

  aggregateEvaluation(replies: readonly EvaluationReply[]): EvaluationResult | null {
    return weightedEvaluation(replies);
  }
}
