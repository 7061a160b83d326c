import { ErrorCode, TesseraError } from '@tessera/protocol';
import { FedAvgAggregator, weightedEvaluation } from './fedavg.js';
import type { RoundPartial } from './partial.js';
import { StateSlot, type StrategyState } from './state.js';
import type {
  AggregateResult,
  EvaluationReply,
  EvaluationResult,
  RoundAggregator,
  Strategy,
  TrainUpdate,
} from './strategy.js';
import type { AggregationArithmetic } from './weighted.js';

export interface FedAvgMOptions {
  /** Server learning rate eta (1 with momentum 0 is plain FedAvg). */
  serverLearningRate: number;
  /** Server momentum beta in [0, 1). */
  momentum: number;
  /** How the round's models are summed (weighted.ts); absent: `float64-sequential`. */
  arithmetic?: AggregationArithmetic;
}

/**
 * FedAvg with server momentum (Hsu, Qi, Brown, "Measuring the Effects of Non-Identical Data
 * Distribution for Federated Visual Classification", 2019): with the FedAvg average w_avg,
 * the pseudo-gradient d = w_t - w_avg, v <- beta v + d, w_{t+1} = w_t - eta v.
 *
 * State (version 1): the velocity v in float64, so a resumed run or a replay that restores it
 * continues exactly. The arithmetic is the one of runs recorded before the state existed
 * (d from the float32-rounded average), so their checkpoints still verify.
 */
export class FedAvgM implements Strategy {
  readonly name = 'fedavgm';
  readonly options: Readonly<Required<FedAvgMOptions>>;
  private readonly slot = new StateSlot(this.name, 1, ['velocity'], []);

  constructor(options: FedAvgMOptions) {
    const { serverLearningRate, momentum } = options;
    if (!(serverLearningRate > 0) || !Number.isFinite(serverLearningRate)) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `fedavgm: serverLearningRate must be > 0, got ${serverLearningRate}`,
        { field: 'strategyOptions.serverLearningRate' },
      );
    }
    if (!(momentum >= 0 && momentum < 1)) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `fedavgm: momentum must be in [0, 1), got ${momentum}`,
        { field: 'strategyOptions.momentum' },
      );
    }
    this.options = {
      serverLearningRate,
      momentum,
      arithmetic: options.arithmetic ?? 'float64-sequential',
    };
  }

  beginRound(round: number, globalWeights: Float32Array): RoundAggregator {
    const start = this.slot.startOf(round, globalWeights.length);
    const inner = new FedAvgAggregator(globalWeights.length, this.name, this.options.arithmetic);
    const global = globalWeights.slice();
    return {
      get numUpdates() {
        return inner.numUpdates;
      },
      add: (update: TrainUpdate) => inner.add(update),
      addPartial: (partial: RoundPartial) => inner.addPartial(partial),
      finish: (): AggregateResult => {
        const result = inner.finish();
        if (result.weights === null) return result;
        const { serverLearningRate: eta, momentum: beta } = this.options;
        const previous = start?.arrays['velocity'] ?? new Float64Array(global.length);
        const velocity = new Float64Array(global.length);
        const next = new Float32Array(global.length);
        for (let i = 0; i < next.length; i++) {
          const w = global[i] as number;
          const v = beta * (previous[i] as number) + (w - (result.weights[i] as number));
          velocity[i] = v;
          next[i] = w - eta * v;
        }
        this.slot.set(round, { velocity });
        return { ...result, weights: next };
      },
    };
  }

  aggregateEvaluation(replies: readonly EvaluationReply[]): EvaluationResult | null {
    return weightedEvaluation(replies);
  }

  state(): StrategyState | null {
    return this.slot.get();
  }

  restore(state: StrategyState | null): void {
    this.slot.restore(state);
  }
}
