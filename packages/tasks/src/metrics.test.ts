import { ErrorCode } from '@tessera/protocol';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AUC_BINS,
  addMetricSums,
  aucBinTies,
  emptyMetricSums,
  exactAuc,
  histogramAuc,
  type MetricSums,
  metricValues,
  scoreBin,
} from './metrics.js';

/** AUC by its definition: over every (positive, negative) pair, 1 if ordered, 1/2 if tied. */
function pairwiseAuc(scores: number[], labels: number[]): number | undefined {
  let won = 0;
  let pairs = 0;
  scores.forEach((positive, i) => {
    if (labels[i] !== 1) return;
    scores.forEach((negative, j) => {
      if (labels[j] !== 0) return;
      pairs++;
      won += positive > negative ? 1 : positive === negative ? 0.5 : 0;
    });
  });
  return pairs === 0 ? undefined : won / pairs;
}

function histogramOf(scores: number[], labels: number[]): MetricSums {
  const sums = emptyMetricSums(['auc']);
  scores.forEach((score, i) => {
    const histogram = sums.scoreHistogram as NonNullable<MetricSums['scoreHistogram']>;
    const bins = labels[i] === 1 ? histogram.positive : histogram.negative;
    bins[scoreBin(score)] = (bins[scoreBin(score)] as number) + 1;
    sums.examples++;
  });
  return sums;
}

describe('exactAuc', () => {
  it('matches a hand computation with ties', () => {
    // Positives 0.9, 0.5; negatives 0.5, 0.1, 0.3. Pairs: 0.9 beats all three (3), 0.5 ties
    // 0.5 (1/2) and beats 0.1 and 0.3 (2): 5.5 of 6.
    expect(exactAuc([0.9, 0.5, 0.5, 0.1, 0.3], [1, 1, 0, 0, 0])).toBeCloseTo(5.5 / 6, 12);
    expect(exactAuc([0.2, 0.2, 0.2], [1, 0, 1])).toBe(0.5);
    expect(exactAuc([0.1, 0.9], [1, 0])).toBe(0);
  });

  it('is undefined without both classes, and refuses mismatched lengths', () => {
    expect(exactAuc([0.1, 0.2], [1, 1])).toBeUndefined();
    expect(exactAuc([], [])).toBeUndefined();
    expect(() => exactAuc([0.1], [1, 0])).toThrow(
      expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }),
    );
  });

  it('equals the pairwise definition on random scores with many ties', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 1 })), {
          maxLength: 40,
        }),
        (examples) => {
          const scores = examples.map(([score]) => score / 5);
          const labels = examples.map(([, label]) => label);
          const expected = pairwiseAuc(scores, labels);
          const actual = exactAuc(scores, labels);
          if (expected === undefined) expect(actual).toBeUndefined();
          else expect(actual).toBeCloseTo(expected, 12);
        },
      ),
    );
  });
});

describe('combining metric sums across clients', () => {
  it('adds up to the pooled loss, accuracy, MAE and RMSE exactly', () => {
    const a: MetricSums = {
      examples: 2,
      lossSum: 1,
      correct: 1,
      absoluteErrorSum: 3,
      squaredErrorSum: 5,
    };
    const b: MetricSums = {
      examples: 3,
      lossSum: 4,
      correct: 3,
      absoluteErrorSum: 2,
      squaredErrorSum: 15,
    };
    const values = metricValues(addMetricSums(a, b), ['accuracy', 'mae', 'rmse']);
    expect(values).toEqual({ loss: 1, accuracy: 4 / 5, mae: 1, rmse: 2 });
  });

  it('gives the histogram AUC of the pooled examples, within half the tied share of the exact one', () => {
    const scores = [0.91, 0.55, 0.5504, 0.12, 0.3, 0.77, 0.7702, 0.05];
    const labels = [1, 1, 0, 0, 0, 1, 0, 1];
    const pooled = histogramOf(scores, labels);
    const combined = addMetricSums(
      histogramOf(scores.slice(0, 3), labels.slice(0, 3)),
      histogramOf(scores.slice(3), labels.slice(3)),
    );
    expect(combined).toEqual(pooled);
    const histogram = combined.scoreHistogram as NonNullable<MetricSums['scoreHistogram']>;
    const exact = exactAuc(scores, labels) as number;
    const binned = histogramAuc(histogram) as number;
    // 0.55 / 0.5504 and 0.77 / 0.7702 share bins: 2 of 16 pairs tie there.
    expect(aucBinTies(histogram)).toBe(2 / 16);
    expect(Math.abs(binned - exact)).toBeLessThanOrEqual((aucBinTies(histogram) as number) / 2);
    // Exact: positives 0.91 (4 wins), 0.55 (2), 0.77 (3), 0.05 (0) over 4 negatives: 9/16.
    expect(exact).toBe(9 / 16);
    // Each tied pair counts one half: two of them, where the exact AUC counts 0 for both.
    expect(binned).toBe((9 + 2 * 0.5) / 16);
    expect(metricValues(combined, ['auc'])).toEqual({ loss: 0, auc: binned });
    expect(metricValues(combined, ['auc'], { auc: exact }).auc).toBe(exact);
  });

  it('bins scores in [k/1000, (k+1)/1000), 1 and beyond in the last bin', () => {
    expect([0, 0.0009, 0.001, 0.5, 0.9999, 1, 1.5, -1].map(scoreBin)).toEqual([
      0,
      0,
      1,
      500,
      AUC_BINS - 1,
      AUC_BINS - 1,
      AUC_BINS - 1,
      0,
    ]);
  });

  it('refuses to add reports that carry different metrics', () => {
    expect(() =>
      addMetricSums({ examples: 1, lossSum: 0, correct: 1 }, { examples: 1, lossSum: 0 }),
    ).toThrow(
      expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT, data: { field: 'correct' } }),
    );
    const short = emptyMetricSums(['auc']);
    short.scoreHistogram?.positive.pop();
    expect(() => addMetricSums(short, emptyMetricSums(['auc']))).toThrow(
      expect.objectContaining({ data: { field: 'scoreHistogram.positive' } }),
    );
    expect(() => metricValues({ examples: 1, lossSum: 0 }, ['rmse'])).toThrow(
      /lack squaredErrorSum/,
    );
  });

  it('reports zeros for no examples and no auc for one class only', () => {
    expect(metricValues(emptyMetricSums(['accuracy']), ['accuracy'])).toEqual({
      loss: 0,
      accuracy: 0,
    });
    expect(metricValues(histogramOf([0.2, 0.4], [1, 1]), ['auc'])).toEqual({ loss: 0 });
  });
});
