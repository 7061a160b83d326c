import { SeededGaussianNoise } from '@tessera/privacy';
import { describe, expect, it } from 'vitest';
import { createStrategy, runRulesFor, type Strategy } from './index.js';
import { expectCode } from './testing/fixtures.js';

/**
 * dp-fedavg under secure aggregation: the clients clip, the coordinator gets only the unmasked
 * sum of their clipped changes (addClippedSum), noises it and divides by the fixed m.
 */

const options = {
  noiseMultiplier: 0.7,
  clipNorm: 1,
  expectedClientsPerRound: 4,
  samplingRate: 0.5,
  delta: 1e-5,
};

const strategyWith = (seed: number): Strategy =>
  createStrategy('dp-fedavg', options, { noise: new SeededGaussianNoise(seed) });

describe('dp-fedavg on a secure sum', () => {
  it('asks the clients to clip to its fixed C, and none under adaptive clipping', () => {
    expect(strategyWith(1).clientClipNorm).toBe(1);
    const adaptive = createStrategy(
      'dp-fedavg',
      { ...options, clipNorm: undefined, adaptive: { countNoiseMultiplier: 2 } },
      { noise: new SeededGaussianNoise(1) },
    );
    expect(adaptive.clientClipNorm).toBeUndefined();
  });

  it('is g + (the clipped sum + noise) / m, bit for bit, and records client clipping', () => {
    const global = new Float32Array([0.5, -1, 2]);
    const changeSum = new Float64Array([0.3, -0.4, 1.2]);
    const aggregator = strategyWith(7).beginRound(1, global);
    aggregator.addClippedSum?.({ changeSum, count: 2, maxAbsError: 1e-9 });
    const result = aggregator.finish();
    const draws = new Float64Array(3);
    new SeededGaussianNoise(7).forRound(1).fill(draws);
    // One client's sensitivity: C plus sqrt(d) times its share of the encoding error; the
    // noise is z times it, so that z is exactly what the accountant counts.
    const sensitivity = 1 + (Math.sqrt(3) * 1e-9) / 2;
    const expected = new Float32Array(3);
    for (let i = 0; i < 3; i++) {
      expected[i] =
        (global[i] as number) +
        ((changeSum[i] as number) + 0.7 * sensitivity * (draws[i] as number)) / 4;
    }
    expect(result.weights).toEqual(expected);
    expect(result.numUpdates).toBe(2);
    expect(result.privacy).toMatchObject({
      clipping: 'client',
      clippedCount: null,
      denominator: 4,
      steps: 1,
    });
    expect(result.privacy?.sensitivity).toBeCloseTo(sensitivity, 15);
    expect(result.privacy?.noiseStd).toBeCloseTo(0.7 * sensitivity, 15);
    expect(result.privacy?.noiseStd).toBeGreaterThan(0.7);
    expect(result.privacy?.epsilon).toBeGreaterThan(0);
  });

  it('refuses a sum no clipped changes could make, a wrong length or a non-finite value, and keeps the round as it was', () => {
    const global = new Float32Array([0, 0, 0]);
    const aggregator = strategyWith(3).beginRound(1, global);
    const add =
      (changeSum: Float64Array, count = 2, maxAbsError = 0) =>
      () =>
        aggregator.addClippedSum?.({ changeSum, count, maxAbsError });
    // Two changes of norm <= 1 cannot sum to norm 2.5.
    const tooLong = expectCode(add(new Float64Array([1.5, 2, 0])), 'INVALID_ARGUMENT');
    expect(tooLong.data).toMatchObject({ field: 'changeSum', norm: 2.5, bound: 2 });
    expectCode(add(new Float64Array([0, 0])), 'WEIGHTS_LENGTH_MISMATCH');
    expectCode(add(new Float64Array([0, Number.NaN, 0])), 'INVALID_ARGUMENT');
    expectCode(add(new Float64Array([0, 0, 0]), 0), 'INVALID_ARGUMENT');
    expectCode(add(new Float64Array([0, 0, 0]), 1, -1), 'INVALID_ARGUMENT');
    // Nothing was folded in: the round releases the noise of an empty sum.
    const result = aggregator.finish();
    expect(result.numUpdates).toBe(0);
    const draws = new Float64Array(3);
    new SeededGaussianNoise(3).forRound(1).fill(draws);
    expect(result.weights).toEqual(Float32Array.from(draws, (z) => (0.7 * z) / 4));
    expect(result.privacy).toMatchObject({ steps: 1, clipping: 'coordinator' });
  });

  it('is allowed under secure aggregation with fixed clipping inside the clip range, with the reason otherwise', () => {
    const run = (clipRange: number) => ({
      keepUpdates: false,
      clientsPerRound: null,
      fractionFit: null,
      minClients: 2,
      secureAggregation: {
        clipRange,
        maxExamplesPerClient: 100,
        thresholdFraction: 0.6,
        stepDeadlineMs: 1000,
      },
    });
    expect(runRulesFor('dp-fedavg', options, run(1))).toEqual([]);
    expect(runRulesFor('dp-fedavg', options, run(0.5))).toEqual([
      {
        path: ['secureAggregation', 'clipRange'],
        message: expect.stringMatching(/must cover dp-fedavg's clipNorm 1/),
      },
    ]);
    expect(
      runRulesFor('dp-fedavg', { ...options, clipNorm: undefined, adaptive: {} }, run(1)),
    ).toEqual([
      {
        path: ['strategyOptions', 'adaptive'],
        message: expect.stringMatching(/fixed clipNorm/),
      },
    ]);
    // The rules that need individual updates are still refused.
    expect(runRulesFor('fedmedian', {}, run(1))[0]?.path).toEqual(['secureAggregation']);
  });
});
