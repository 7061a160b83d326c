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

export interface FedOptOptions {
  /** Server learning rate eta. */
  serverLearningRate: number;
  /** First-moment decay beta_1 in [0, 1) (0: no momentum). */
  beta1: number;
  /** Second-moment decay beta_2 in [0, 1) (FedAdam, FedYogi; FedAdagrad sums instead). */
  beta2: number;
  /** Adaptivity tau > 0: the step is eta m / (sqrt(v) + tau). */
  tau: number;
  /** How the round's models are summed (weighted.ts); absent: `float64-sequential`. */
  arithmetic?: AggregationArithmetic;
}

type SecondMoment = 'adam' | 'yogi' | 'adagrad';

/**
 * Adaptive federated optimisation (Reddi, Charles, Zaheer, Garrett, Rush, Konečný, Kumar,
 * McMahan, "Adaptive Federated Optimization", ICLR 2021, Algorithm 2). The clients' models
 * are averaged weighted by examples (FedAvg, in float64), and the pseudo-gradient
 * Delta = mean - x_t is fed to a server optimiser:
 *
 *   m_t = beta_1 m_{t-1} + (1 - beta_1) Delta
 *   v_t = beta_2 v_{t-1} + (1 - beta_2) Delta^2                          (FedAdam)
 *   v_t = v_{t-1} - (1 - beta_2) Delta^2 sign(v_{t-1} - Delta^2)         (FedYogi)
 *   v_t = v_{t-1} + Delta^2                                              (FedAdagrad)
 *   x_{t+1} = x_t + eta m_t / (sqrt(v_t) + tau)
 *
 * m and v start at 0. FedAdam also corrects both moments for that start, as Adam does
 * (Kingma & Ba 2015, and Flower's FedAdam): eta_t = eta sqrt(1 - beta_2^t) / (1 - beta_1^t),
 * with t the number of steps taken (kept in the state, so a resumed run counts on). Streaming:
 * O(parameters) for the round, plus m and v in float64 between rounds.
 *
 * State (version 1): arrays m and v, scalar `step`.
 */
abstract class FedOpt implements Strategy {
  abstract readonly name: string;
  readonly options: Readonly<Record<string, unknown>>;
  private slot: StateSlot | null = null;

  constructor(
    protected readonly settings: Readonly<FedOptOptions>,
    private readonly secondMoment: SecondMoment,
  ) {
    const arithmetic = settings.arithmetic ?? 'float64-sequential';
    this.options =
      secondMoment === 'adagrad'
        ? {
            serverLearningRate: settings.serverLearningRate,
            beta1: settings.beta1,
            tau: settings.tau,
            arithmetic,
          }
        : { ...settings, arithmetic };
  }

  private stateSlot(): StateSlot {
    this.slot ??= new StateSlot(this.name, 1, ['m', 'v'], ['step']);
    return this.slot;
  }

  beginRound(round: number, globalWeights: Float32Array): RoundAggregator {
    const start = this.stateSlot().startOf(round, globalWeights.length);
    const inner = new FedAvgAggregator(
      globalWeights.length,
      this.name,
      this.settings.arithmetic ?? 'float64-sequential',
    );
    const global = globalWeights.slice();
    return {
      get numUpdates() {
        return inner.numUpdates;
      },
      add: (update: TrainUpdate) => inner.add(update),
      addPartial: (partial: RoundPartial) => inner.addPartial(partial),
      finish: (): AggregateResult =>
        inner.finishWith((sum) => this.step(round, global, sum.mean64(), start)),
    };
  }

  private step(
    round: number,
    global: Float32Array,
    mean: Float64Array,
    start: StrategyState | null,
  ): Float32Array {
    const { serverLearningRate: eta, beta1, beta2, tau } = this.settings;
    const n = global.length;
    const mPrev = start?.arrays['m'] ?? new Float64Array(n);
    const vPrev = start?.arrays['v'] ?? new Float64Array(n);
    const step = (start?.scalars['step'] ?? 0) + 1;
    const m = new Float64Array(n);
    const v = new Float64Array(n);
    const next = new Float32Array(n);
    const rate =
      this.secondMoment === 'adam'
        ? (eta * Math.sqrt(1 - beta2 ** step)) / (1 - beta1 ** step)
        : eta;
    for (let i = 0; i < n; i++) {
      const x = global[i] as number;
      const delta = (mean[i] as number) - x;
      const squared = delta * delta;
      const mi = beta1 * (mPrev[i] as number) + (1 - beta1) * delta;
      const vp = vPrev[i] as number;
      let vi: number;
      if (this.secondMoment === 'adam') vi = beta2 * vp + (1 - beta2) * squared;
      else if (this.secondMoment === 'yogi')
        vi = vp - (1 - beta2) * squared * Math.sign(vp - squared);
      else vi = vp + squared;
      m[i] = mi;
      v[i] = vi;
      next[i] = x + (rate * mi) / (Math.sqrt(vi) + tau);
    }
    this.stateSlot().set(round, { m, v }, { step });
    return next;
  }

  aggregateEvaluation(replies: readonly EvaluationReply[]): EvaluationResult | null {
    return weightedEvaluation(replies);
  }

  state(): StrategyState | null {
    return this.stateSlot().get();
  }

  restore(state: StrategyState | null): void {
    this.stateSlot().restore(state);
  }
}

/** FedAdam (Reddi et al. 2021, above), with Adam's bias correction. */
export class FedAdam extends FedOpt {
  readonly name = 'fedadam';
  constructor(options: FedOptOptions) {
    super(options, 'adam');
  }
}

/** FedYogi (Reddi et al. 2021, above): v moves by at most (1 - beta_2) Delta^2 per round. */
export class FedYogi extends FedOpt {
  readonly name = 'fedyogi';
  constructor(options: FedOptOptions) {
    super(options, 'yogi');
  }
}

/** FedAdagrad (Reddi et al. 2021, above): v sums every Delta^2; beta_2 takes no part. */
export class FedAdagrad extends FedOpt {
  readonly name = 'fedadagrad';
  constructor(options: Omit<FedOptOptions, 'beta2'>) {
    super({ ...options, beta2: 0 }, 'adagrad');
  }
}
