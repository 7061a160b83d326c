import {
  DEFAULT_MAX_FRAME_BYTES,
  ErrorCode,
  firstNonFinite,
  TesseraError,
} from '@tessera/protocol';
import { checkUpdate, roundFinished } from './checks.js';
import { weightedEvaluation } from './fedavg.js';
import { StateSlot, type StrategyState } from './state.js';
import type {
  AggregateResult,
  ClientTrainSettings,
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
  WeightedMetrics,
} from './weighted.js';

export interface ScaffoldOptions {
  /** η_g, the server's step on the mean model change (1: x becomes the clients' mean model). */
  serverLearningRate: number;
  /**
   * N, the clients eligible to be sampled: c moves by |S|/N of the mean Δc_i. Absent: every
   * eligible client takes part in every round (|S| = N), so c moves by the whole mean.
   */
  clientCount?: number;
  /** How the round's models and Δc_i are summed (weighted.ts); absent: `float64-sequential`. */
  arithmetic?: AggregationArithmetic;
}

/**
 * The one client-side variant Tessera implements, sent as the setting `controlVariateOption`:
 * option II of the paper, c_i⁺ = c_i − c + (x − y_i) / (K η).
 */
export const SCAFFOLD_OPTION = 2;

/**
 * The largest model SCAFFOLD can train: its train instruction carries x and c, its update y and
 * Δc_i, 8 bytes per parameter in one frame, and the clients' parsers (like the coordinator's
 * by default) take frames up to DEFAULT_MAX_FRAME_BYTES. 64 KiB are left for the envelope.
 * 1,040,384 parameters: the 2NN (199,210) fits, the CNN (1,663,370) does not.
 */
export const SCAFFOLD_MAX_PARAMETERS = Math.floor((DEFAULT_MAX_FRAME_BYTES - 65_536) / 8);

/**
 * SCAFFOLD (Karimireddy, Kale, Mohri, Reddi, Stich, Suresh, "SCAFFOLD: Stochastic Controlled
 * Averaging for Federated Learning", ICML 2020, Algorithm 1 with option II). The server keeps a
 * control variate c, each client i its own c_i (kept by the client between rounds). A round
 * sends x and c; client i runs K local steps y ← y − η (g(y) − c_i + c) from y = x, sets
 * c_i⁺ = c_i − c + (x − y)/(K η) and replies with y and Δc_i = c_i⁺ − c_i. The server folds
 * both as they arrive (streaming, O(parameters)) and ends the round with
 *
 *   x ← x + η_g · mean_{i∈S} (y_i − x)        c ← c + |S|/N · mean_{i∈S} Δc_i
 *
 * Means are unweighted, as in the paper (the metrics stay example-weighted). Sampling: the
 * paper's S is a uniform sample of the N clients; here |S| is the number of updates the round
 * committed and N the `clientCount` option (default |S|: full participation). A client left
 * out keeps its c_i, so c stays the mean of all c_i only while every Δc_i of a committed round
 * is folded in and N is the number of clients that hold one.
 *
 * State (version 1): array `c`. The global model x is the checkpoint committed with it.
 */
export class Scaffold implements Strategy {
  readonly name = 'scaffold';
  readonly options: Readonly<ScaffoldOptions>;
  private readonly slot = new StateSlot('scaffold', 1, ['c'], []);

  constructor(options: ScaffoldOptions) {
    this.options = { ...options, arithmetic: options.arithmetic ?? 'float64-sequential' };
  }

  configureTrain(): ClientTrainSettings {
    return { controlVariateOption: SCAFFOLD_OPTION };
  }

  beginRound(round: number, globalWeights: Float32Array): RoundAggregator {
    if (globalWeights.length > SCAFFOLD_MAX_PARAMETERS) {
      throw new TesseraError(
        ErrorCode.PAYLOAD_TOO_LARGE,
        `scaffold: a model of ${globalWeights.length} parameters needs frames of ${8 * globalWeights.length} bytes (model and control variate), over the ${DEFAULT_MAX_FRAME_BYTES}-byte frame limit; it trains models of up to ${SCAFFOLD_MAX_PARAMETERS} parameters`,
        { field: 'strategy', maxParameters: SCAFFOLD_MAX_PARAMETERS },
      );
    }
    const start = this.slot.startOf(round, globalWeights.length);
    const c = start?.arrays['c'] ?? new Float64Array(globalWeights.length);
    return new ScaffoldAggregator(globalWeights.slice(), c, this.options, (next) =>
      this.slot.set(round, { c: next }),
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

class ScaffoldAggregator implements RoundAggregator {
  /** The server's control variate as the clients get it (float32, as on the wire). */
  readonly controlVariate: Float32Array;
  private readonly models: ModelSum;
  private readonly controlDeltas: ModelSum;
  private readonly metrics = new WeightedMetrics();
  private examples = 0;
  private count = 0;
  private finished = false;

  constructor(
    private readonly global: Float32Array,
    private readonly c: Float64Array,
    private readonly options: Readonly<ScaffoldOptions>,
    private readonly adopt: (c: Float64Array) => void,
  ) {
    this.controlVariate = Float32Array.from(c);
    const arithmetic = options.arithmetic ?? 'float64-sequential';
    this.models = createModelSum(arithmetic, global.length);
    this.controlDeltas = createModelSum(arithmetic, global.length);
  }

  get numUpdates(): number {
    return this.count;
  }

  add(update: TrainUpdate): void {
    if (this.finished) throw roundFinished('scaffold');
    checkUpdate(update, this.global.length);
    checkControlDelta(update.controlDelta, this.global.length);
    // Unit weights: SCAFFOLD averages the sampled clients, not their examples.
    this.models.add(update.weights, 1);
    this.controlDeltas.add(update.controlDelta, 1);
    this.metrics.add(update.metrics, update.numExamples);
    this.examples += update.numExamples;
    this.count++;
  }

  finish(): AggregateResult {
    if (this.finished) throw roundFinished('scaffold');
    this.finished = true;
    const base = { metrics: this.metrics.means(), numExamples: this.examples };
    if (this.count === 0) return { ...base, weights: null, numUpdates: 0 };
    const { serverLearningRate: eta, clientCount } = this.options;
    if (clientCount !== undefined && this.count > clientCount) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `scaffold: ${this.count} updates in one round, but clientCount (N) is ${clientCount}`,
        { field: 'strategyOptions.clientCount' },
      );
    }
    const share = clientCount === undefined ? 1 : this.count / clientCount;
    const meanModel = this.models.mean64();
    const meanDelta = this.controlDeltas.mean64();
    const n = this.global.length;
    const next = new Float32Array(n);
    const c = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const x = this.global[i] as number;
      next[i] = x + eta * ((meanModel[i] as number) - x);
      c[i] = (this.c[i] as number) + share * (meanDelta[i] as number);
    }
    this.adopt(c);
    return { ...base, weights: next, numUpdates: this.count };
  }
}

/** Δc_i is required (a client that sends none did not run SCAFFOLD), one finite value per parameter. */
function checkControlDelta(
  delta: Float32Array | undefined,
  paramCount: number,
): asserts delta is Float32Array {
  if (delta === undefined) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      'scaffold: the update has no controlDelta (Δc_i); the client did not run SCAFFOLD',
      { field: 'controlDelta' },
    );
  }
  if (delta.length !== paramCount) {
    throw new TesseraError(
      ErrorCode.WEIGHTS_LENGTH_MISMATCH,
      `controlDelta has ${delta.length} values; the model has ${paramCount}`,
      { field: 'controlDelta', expectedParameters: paramCount, receivedParameters: delta.length },
    );
  }
  const bad = firstNonFinite(delta);
  if (bad !== -1) {
    throw new TesseraError(
      ErrorCode.NON_FINITE_WEIGHTS,
      `controlDelta[${bad}] is ${delta[bad]}: every value must be a finite number`,
      { field: 'controlDelta', index: bad },
    );
  }
}
