import { checkUpdate, roundFinished } from './checks.js';
import { weightedEvaluation } from './fedavg.js';
import { refuseState, StateSlot, type StrategyState } from './state.js';
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
 * Folds `scale * ((w - g) - centre)` into `sums`, with scale = min(1, radius / ||(w - g) -
 * centre||) times `weight`: the update's offset from the centre, clipped to the radius. All
 * in float64; the norm is summed over the coordinates in order.
 */
function addClipped(
  sums: Float64Array,
  weights: Float32Array,
  global: Float32Array,
  centre: Float64Array,
  radius: number,
  weight: number,
): void {
  let squared = 0;
  for (let i = 0; i < weights.length; i++) {
    const d = (weights[i] as number) - (global[i] as number) - (centre[i] as number);
    squared += d * d;
  }
  const norm = Math.sqrt(squared);
  const scale = weight * (norm > radius ? radius / norm : 1);
  for (let i = 0; i < weights.length; i++) {
    const d = (weights[i] as number) - (global[i] as number) - (centre[i] as number);
    sums[i] = (sums[i] as number) + scale * d;
  }
}

/**
 * A round that clips each update's offset (from the global model plus an optional centre) as
 * it arrives, so one pass streams in O(parameters); `keep` also holds the updates for rules
 * that iterate.
 */
class ClippingAggregator implements RoundAggregator {
  readonly sums: Float64Array;
  readonly kept: Float32Array[] = [];
  totalWeight = 0;
  private readonly metrics = new WeightedMetrics();
  private numExamples = 0;
  private count = 0;
  private finished = false;

  constructor(
    readonly global: Float32Array,
    private readonly strategy: string,
    private readonly centre: Float64Array,
    private readonly radius: number,
    private readonly weighted: boolean,
    private readonly keep: boolean,
    private readonly combine: (self: ClippingAggregator) => Float32Array,
  ) {
    this.sums = new Float64Array(global.length);
  }

  get numUpdates(): number {
    return this.count;
  }

  add(update: TrainUpdate): void {
    if (this.finished) throw roundFinished(this.strategy);
    checkUpdate(update, this.global.length);
    const weight = this.weighted ? update.numExamples : 1;
    addClipped(this.sums, update.weights, this.global, this.centre, this.radius, weight);
    if (this.keep) this.kept.push(update.weights);
    this.totalWeight += weight;
    this.metrics.add(update.metrics, update.numExamples);
    this.numExamples += update.numExamples;
    this.count++;
  }

  finish(): AggregateResult {
    if (this.finished) throw roundFinished(this.strategy);
    this.finished = true;
    return {
      weights: this.count === 0 ? null : this.combine(this),
      metrics: this.metrics.means(),
      numExamples: this.numExamples,
      numUpdates: this.count,
    };
  }
}

/** g + offset, rounded once to float32. */
function offsetFrom(global: Float32Array, offset: Float64Array): Float32Array {
  const out = new Float32Array(global.length);
  for (let i = 0; i < out.length; i++) out[i] = (global[i] as number) + (offset[i] as number);
  return out;
}

/**
 * Norm-bounded FedAvg (Sun, Kairouz, Suresh, McMahan, "Can You Really Backdoor Federated
 * Learning?", 2019): each client's delta w_k - g is clipped to L2 norm at most M (scaled by
 * min(1, M / ||w_k - g||)) before the example-weighted mean, and the next model is g plus
 * that mean. A boosted (scaled-up) update moves the model by at most M n_k / sum n. Streams:
 * O(parameters) per round.
 */
export class NormBoundedFedAvg implements Strategy {
  readonly name = 'norm-bounded-fedavg';
  readonly options: Readonly<{ normBound: number }>;

  constructor(readonly normBound: number) {
    this.options = { normBound };
  }

  beginRound(_round: number, globalWeights: Float32Array): RoundAggregator {
    return new ClippingAggregator(
      globalWeights.slice(),
      this.name,
      new Float64Array(globalWeights.length),
      this.normBound,
      true,
      false,
      (round) => {
        const mean = new Float64Array(round.sums.length);
        for (let i = 0; i < mean.length; i++)
          mean[i] = (round.sums[i] as number) / round.totalWeight;
        return offsetFrom(round.global, mean);
      },
    );
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
 * Centered clipping (Karimireddy, He, Jaggi, "Learning from History for Byzantine Robust
 * Optimization", ICML 2021, eq. (CC)): starting from the centre v (the previous round's
 * aggregate delta, 0 in round 1), `iterations` times
 *
 *   v <- v + (1/n) sum_k (d_k - v) min(1, tau / ||d_k - v||),   d_k = w_k - g,
 *
 * and the next model is g + v. Each Byzantine update moves v by at most tau / n per iteration.
 * Unweighted (1/n), as in the paper. Clients here send models, not the worker momenta of the
 * paper; the history is the centre. One iteration streams in O(parameters); more hold the
 * round's updates (O(n x parameters)) and take `iterations` passes over them.
 *
 * State (version 1): the centre v in float64.
 */
export class CenteredClipping implements Strategy {
  readonly name = 'centered-clipping';
  readonly options: Readonly<{ tau: number; iterations: number }>;
  private readonly slot = new StateSlot(this.name, 1, ['centre'], []);

  constructor(
    readonly tau: number,
    readonly iterations: number,
  ) {
    this.options = { tau, iterations };
  }

  beginRound(round: number, globalWeights: Float32Array): RoundAggregator {
    const start = this.slot.startOf(round, globalWeights.length);
    const first = start?.arrays['centre'] ?? new Float64Array(globalWeights.length);
    return new ClippingAggregator(
      globalWeights.slice(),
      this.name,
      first,
      this.tau,
      false,
      this.iterations > 1,
      (done) => {
        const n = done.numUpdates;
        let centre = moveCentre(first, done.sums, n);
        for (let iteration = 2; iteration <= this.iterations; iteration++) {
          const sums = new Float64Array(centre.length);
          for (const weights of done.kept)
            addClipped(sums, weights, done.global, centre, this.tau, 1);
          centre = moveCentre(centre, sums, n);
        }
        this.slot.set(round, { centre });
        return offsetFrom(done.global, centre);
      },
    );
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

/** centre + sums / n, a new array. */
function moveCentre(centre: Float64Array, sums: Float64Array, n: number): Float64Array {
  const next = new Float64Array(centre.length);
  for (let i = 0; i < next.length; i++) next[i] = (centre[i] as number) + (sums[i] as number) / n;
  return next;
}
