import { ErrorCode, TesseraError } from '@tessera/protocol';
import { BufferingAggregator, perCoordinate } from './buffer.js';
import { weightedEvaluation } from './fedavg.js';
import { refuseState, type StrategyState } from './state.js';
import type { EvaluationReply, EvaluationResult, RoundAggregator, Strategy } from './strategy.js';

/**
 * FedMedian: the coordinate-wise median of the clients' models (Yin, Chen, Ramchandran,
 * Bartlett, "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates",
 * ICML 2018). Unweighted; with an even count, the mean of the two middle values. Holds every
 * update of the round (O(clients x parameters)); per round O(parameters x n log n) time.
 */
export class FedMedian implements Strategy {
  readonly name = 'fedmedian';
  readonly options: Readonly<Record<string, unknown>> = {};

  beginRound(_round: number, globalWeights: Float32Array): RoundAggregator {
    return new (class extends BufferingAggregator {
      protected combine(): Float32Array {
        return perCoordinate(this.updates, this.paramCount, (sorted) => {
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

  state(): StrategyState | null {
    return null;
  }

  restore(state: StrategyState | null): void {
    refuseState(this.name, state);
  }
}

/**
 * Coordinate-wise trimmed mean (Yin et al., ICML 2018, as above): for each coordinate, drop
 * the floor(beta * K) largest and smallest of the K clients' values and average the rest.
 * beta in [0, 0.5); beta = 0 is the unweighted mean. Memory and time as FedMedian.
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
        return perCoordinate(this.updates, this.paramCount, (sorted) => {
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

  state(): StrategyState | null {
    return null;
  }

  restore(state: StrategyState | null): void {
    refuseState(this.name, state);
  }
}
