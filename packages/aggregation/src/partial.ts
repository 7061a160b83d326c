import { ErrorCode, TesseraError } from '@tessera/protocol';
import { checkUpdate } from './checks.js';
import { ExactWeightedSum } from './exact-sum.js';
import type { TrainUpdate } from './strategy.js';
import { type MetricMeans, WeightedMetrics } from './weighted.js';

/**
 * What one coordinator process folded of a round's updates, for the process that owns the run
 * (issue 16: aggregation where the updates arrive). Only for the linear rules that sum in
 * `exact` arithmetic: merging exact partial sums gives the very sum of folding every update in
 * one place, whatever the split, so the round's model is the same bytes on any topology.
 */
export interface RoundPartial {
  /** Σ n_k · w_k over the partial's updates: `ExactWeightedSum.toBytes()`. */
  sum: Uint8Array;
  /** How many updates it sums. */
  numUpdates: number;
  /** Σ n_k. */
  numExamples: number;
  /** Example-weighted means of the clients' metrics, with the examples behind each. */
  metrics: MetricMeans;
}

/**
 * Folds the updates that reached one process into a RoundPartial: the same checks as a round's
 * aggregator (length, finite values, example count) before anything is folded, so a refused
 * update leaves no trace.
 */
export class PartialRound {
  private readonly sum: ExactWeightedSum;
  private readonly metrics = new WeightedMetrics();

  constructor(readonly paramCount: number) {
    this.sum = new ExactWeightedSum(paramCount);
  }

  get numUpdates(): number {
    return this.sum.numUpdates;
  }

  add(update: TrainUpdate): void {
    checkExactUpdate(update, this.paramCount);
    this.sum.add(update.weights, update.numExamples);
    this.metrics.add(update.metrics, update.numExamples);
  }

  toPartial(): RoundPartial {
    return {
      sum: this.sum.toBytes(),
      numUpdates: this.sum.numUpdates,
      numExamples: this.sum.weight,
      metrics: this.metrics.entries(),
    };
  }
}

/**
 * Throws the TesseraError an exact round's aggregator would throw for this update (length,
 * finite values, an integer example count in 1..2^53 - 1); folds nothing.
 */
export function checkExactUpdate(update: TrainUpdate, paramCount: number): void {
  checkUpdate(update, paramCount);
  if (!Number.isInteger(update.numExamples)) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `exact aggregation needs an integer example count, got ${update.numExamples}`,
      { field: 'numExamples' },
    );
  }
}

/**
 * A partial checked against the round it is to join, before any of it is merged: the sum's
 * format and length (ExactWeightedSum.fromBytes: MALFORMED_FRAME, WEIGHTS_LENGTH_MISMATCH),
 * its counts against the sum's own header, and finite metrics over at most its examples
 * (INVALID_ARGUMENT, field `partial`). Returns the decoded sum.
 */
export function checkPartial(partial: RoundPartial, paramCount: number): ExactWeightedSum {
  const refuse = (message: string) =>
    new TesseraError(ErrorCode.INVALID_ARGUMENT, `partial aggregate: ${message}`, {
      field: 'partial',
    });
  const sum = ExactWeightedSum.fromBytes(partial.sum, paramCount);
  if (!Number.isSafeInteger(partial.numUpdates) || partial.numUpdates < 1)
    throw refuse(`numUpdates ${partial.numUpdates} is not a positive integer`);
  if (sum.numUpdates !== partial.numUpdates)
    throw refuse(`says ${partial.numUpdates} updates; its sum holds ${sum.numUpdates}`);
  if (sum.weight !== partial.numExamples)
    throw refuse(`says ${partial.numExamples} examples; its sum weighs ${sum.weight}`);
  for (const [name, { mean, weight }] of Object.entries(partial.metrics)) {
    if (!Number.isFinite(mean) || !(weight > 0) || weight > partial.numExamples)
      throw refuse(`metric ${name}: mean ${mean} over ${weight} examples`);
  }
  return sum;
}
