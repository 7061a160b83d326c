import { ErrorCode, TesseraError } from '@tessera/protocol';
import { ExactWeightedSum } from './exact-sum.js';

/**
 * How the FedAvg family sums a round's example-weighted models, recorded with each run
 * (strategy option `arithmetic`), so a replay sums the way the run did:
 * - `float64-sequential`: WeightedSum below, in arrival order (every run recorded before the
 *   option existed);
 * - `exact`: ExactWeightedSum, independent of arrival order and of any split into partials.
 */
export const AGGREGATION_ARITHMETICS = ['float64-sequential', 'exact'] as const;
export type AggregationArithmetic = (typeof AGGREGATION_ARITHMETICS)[number];

/** What a FedAvg-family round needs of its sum, whichever arithmetic computes it. */
export interface ModelSum {
  readonly weight: number;
  add(values: Float32Array, weight: number): void;
  /** The weighted mean rounded to float32 (the next global model). */
  mean(): Float32Array;
  /** The weighted mean in float64 (what a server optimiser steps from). */
  mean64(): Float64Array;
}

export function createModelSum(arithmetic: AggregationArithmetic, length: number): ModelSum {
  return arithmetic === 'exact' ? new ExactWeightedSum(length) : new WeightedSum(length);
}

/**
 * Example-weighted running sums in float64. Float32 accumulation over hundreds of clients loses
 * low bits and makes the result depend on arrival order more than it must; float64 sums of
 * float32 products are exact to well below float32 resolution, and the final division rounds
 * once. The summation order is the order of `add` calls (documented in docs/aggregation.md),
 * so a replay that feeds updates in their recorded arrival order is bit-identical.
 */
export class WeightedSum implements ModelSum {
  private readonly sums: Float64Array;
  private totalWeight = 0;

  constructor(readonly length: number) {
    this.sums = new Float64Array(length);
  }

  get weight(): number {
    return this.totalWeight;
  }

  add(values: Float32Array, weight: number): void {
    if (values.length !== this.length) {
      throw new TesseraError(
        ErrorCode.WEIGHTS_LENGTH_MISMATCH,
        `update has ${values.length} parameters; the model has ${this.length}`,
      );
    }
    // Weights are example counts. Bounding them by 2^53 bounds every product by
    // 2^53 * 3.4e38 (float32's largest), so the float64 sums cannot overflow.
    if (!(weight > 0) || weight > Number.MAX_SAFE_INTEGER) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `update weight must be a positive number up to 2^53 - 1, got ${weight}`,
        { field: 'numExamples' },
      );
    }
    const sums = this.sums;
    for (let i = 0; i < values.length; i++)
      sums[i] = (sums[i] as number) + weight * (values[i] as number);
    this.totalWeight += weight;
  }

  /** sum_k w_k x_k / sum_k w_k in float64, not rounded (what a server optimiser steps from). */
  mean64(): Float64Array {
    if (this.totalWeight === 0) {
      throw new TesseraError(ErrorCode.INVALID_ARGUMENT, 'cannot average zero updates');
    }
    const out = new Float64Array(this.length);
    const total = this.totalWeight;
    for (let i = 0; i < out.length; i++) out[i] = (this.sums[i] as number) / total;
    return out;
  }

  /** sum_k w_k x_k / sum_k w_k, rounded to float32. */
  mean(): Float32Array {
    if (this.totalWeight === 0) {
      throw new TesseraError(ErrorCode.INVALID_ARGUMENT, 'cannot average zero updates');
    }
    const out = new Float32Array(this.length);
    const total = this.totalWeight;
    for (let i = 0; i < out.length; i++) out[i] = (this.sums[i] as number) / total;
    return out;
  }
}

/**
 * A running example-weighted mean, kept so that it cannot overflow: each step replaces the
 * mean by the convex combination (1 - f) * mean + f * x with f = w / (W + w), whose magnitude
 * never exceeds the largest |x| seen, so finite inputs (1e308 included) give a finite mean.
 * A sum of value * weight, divided at the end, turns one huge metric into Infinity (and the
 * round's record into a database error). The total weight saturates at Number.MAX_VALUE
 * instead of becoming Infinity; example counts are far below that.
 */
export class WeightedMean {
  private current = 0;
  private total = 0;

  get weight(): number {
    return this.total;
  }

  /** The mean so far; 0 before any value. */
  get value(): number {
    return this.current;
  }

  add(value: number, weight: number): void {
    if (!Number.isFinite(value) || !(weight > 0) || !Number.isFinite(weight)) return;
    let next = this.total + weight;
    // Halving both keeps the ratio when the sum itself would overflow.
    const fraction = Number.isFinite(next)
      ? weight / next
      : weight / 2 / (this.total / 2 + weight / 2);
    if (!Number.isFinite(next)) next = Number.MAX_VALUE;
    const mean = (1 - fraction) * this.current + fraction * value;
    // Rounding may step one ulp past the largest double when both terms are near it.
    this.current = Math.min(Number.MAX_VALUE, Math.max(-Number.MAX_VALUE, mean));
    this.total = next;
  }
}

/** Per metric name: its example-weighted mean and the examples behind it. */
export type MetricMeans = Readonly<Record<string, { mean: number; weight: number }>>;

/** Example-weighted means of named scalar metrics; a metric missing from a reply is skipped for it. */
export class WeightedMetrics {
  private readonly means_ = new Map<string, WeightedMean>();

  add(metrics: Readonly<Record<string, number>>, weight: number): void {
    for (const [name, value] of Object.entries(metrics)) {
      if (!Number.isFinite(value)) continue;
      let mean = this.means_.get(name);
      if (!mean) {
        mean = new WeightedMean();
        this.means_.set(name, mean);
      }
      mean.add(value, weight);
    }
  }

  means(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, mean] of this.means_) if (mean.weight > 0) out[name] = mean.value;
    return out;
  }

  /** The means with their weights, for another process to merge (a RoundPartial). */
  entries(): MetricMeans {
    const out: Record<string, { mean: number; weight: number }> = {};
    for (const [name, mean] of this.means_)
      if (mean.weight > 0) out[name] = { mean: mean.value, weight: mean.weight };
    return out;
  }

  /**
   * Folds in means computed elsewhere, each as one value of its weight: the same mean as
   * folding their replies here, up to float64 rounding (metrics are reported, not replayed).
   */
  merge(means: MetricMeans): void {
    for (const [name, { mean, weight }] of Object.entries(means))
      this.add({ [name]: mean }, weight);
  }
}
