import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  changeFrom,
  checkLocalDpUpdate,
  clipInPlace,
  l2Norm,
  localDpNormRange,
  localDpTrainSettings,
  privatiseUpdate,
  readLocalDpSettings,
} from './local.js';
import { CryptoGaussianNoise, SeededGaussianNoise } from './noise.js';
import { expectCode } from './testing/fixtures.js';

describe('clipInPlace', () => {
  it('leaves the norm at most the bound, exactly, and keeps the direction (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { minLength: 1, maxLength: 200 }),
        fc.double({ min: 1e-6, max: 1e3, noNaN: true }),
        (values, bound) => {
          const change = Float64Array.from(values);
          const before = l2Norm(change);
          const { norm, clipped } = clipInPlace(change, bound);
          expect(norm).toBe(before);
          expect(l2Norm(change)).toBeLessThanOrEqual(bound);
          expect(clipped).toBe(before > bound);
          if (!clipped) expect([...change]).toEqual(values);
          else {
            // Same direction: every coordinate scaled by one factor in (0, 1).
            const factor = bound / before;
            for (const [i, v] of values.entries()) {
              expect(Math.abs((change[i] as number) - v * factor)).toBeLessThanOrEqual(
                Math.abs(v * factor) * 1e-12,
              );
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('refuses a bound that is not positive and finite', () => {
    for (const bound of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expectCode(() => clipInPlace(new Float64Array(2), bound), 'INVALID_ARGUMENT', 'clipNorm');
    }
  });
});

describe('local DP of an update', () => {
  const settings = { clipNorm: 0.5, noiseMultiplier: 1 };

  it('carries its settings in the train instruction and reads them back', () => {
    const wire = localDpTrainSettings(settings);
    expect(wire).toEqual({ localClipNorm: 0.5, localNoiseMultiplier: 1 });
    expect(readLocalDpSettings({ ...wire, proximalMu: 0.01 })).toEqual(settings);
    expect(readLocalDpSettings({ proximalMu: 0.01 })).toBeNull();
    expectCode(
      () => readLocalDpSettings({ localClipNorm: 1 }),
      'INVALID_ARGUMENT',
      'localNoiseMultiplier',
    );
    expectCode(
      () => readLocalDpSettings({ localNoiseMultiplier: 1 }),
      'INVALID_ARGUMENT',
      'localClipNorm',
    );
    expectCode(
      () => readLocalDpSettings({ localClipNorm: 'big', localNoiseMultiplier: 1 }),
      'INVALID_ARGUMENT',
      'localClipNorm',
    );
    expectCode(
      () => readLocalDpSettings({ localClipNorm: 1, localNoiseMultiplier: -1 }),
      'INVALID_ARGUMENT',
      'localNoiseMultiplier',
    );
    expectCode(
      () => localDpTrainSettings({ clipNorm: 0, noiseMultiplier: 1 }),
      'INVALID_ARGUMENT',
      'localClipNorm',
    );
  });

  it('clips then adds N(0, (sigma C)^2): the noise has the promised std over many coordinates', () => {
    const d = 200_000;
    const global = Float32Array.from({ length: d }, (_, i) => Math.sin(i));
    const weights = Float32Array.from(global, (g, i) => g + 0.01 * Math.cos(i));
    const {
      weights: sent,
      changeNorm,
      clipped,
    } = privatiseUpdate(global, weights, settings, new CryptoGaussianNoise().forRound(1));
    expect(clipped).toBe(true);
    expect(changeNorm).toBeCloseTo(l2Norm(changeFrom(global, weights)), 10);
    // The clipped change has norm 0.5 over 2e5 coordinates: ~1e-3 each, so the sent change's
    // spread is the noise's, std sigma C = 0.5, to 6 standard errors.
    const change = changeFrom(global, sent);
    let sum = 0;
    let squares = 0;
    for (const v of change) {
      sum += v;
      squares += v * v;
    }
    const std = Math.sqrt(squares / d - (sum / d) ** 2);
    expect(Math.abs(std - 0.5)).toBeLessThan(0.5 * (6 / Math.sqrt(2 * d)) + 1e-3);
    expect(() => checkLocalDpUpdate(global, sent, settings)).not.toThrow();
  });

  it('without noise, sends exactly the clipped change (up to float32 rounding)', () => {
    const global = new Float32Array([0, 0, 0]);
    const weights = new Float32Array([3, 4, 0]);
    const { weights: sent } = privatiseUpdate(
      global,
      weights,
      { clipNorm: 1, noiseMultiplier: 0 },
      {
        fill: () => {
          throw new Error('no draws without noise');
        },
      },
    );
    expect([...sent]).toEqual([Math.fround(0.6), Math.fround(0.8), 0]);
  });

  it('refuses a wrong length or non-finite weights before drawing anything', () => {
    const global = new Float32Array(4);
    const stream = new SeededGaussianNoise(1).forRound(1);
    expectCode(
      () => privatiseUpdate(global, new Float32Array(3), settings, stream),
      'WEIGHTS_LENGTH_MISMATCH',
      'weights',
    );
    const bad = new Float32Array([0, Number.NaN, 0, 0]);
    const error = expectCode(
      () => privatiseUpdate(global, bad, settings, stream),
      'NON_FINITE_WEIGHTS',
      'weights',
    );
    expect(error.data?.['index']).toBe(1);
  });
});

describe('what the coordinator can check under local DP', () => {
  const settings = { clipNorm: 1, noiseMultiplier: 0.8 };
  const d = 5000;
  const global = Float32Array.from({ length: d }, (_, i) => Math.cos(i) * 0.1);

  it('accepts honest updates: 200 privatised updates, none refused', () => {
    const noise = new CryptoGaussianNoise();
    for (let k = 0; k < 200; k++) {
      const weights = Float32Array.from(global, (g, i) => g + ((k + i) % 7) * 0.3);
      const { weights: sent } = privatiseUpdate(global, weights, settings, noise.forRound(k));
      checkLocalDpUpdate(global, sent, settings);
    }
  });

  it('refuses an update that skipped the noise, and one that was not clipped', () => {
    // Clipped but not noised: norm <= C, far below sigma C sqrt(d) = 56.
    const unnoised = privatiseUpdate(
      global,
      global.map((g) => g + 1),
      { ...settings, noiseMultiplier: 0 },
      {
        fill: () => {},
      },
    ).weights;
    const low = expectCode(
      () => checkLocalDpUpdate(global, unnoised, settings),
      'INVALID_ARGUMENT',
      'weights',
    );
    expect(low.data?.['norm']).toBeLessThan(low.data?.['min'] as number);
    // Noised but not clipped: a change of norm 100 plus the noise.
    const noise = new Float64Array(d);
    new CryptoGaussianNoise().forRound(1).fill(noise);
    const unclipped = Float32Array.from(
      global,
      (g, i) => g + 100 / Math.sqrt(d) + 0.8 * (noise[i] as number),
    );
    const high = expectCode(
      () => checkLocalDpUpdate(global, unclipped, settings),
      'INVALID_ARGUMENT',
      'weights',
    );
    expect(high.data?.['norm']).toBeGreaterThan(high.data?.['max'] as number);
    expectCode(
      () => checkLocalDpUpdate(global, new Float32Array(3), settings),
      'WEIGHTS_LENGTH_MISMATCH',
      'weights',
    );
  });

  it('is exact without noise: [0, C] plus float32 rounding', () => {
    const range = localDpNormRange({ clipNorm: 2, noiseMultiplier: 0 }, 10);
    expect(range).toEqual({ min: 0, max: 2 });
    const narrow = localDpNormRange(settings, d, 1e-3);
    const wide = localDpNormRange(settings, d, 1e-12);
    expect(wide.min).toBeLessThan(narrow.min);
    expect(wide.max).toBeGreaterThan(narrow.max);
    expectCode(() => localDpNormRange(settings, 0), 'INVALID_ARGUMENT', 'dimension');
    expectCode(() => localDpNormRange(settings, 10, 0), 'INVALID_ARGUMENT', 'falseRejection');
  });
});
