import {
  Accountant,
  type AccountantState,
  clipInPlace,
  type GaussianNoise,
  l2Norm,
  type PrivacyBudget,
} from '@tessera/privacy';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { checkUpdate, roundFinished } from './checks.js';
import { weightedEvaluation } from './fedavg.js';
import { checkState, StateSlot, type StrategyState } from './state.js';
import type {
  AggregateResult,
  ClippedChangeSum,
  EvaluationReply,
  EvaluationResult,
  RoundAggregator,
  Strategy,
  TrainUpdate,
} from './strategy.js';
import { WeightedMetrics } from './weighted.js';

export type { GaussianNoise } from '@tessera/privacy';

/**
 * Adaptive clipping (Andrew, Thakkar, McMahan, Ramaswamy, "Differentially Private Learning
 * with Adaptive Clipping", NeurIPS 2021, Algorithm 1): the clip norm follows the
 * `targetQuantile` of the clients' update norms by a geometric step on a noised count.
 */
export interface AdaptiveClipping {
  /** gamma in (0, 1): the share of updates that should come in unclipped. */
  targetQuantile: number;
  /** eta_C > 0: C <- C exp(-eta_C (b - gamma)), b the noised unclipped share. */
  learningRate: number;
  /** C in round 1. */
  initialClipNorm: number;
  /**
   * sigma_b: standard deviation of the Gaussian noise on the round's sum of centred bits
   * (b_k - 1/2, b_k = 1 when ||Delta_k|| <= C), in counts. The paper suggests
   * expectedClientsPerRound / 20. Must exceed noiseMultiplier / 2.
   */
  countNoiseMultiplier: number;
}

export interface DpFedAvgOptions {
  /**
   * z: the noise multiplier the accountant counts, std over sensitivity C. With adaptive
   * clipping it is shared between the sum of changes and the count (see `vectorNoiseMultiplier`).
   */
  noiseMultiplier: number;
  /** Fixed clipping: C for every round. Exactly one of clipNorm and adaptive. */
  clipNorm?: number;
  adaptive?: AdaptiveClipping;
  /** The fixed denominator qN: the number of clients a round samples in expectation. */
  expectedClientsPerRound: number;
  /** q: each client's chance of being in a round (Poisson sampling), for the accountant. */
  samplingRate?: number;
  /** delta at which epsilon is reported (defaults to the budget's). */
  delta?: number;
  /** The run stops before a round would take epsilon past it (needs samplingRate). */
  budget?: PrivacyBudget;
  /** The server rule that takes the noised mean change as its pseudo-gradient. */
  innerStrategy: string;
  innerOptions: Record<string, unknown>;
}

/** What the engine records with each DP round (AggregateResult.privacy). */
export interface RoundPrivacy {
  mechanism: 'sampled-gaussian';
  /** C used this round. */
  clipNorm: number;
  /** C the next round uses (equal to clipNorm unless adaptive). */
  nextClipNorm: number;
  adaptiveClipping: boolean;
  /** z_Delta: noise std over C on the sum of clipped changes this round. */
  noiseMultiplier: number;
  /** z_Delta C: the per-coordinate noise std on the sum. */
  noiseStd: number;
  /** z: what the accountant counts for this round (= noiseMultiplier without adaptive clipping). */
  effectiveNoiseMultiplier: number;
  /** sigma_b with adaptive clipping, else null. */
  countNoiseStd: number | null;
  /**
   * Updates clipped this round: exact with fixed clipping (NOT covered by the DP guarantee:
   * keep it from researchers), the noised estimate m (1 - b) with adaptive clipping (covered);
   * null when the clients clipped (secure aggregation): the coordinator cannot know.
   */
  clippedCount: number | null;
  /** Where the changes were clipped: by the coordinator, or by each client (secure aggregation). */
  clipping: 'coordinator' | 'client';
  /**
   * The most one client can move the sum in L2, which the noise is calibrated against: C, plus
   * sqrt(d) times the per-coordinate encoding error of one client's change under secure
   * aggregation (its fixed-point rounding), so slightly above C there.
   */
  sensitivity: number;
  clippedCountNoised: boolean;
  /** m: the fixed denominator the noised sum was divided by. */
  denominator: number;
  samplingRate: number | null;
  /** Noised releases so far, this round included. */
  steps: number;
  /** epsilon after this round at `delta` (null without samplingRate or delta). */
  epsilon: number | null;
  delta: number | null;
}

/** Where a DP run stands, for the engine's budget check before each round. */
export interface PrivacyStatus {
  mechanism: 'sampled-gaussian';
  effectiveNoiseMultiplier: number;
  samplingRate: number | null;
  delta: number | null;
  budget: PrivacyBudget | null;
  /** Noised releases after the last finished round. */
  steps: number;
  /** epsilon spent so far (null without samplingRate or delta). */
  epsilon: number | null;
  /** epsilon if one more round runs. */
  epsilonAfterNextRound: number | null;
  /** False when one more round would exceed the budget: the engine must stop the run. */
  nextRoundAllowed: boolean;
  /** The accountant's JSON (null without samplingRate). */
  accountant: AccountantState | null;
}

/**
 * z_Delta = (z^-2 - (2 sigma_b)^-2)^(-1/2) (Andrew et al. 2021, Thm. 1 / §3.1): the count
 * of centred bits has sensitivity 1/2 and noise sigma_b, the sum of changes sensitivity C
 * and noise z_Delta C; composed, the pair is the Gaussian mechanism with multiplier z, so
 * the accountant's one step at z covers both. Needs 2 sigma_b > z.
 */
export function vectorNoiseMultiplier(
  noiseMultiplier: number,
  countNoiseMultiplier: number,
): number {
  const remaining = noiseMultiplier ** -2 - (2 * countNoiseMultiplier) ** -2;
  if (!(remaining > 0)) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `adaptive clipping: countNoiseMultiplier ${countNoiseMultiplier} must exceed noiseMultiplier / 2 (${noiseMultiplier / 2}), or the count alone spends the whole noise budget`,
      { field: 'strategyOptions.adaptive.countNoiseMultiplier' },
    );
  }
  return remaining ** -0.5;
}

function stateError(message: string): TesseraError {
  return new TesseraError(ErrorCode.INVALID_ARGUMENT, `strategy state: ${message}`, {
    field: 'strategyState',
  });
}

const OWN_SCALARS = ['clipNorm', 'steps', 'paramCount'] as const;

/**
 * DP-FedAvg (McMahan, Ramage, Talwar, Zhang, "Learning Differentially Private Recurrent
 * Language Models", ICLR 2018, Algorithm 1, with the fixed-denominator estimator f_f):
 *
 *   Delta_k = clip(w_k - g, C)                  each client's change, L2 norm <= C exactly
 *   S = sum_k Delta_k + N(0, (z C)^2 I)         UNWEIGHTED: each client moves S by <= C
 *   Delta = S / m,  m = expectedClientsPerRound  fixed, not the count that arrived
 *   next = inner server rule stepping g by Delta (FedAvg: g + Delta)
 *
 * Why a fixed m: the accountant assumes Poisson sampling and add/remove-one-client
 * adjacency; S / m then has sensitivity C / m and the noise z C / m, the sampled Gaussian
 * mechanism at (q, z), one step per round. Dividing by the actual count would make the
 * denominator depend on who took part (a count that is not private). The price is a bias
 * toward 0 in rounds where fewer than m clients reply.
 *
 * Example counts do not weight the changes (a weight would let one client's contribution
 * exceed C). Noise is drawn from the injected `GaussianNoise` (CryptoGaussianNoise in a run;
 * SeededGaussianNoise only in tests), so this module stays pure.
 *
 * The inner rule (FedAvg, FedAvgM, FedAdam, FedYogi, FedAdagrad) gets
 * one pseudo-update, g + Delta rounded to float32, and does what it does with a mean: its
 * momentum or moments then work on the noised mean only (post-processing, no privacy cost).
 *
 * Under secure aggregation the coordinator sees no change: the clients clip to the fixed C
 * (clientClipNorm) and weigh themselves 1, and the round takes their unmasked sum whole
 * (RoundAggregator.addClippedSum); the noise, m and the accounting are the same.
 *
 * State (version 1): scalars clipNorm (C of the next round), steps (noised releases so far),
 * paramCount; the inner rule's state under `<inner>.<name>`, with `<inner>.version` (0 when it
 * keeps none).
 */
export class DpFedAvg implements Strategy {
  readonly name = 'dp-fedavg';
  readonly options: Readonly<DpFedAvgOptions>;
  /** z_Delta: the multiplier on the sum of changes. */
  readonly vectorNoiseMultiplier: number;
  private readonly countNoiseStd: number | null;
  private readonly slot = new StateSlot(this.name, 1, [], [...OWN_SCALARS]);
  private readonly accountantDelta: number | null;
  /** Accountants derived from one share its cache: the per-step RDP is computed once. */
  private readonly noSteps = Accountant.empty();
  private composed: {
    own: StrategyState;
    inner: StrategyState | null;
    state: StrategyState;
  } | null = null;

  constructor(
    options: DpFedAvgOptions,
    private readonly inner: Strategy,
    private readonly noise: GaussianNoise,
  ) {
    if ((options.clipNorm === undefined) === (options.adaptive === undefined)) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        'dp-fedavg: give exactly one of clipNorm and adaptive',
        {
          field: 'strategyOptions.clipNorm',
        },
      );
    }
    if (inner.configureTrain !== undefined) {
      // Clients take settings by strategy name; none knows an inner rule's under dp-fedavg.
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `dp-fedavg: ${inner.name} asks settings of the clients, which dp-fedavg does not pass on`,
        { field: 'strategyOptions.innerStrategy' },
      );
    }
    if (inner.name !== options.innerStrategy) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `dp-fedavg: inner strategy ${inner.name} is not the ${options.innerStrategy} of the options`,
        { field: 'strategyOptions.innerStrategy' },
      );
    }
    this.options = options;
    this.countNoiseStd = options.adaptive?.countNoiseMultiplier ?? null;
    this.vectorNoiseMultiplier =
      this.countNoiseStd === null
        ? options.noiseMultiplier
        : vectorNoiseMultiplier(options.noiseMultiplier, this.countNoiseStd);
    this.accountantDelta = options.delta ?? options.budget?.delta ?? null;
  }

  private clipNormAt(start: StrategyState | null): number {
    return (
      start?.scalars['clipNorm'] ??
      this.options.adaptive?.initialClipNorm ??
      (this.options.clipNorm as number)
    );
  }

  private accountantAfter(steps: number): Accountant | null {
    const { samplingRate, noiseMultiplier } = this.options;
    if (samplingRate === undefined) return null;
    return this.noSteps.withSteps({ samplingRate, noiseMultiplier }, steps);
  }

  /** C to clip to on the clients (secure aggregation): fixed clipping only. */
  get clientClipNorm(): number | undefined {
    return this.options.clipNorm;
  }

  /** q: the engine samples each client independently with it (Strategy.poissonSamplingRate). */
  get poissonSamplingRate(): number | undefined {
    return this.options.samplingRate;
  }

  beginRound(round: number, globalWeights: Float32Array): RoundAggregator {
    const start = this.slot.startOf(round, globalWeights.length);
    const paramCount = start?.scalars['paramCount'];
    if (paramCount !== undefined && paramCount !== globalWeights.length) {
      throw stateError(
        `dp-fedavg state is for ${paramCount} parameters; the model has ${globalWeights.length}`,
      );
    }
    // Begun now, so that a retried round rolls the inner state back together with this one.
    const innerRound = this.inner.beginRound(round, globalWeights);
    return new DpRound(
      this.name,
      (done) => this.noisedStep(done),
      round,
      globalWeights.slice(),
      this.clipNormAt(start),
      start?.scalars['steps'] ?? 0,
      innerRound,
      this.options.samplingRate !== undefined,
    );
  }

  /**
   * A finished round's noised step, and the state after it: a round with updates, or, under
   * Poisson sampling, any round (a sample that brought nothing releases noise alone).
   */
  private noisedStep(round: DpRound): { weights: Float32Array | null; privacy: RoundPrivacy } {
    const { options } = this;
    const m = options.expectedClientsPerRound;
    const stream = this.noise.forRound(round.round);
    let nextClipNorm = round.clipNorm;
    let clippedCount: number | null = round.clientClipped ? null : round.clippedCount;
    if (options.adaptive !== undefined && this.countNoiseStd !== null) {
      const countDraw = new Float64Array(1);
      stream.fill(countDraw);
      const centred =
        round.unclippedCount - round.numUpdates / 2 + this.countNoiseStd * (countDraw[0] as number);
      const unclippedShare = centred / m + 0.5;
      nextClipNorm =
        round.clipNorm *
        Math.exp(
          -options.adaptive.learningRate * (unclippedShare - options.adaptive.targetQuantile),
        );
      clippedCount = m * (1 - unclippedShare);
    }
    // The noise is scaled to the round's sensitivity, C plus (under secure aggregation) one
    // client's share of the encoding error, so the accountant's z holds exactly, not z C / (C + e).
    const noiseStd = this.vectorNoiseMultiplier * (round.clipNorm + round.encodingSlack);
    const draws = new Float64Array(round.global.length);
    stream.fill(draws);
    const pseudo = new Float32Array(round.global.length);
    for (let i = 0; i < pseudo.length; i++) {
      const meanChange = ((round.sums[i] as number) + noiseStd * (draws[i] as number)) / m;
      pseudo[i] = (round.global[i] as number) + meanChange;
    }
    round.inner.add({
      clientId: 'dp-fedavg:noised-mean',
      numExamples: 1,
      weights: pseudo,
      metrics: {},
    });
    const weights = round.inner.finish().weights;
    const steps = round.startSteps + 1;
    this.slot.set(
      round.round,
      {},
      { clipNorm: nextClipNorm, steps, paramCount: round.global.length },
    );
    const epsilon =
      this.accountantDelta === null
        ? null
        : (this.accountantAfter(steps)?.epsilon(this.accountantDelta).epsilon ?? null);
    return {
      weights,
      privacy: {
        mechanism: 'sampled-gaussian',
        clipNorm: round.clipNorm,
        nextClipNorm,
        adaptiveClipping: options.adaptive !== undefined,
        noiseMultiplier: this.vectorNoiseMultiplier,
        noiseStd,
        effectiveNoiseMultiplier: options.noiseMultiplier,
        countNoiseStd: this.countNoiseStd,
        clippedCount,
        clippedCountNoised: options.adaptive !== undefined,
        clipping: round.clientClipped ? 'client' : 'coordinator',
        sensitivity: round.clipNorm + round.encodingSlack,
        denominator: m,
        samplingRate: options.samplingRate ?? null,
        steps,
        epsilon,
        delta: epsilon === null ? null : this.accountantDelta,
      },
    };
  }

  /** The budget check the engine makes before each round (and what it shows). */
  privacyStatus(): PrivacyStatus {
    const steps = this.slot.get()?.scalars['steps'] ?? 0;
    const { samplingRate, noiseMultiplier, budget } = this.options;
    const now = this.accountantAfter(steps);
    const delta = this.accountantDelta;
    const epsilon = now !== null && delta !== null ? now.epsilon(delta).epsilon : null;
    const next =
      now !== null && delta !== null && samplingRate !== undefined
        ? now.withSteps({ samplingRate, noiseMultiplier }).epsilon(delta).epsilon
        : null;
    // No budget: nothing to stop for. A budget without an accountant cannot be kept (the
    // options schema refuses it; refuse the round too rather than run unaccounted).
    let allowed = budget === undefined;
    if (budget !== undefined && now !== null && samplingRate !== undefined) {
      allowed = !now.wouldExceed(budget, { samplingRate, noiseMultiplier });
    }
    return {
      mechanism: 'sampled-gaussian',
      effectiveNoiseMultiplier: noiseMultiplier,
      samplingRate: samplingRate ?? null,
      delta,
      budget: budget ?? null,
      steps,
      epsilon,
      epsilonAfterNextRound: next,
      nextRoundAllowed: allowed,
      accountant: now?.toJSON() ?? null,
    };
  }

  aggregateEvaluation(replies: readonly EvaluationReply[]): EvaluationResult | null {
    return weightedEvaluation(replies);
  }

  state(): StrategyState | null {
    const own = this.slot.get();
    if (own === null) return null;
    const inner = this.inner.state();
    // The same object while nothing changed, as the engine and the conformance suite expect.
    if (this.composed !== null && this.composed.own === own && this.composed.inner === inner) {
      return this.composed.state;
    }
    const prefix = `${this.inner.name}.`;
    const scalars: Record<string, number> = {
      ...own.scalars,
      [`${prefix}version`]: inner?.version ?? 0,
    };
    const arrays: Record<string, Float64Array> = {};
    for (const [key, value] of Object.entries(inner?.scalars ?? {})) scalars[prefix + key] = value;
    for (const [key, value] of Object.entries(inner?.arrays ?? {})) arrays[prefix + key] = value;
    const state: StrategyState = {
      strategy: this.name,
      version: 1,
      round: own.round,
      scalars,
      arrays,
    };
    this.composed = { own, inner, state };
    return state;
  }

  restore(state: StrategyState | null): void {
    if (state === null) {
      this.inner.restore(null);
      this.slot.restore(null);
      return;
    }
    if (state.strategy !== this.name) {
      throw stateError(`written by ${state.strategy}, cannot restore into ${this.name}`);
    }
    const prefix = `${this.inner.name}.`;
    const innerVersion = state.scalars[`${prefix}version`];
    if (innerVersion === undefined) {
      throw stateError(`this dp-fedavg state was not written over ${this.inner.name}`);
    }
    const ownScalars: Record<string, number> = {};
    const innerScalars: Record<string, number> = {};
    const innerArrays: Record<string, Float64Array> = {};
    for (const [key, value] of Object.entries(state.scalars)) {
      if (key === `${prefix}version`) continue;
      if (key.startsWith(prefix)) innerScalars[key.slice(prefix.length)] = value;
      else ownScalars[key] = value;
    }
    for (const [key, value] of Object.entries(state.arrays)) {
      if (!key.startsWith(prefix)) throw stateError(`unexpected array ${key}`);
      innerArrays[key.slice(prefix.length)] = value;
    }
    const own: StrategyState = {
      strategy: this.name,
      version: state.version,
      round: state.round,
      scalars: ownScalars,
      arrays: {},
    };
    // Checked before anything changes, so a refused state leaves this strategy as it was.
    checkState(own, { strategy: this.name, version: 1, arrays: [], scalars: [...OWN_SCALARS] });
    const clipNorm = ownScalars['clipNorm'] as number;
    if (!(clipNorm > 0)) throw stateError(`clipNorm ${clipNorm} is not positive`);
    this.inner.restore(
      innerVersion === 0
        ? null
        : {
            strategy: this.inner.name,
            version: innerVersion,
            round: state.round,
            scalars: innerScalars,
            arrays: innerArrays,
          },
    );
    this.slot.restore(own);
  }
}

/** One DP-FedAvg round: clips each change as it arrives and sums it (O(parameters)). */
class DpRound implements RoundAggregator {
  readonly sums: Float64Array;
  private readonly scratch: Float64Array;
  private readonly metrics = new WeightedMetrics();
  private numExamples = 0;
  private count = 0;
  unclippedCount = 0;
  clippedCount = 0;
  /** Whether a clipped sum came from the clients (secure aggregation). */
  clientClipped = false;
  /** sqrt(d) times one client's per-coordinate encoding error, in a client-clipped sum. */
  encodingSlack = 0;
  private finished = false;

  constructor(
    private readonly strategy: string,
    private readonly step: (round: DpRound) => {
      weights: Float32Array | null;
      privacy: RoundPrivacy;
    },
    readonly round: number,
    readonly global: Float32Array,
    readonly clipNorm: number,
    readonly startSteps: number,
    readonly inner: RoundAggregator,
    /**
     * Under Poisson sampling every round is a step of the sampled Gaussian mechanism, even one
     * to which no update came: it releases the noised zero sum. Declining it, so that the
     * engine draws a new sample, would make the sample that counts one conditioned on
     * bringing an update, which raises each client's chance of being in it above the q the
     * accountant composes (q / (1 - (1 - q)^N) for N clients that always answer).
     */
    private readonly releasesEmptyRounds: boolean,
  ) {
    this.sums = new Float64Array(global.length);
    this.scratch = new Float64Array(global.length);
  }

  get numUpdates(): number {
    return this.count;
  }

  add(update: TrainUpdate): void {
    if (this.finished) throw roundFinished(this.strategy);
    checkUpdate(update, this.global.length);
    const change = this.scratch;
    for (let i = 0; i < change.length; i++) {
      change[i] = (update.weights[i] as number) - (this.global[i] as number);
    }
    const { clipped } = clipInPlace(change, this.clipNorm);
    for (let i = 0; i < change.length; i++)
      this.sums[i] = (this.sums[i] as number) + (change[i] as number);
    if (clipped) this.clippedCount++;
    else this.unclippedCount++;
    this.metrics.add(update.metrics, update.numExamples);
    this.numExamples += update.numExamples;
    this.count++;
  }

  addClippedSum(sum: ClippedChangeSum): void {
    if (this.finished) throw roundFinished(this.strategy);
    const { changeSum, count, maxAbsError } = sum;
    const refuse = (message: string, data: Record<string, unknown> = {}) =>
      new TesseraError(ErrorCode.INVALID_ARGUMENT, `${this.strategy}: clipped sum ${message}`, {
        field: 'changeSum',
        ...data,
      });
    if (changeSum.length !== this.global.length) {
      throw new TesseraError(
        ErrorCode.WEIGHTS_LENGTH_MISMATCH,
        `${this.strategy}: the clipped sum has ${changeSum.length} values; the model has ${this.global.length}`,
        { field: 'changeSum' },
      );
    }
    if (!Number.isSafeInteger(count) || count < 1) throw refuse(`of ${count} clients`);
    if (!(maxAbsError >= 0 && Number.isFinite(maxAbsError))) {
      throw refuse(`with encoding error ${maxAbsError}`);
    }
    const firstBad = changeSum.findIndex((value) => !Number.isFinite(value));
    if (firstBad !== -1) throw refuse(`has a non-finite value at ${firstBad}`, { index: firstBad });
    // What the coordinator can check of clients it cannot see: count changes of norm <= C
    // cannot sum to more than count C (plus the encoding's error).
    const slack = Math.sqrt(changeSum.length) * maxAbsError;
    const norm = l2Norm(changeSum);
    if (norm > count * this.clipNorm + slack) {
      throw refuse(
        `has norm ${norm}, more than ${count} changes clipped to ${this.clipNorm} can sum to`,
        { norm, bound: count * this.clipNorm + slack },
      );
    }
    for (let i = 0; i < changeSum.length; i++) {
      this.sums[i] = (this.sums[i] as number) + (changeSum[i] as number);
    }
    this.clientClipped = true;
    // maxAbsError bounds the sum's error; one client's share of it is at most the whole.
    this.encodingSlack = Math.max(this.encodingSlack, slack / count);
    this.count += count;
  }

  finish(): AggregateResult {
    if (this.finished) throw roundFinished(this.strategy);
    this.finished = true;
    const base = {
      metrics: this.metrics.means(),
      numExamples: this.numExamples,
      numUpdates: this.count,
    };
    if (this.count === 0 && !this.releasesEmptyRounds) {
      this.inner.finish();
      return { ...base, weights: null };
    }
    const { weights, privacy } = this.step(this);
    return { ...base, weights, privacy };
  }
}
