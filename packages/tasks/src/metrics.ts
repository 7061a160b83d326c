/**
 * Metrics that add up across clients. A client does not report its accuracy or RMSE (a mean
 * of means weighted wrongly, or a root that does not average) but the sums they are made of;
 * the coordinator adds the sums of all clients and computes each metric once, exactly as if
 * the examples had been pooled. AUC is the exception: it is a statistic of ranks across all
 * examples, and no fixed-size per-client summary gives the pooled AUC exactly. A client
 * reports a histogram of its scores per true class in AUC_BINS equal bins of [0, 1]; the
 * combined AUC is that of the pooled histograms, exact for the scores rounded to their bins,
 * and off from the pooled exact AUC by at most half the share of (positive, negative) pairs
 * that share a bin (aucBinTies). A client's own AUC (exactAuc) is exact. See docs/research.md.
 */
import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { TaskMetric } from './schema.js';

/** Bins of the per-class score histograms that AUC is combined from. */
export const AUC_BINS = 1000;

export interface MetricSums {
  examples: number;
  /** Sum over examples of each example's loss. */
  lossSum: number;
  /** accuracy: examples whose predicted class is the true one. */
  correct?: number;
  /** mae: sum of |prediction - target|. */
  absoluteErrorSum?: number;
  /** rmse: sum of (prediction - target)^2. */
  squaredErrorSum?: number;
  /** auc: examples per score bin, by true class. */
  scoreHistogram?: ScoreHistogram;
}

/** Examples per bin of the positive-class probability (AUC_BINS bins of [0, 1]), by true class. */
export interface ScoreHistogram {
  negative: number[];
  positive: number[];
}

/** The loss and each metric asked for; auc is absent where one class has no examples. */
export type MetricValues = { loss: number } & Partial<Record<TaskMetric, number>>;

/** Zero sums with the fields the metrics need, ready to add examples to. */
export function emptyMetricSums(metrics: readonly TaskMetric[]): MetricSums {
  const sums: MetricSums = { examples: 0, lossSum: 0 };
  if (metrics.includes('accuracy')) sums.correct = 0;
  if (metrics.includes('mae')) sums.absoluteErrorSum = 0;
  if (metrics.includes('rmse')) sums.squaredErrorSum = 0;
  if (metrics.includes('auc')) {
    sums.scoreHistogram = {
      negative: new Array<number>(AUC_BINS).fill(0),
      positive: new Array<number>(AUC_BINS).fill(0),
    };
  }
  return sums;
}

/** The histogram bin of a probability: [k/AUC_BINS, (k+1)/AUC_BINS), 1 in the last bin. */
export function scoreBin(score: number): number {
  return Math.min(AUC_BINS - 1, Math.max(0, Math.floor(score * AUC_BINS)));
}

function mismatch(field: string): TesseraError {
  return new TesseraError(
    ErrorCode.INVALID_ARGUMENT,
    `addMetricSums: ${field} is in one report and not the other (reports of one task carry the same metrics)`,
    { field },
  );
}

function addOptional(field: string, a: number | undefined, b: number | undefined) {
  if ((a === undefined) !== (b === undefined)) throw mismatch(field);
  return a === undefined || b === undefined ? undefined : a + b;
}

function addCounts(field: string, a: readonly number[], b: readonly number[]): number[] {
  if (a.length !== AUC_BINS || b.length !== AUC_BINS) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `addMetricSums: ${field} must have ${AUC_BINS} bins`,
      { field },
    );
  }
  return a.map((count, bin) => count + (b[bin] as number));
}

/** Two clients' sums as one: what the pooled examples would have given. */
export function addMetricSums(a: MetricSums, b: MetricSums): MetricSums {
  const sums: MetricSums = { examples: a.examples + b.examples, lossSum: a.lossSum + b.lossSum };
  const correct = addOptional('correct', a.correct, b.correct);
  if (correct !== undefined) sums.correct = correct;
  const absolute = addOptional('absoluteErrorSum', a.absoluteErrorSum, b.absoluteErrorSum);
  if (absolute !== undefined) sums.absoluteErrorSum = absolute;
  const squared = addOptional('squaredErrorSum', a.squaredErrorSum, b.squaredErrorSum);
  if (squared !== undefined) sums.squaredErrorSum = squared;
  if ((a.scoreHistogram === undefined) !== (b.scoreHistogram === undefined)) {
    throw mismatch('scoreHistogram');
  }
  if (a.scoreHistogram !== undefined && b.scoreHistogram !== undefined) {
    sums.scoreHistogram = {
      negative: addCounts(
        'scoreHistogram.negative',
        a.scoreHistogram.negative,
        b.scoreHistogram.negative,
      ),
      positive: addCounts(
        'scoreHistogram.positive',
        a.scoreHistogram.positive,
        b.scoreHistogram.positive,
      ),
    };
  }
  return sums;
}

/**
 * AUC of score histograms: the probability that a random positive's bin is above a random
 * negative's, a shared bin counting one half. Undefined without positives or negatives.
 */
export function histogramAuc(histogram: ScoreHistogram): number | undefined {
  const { negative, positive } = histogram;
  let negativesBelow = 0;
  let pairsWon = 0;
  let positives = 0;
  for (let bin = 0; bin < negative.length; bin++) {
    const pos = positive[bin] ?? 0;
    const neg = negative[bin] ?? 0;
    pairsWon += pos * (negativesBelow + neg / 2);
    negativesBelow += neg;
    positives += pos;
  }
  if (positives === 0 || negativesBelow === 0) return undefined;
  return pairsWon / (positives * negativesBelow);
}

/**
 * The share of (positive, negative) pairs whose scores share a histogram bin: histogramAuc is
 * within half of it of the exact AUC of the same scores.
 */
export function aucBinTies(histogram: ScoreHistogram): number | undefined {
  let tied = 0;
  let positives = 0;
  let negatives = 0;
  histogram.positive.forEach((pos, bin) => {
    const neg = histogram.negative[bin] ?? 0;
    tied += pos * neg;
    positives += pos;
    negatives += neg;
  });
  return positives === 0 || negatives === 0 ? undefined : tied / (positives * negatives);
}

/**
 * Exact AUC (the Mann-Whitney U statistic over positives x negatives): the probability that a
 * random positive scores above a random negative, ties counting one half, computed from
 * midranks in O(n log n). labels: 1 positive, 0 negative. Undefined without both classes.
 */
export function exactAuc(scores: ArrayLike<number>, labels: ArrayLike<number>): number | undefined {
  const n = scores.length;
  if (labels.length !== n) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `exactAuc: ${n} scores but ${labels.length} labels`,
    );
  }
  const order = Array.from({ length: n }, (_, i) => i).sort(
    (a, b) => (scores[a] as number) - (scores[b] as number),
  );
  let positiveRankSum = 0;
  let positives = 0;
  for (let start = 0; start < n; ) {
    let end = start + 1;
    while (end < n && scores[order[end] as number] === scores[order[start] as number]) end++;
    // Ranks start+1..end share their mean.
    const midrank = (start + 1 + end) / 2;
    for (let i = start; i < end; i++) {
      if (labels[order[i] as number] === 1) {
        positiveRankSum += midrank;
        positives++;
      }
    }
    start = end;
  }
  const negatives = n - positives;
  if (positives === 0 || negatives === 0) return undefined;
  return (positiveRankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

/**
 * The loss and the metrics from (combined) sums. auc comes from the histogram; a caller that
 * holds every score (one client on its own data) passes exactAuc's value as `auc` instead.
 */
export function metricValues(
  sums: MetricSums,
  metrics: readonly TaskMetric[],
  exact: { auc?: number | undefined } = {},
): MetricValues {
  const n = sums.examples;
  const values: MetricValues = { loss: n > 0 ? sums.lossSum / n : 0 };
  const lacking = (field: string) =>
    new TesseraError(ErrorCode.INVALID_ARGUMENT, `metricValues: the sums lack ${field}`, {
      field,
    });
  const needs = (field: string, value: number | undefined): number => {
    if (value === undefined) throw lacking(field);
    return value;
  };
  for (const metric of metrics) {
    switch (metric) {
      case 'accuracy':
        values.accuracy = n > 0 ? needs('correct', sums.correct) / n : 0;
        break;
      case 'mae':
        values.mae = n > 0 ? needs('absoluteErrorSum', sums.absoluteErrorSum) / n : 0;
        break;
      case 'rmse':
        values.rmse = n > 0 ? Math.sqrt(needs('squaredErrorSum', sums.squaredErrorSum) / n) : 0;
        break;
      case 'auc': {
        let auc = exact.auc;
        if (!('auc' in exact)) {
          if (sums.scoreHistogram === undefined) throw lacking('scoreHistogram');
          auc = histogramAuc(sums.scoreHistogram);
        }
        if (auc !== undefined) values.auc = auc;
        break;
      }
    }
  }
  return values;
}
