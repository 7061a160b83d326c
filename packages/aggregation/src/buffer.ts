import { checkUpdate, roundFinished } from './checks.js';
import type { AggregateResult, RoundAggregator, TrainUpdate } from './strategy.js';
import { WeightedMetrics } from './weighted.js';

/**
 * The round of a rule that needs every update at once (median, trimmed mean, Krum, Bulyan,
 * centered clipping with more than one iteration): it keeps each checked update in arrival
 * order, O(clients x parameters) memory, and `combine` reduces them when the round ends.
 * Metrics and the round's example count are example-weighted as for FedAvg, whether or not
 * the rule weights the models.
 */
export abstract class BufferingAggregator implements RoundAggregator {
  protected readonly updates: Float32Array[] = [];
  protected readonly examples: number[] = [];
  private readonly metrics = new WeightedMetrics();
  private numExamples = 0;
  private finished = false;

  constructor(
    protected readonly paramCount: number,
    protected readonly strategyName: string,
  ) {}

  get numUpdates(): number {
    return this.updates.length;
  }

  add(update: TrainUpdate): void {
    if (this.finished) throw roundFinished(this.strategyName);
    checkUpdate(update, this.paramCount);
    this.updates.push(update.weights);
    this.examples.push(update.numExamples);
    this.metrics.add(update.metrics, update.numExamples);
    this.numExamples += update.numExamples;
  }

  finish(): AggregateResult {
    if (this.finished) throw roundFinished(this.strategyName);
    this.finished = true;
    return {
      weights: this.updates.length === 0 ? null : this.combine(),
      metrics: this.metrics.means(),
      numExamples: this.numExamples,
      numUpdates: this.updates.length,
    };
  }

  /** The next global model from `updates` (at least one). */
  protected abstract combine(): Float32Array;
}

/**
 * Sorts each coordinate's values across `rows` (float64) and reduces them with `reduce`;
 * the result does not depend on the order of `rows`.
 */
export function perCoordinate(
  rows: readonly Float32Array[],
  paramCount: number,
  reduce: (sorted: Float64Array) => number,
): Float32Array {
  const column = new Float64Array(rows.length);
  const out = new Float32Array(paramCount);
  for (let i = 0; i < paramCount; i++) {
    for (let k = 0; k < rows.length; k++) column[k] = (rows[k] as Float32Array)[i] as number;
    column.sort();
    out[i] = reduce(column);
  }
  return out;
}

/** The unweighted mean of `rows`, summed in float64 in the order given, rounded once. */
export function unweightedMean(rows: readonly Float32Array[], paramCount: number): Float32Array {
  const sums = new Float64Array(paramCount);
  for (const row of rows)
    for (let i = 0; i < paramCount; i++) sums[i] = (sums[i] as number) + (row[i] as number);
  const out = new Float32Array(paramCount);
  for (let i = 0; i < paramCount; i++) out[i] = (sums[i] as number) / rows.length;
  return out;
}
