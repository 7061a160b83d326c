import { ErrorCode, TesseraError, WIRE_LIMITS } from '@tessera/protocol';
import { FedAvgAggregator, weightedEvaluation } from './fedavg.js';
import { refuseState, type StrategyState } from './state.js';
import type {
  ClientTrainSettings,
  EvaluationReply,
  EvaluationResult,
  RoundAggregator,
  Strategy,
} from './strategy.js';
import type { AggregationArithmetic } from './weighted.js';

export interface FedProxOptions {
  /** The proximal coefficient μ ≥ 0 (0: the clients train plain SGD, so this is FedAvg). */
  mu: number;
  /** How the round's models are summed (weighted.ts); absent: `float64-sequential`. */
  arithmetic?: AggregationArithmetic;
}

/**
 * FedProx (Li, Sahu, Zaheer, Sanjabi, Talwalkar, Smith, "Federated Optimization in
 * Heterogeneous Networks", MLSys 2020, Algorithm 2). Each client k minimises
 * h_k(w; w^t) = F_k(w) + μ/2 ||w - w^t||² from the global model w^t, which bounds how far
 * heterogeneous local training drifts from it. The server's rule is FedAvg's example-weighted
 * mean; all of FedProx is on the client, so `configureTrain` sends `{proximalMu: μ}` to every
 * selected client and the client's loop adds μ (w - w^t) to each gradient (@tessera/ml).
 *
 * The paper's inexactness (a client may send a γ-inexact solution, e.g. fewer epochs) is the
 * run's localEpochs; the paper's uniform-weight variant is not offered.
 */
export class FedProx implements Strategy {
  readonly name = 'fedprox';
  readonly options: Readonly<Required<FedProxOptions>>;

  constructor(options: FedProxOptions) {
    const { mu } = options;
    if (!(mu >= 0 && mu <= WIRE_LIMITS.maxProximalMu)) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `fedprox: mu must be within [0, ${WIRE_LIMITS.maxProximalMu}], got ${mu}`,
        { field: 'strategyOptions.mu' },
      );
    }
    this.options = { mu, arithmetic: options.arithmetic ?? 'float64-sequential' };
  }

  configureTrain(): ClientTrainSettings {
    return { proximalMu: this.options.mu };
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
