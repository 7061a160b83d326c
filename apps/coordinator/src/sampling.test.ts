import { describe, expect, it } from 'vitest';
import { cryptoUniform, selectPoisson } from './sampling.js';

describe('selectPoisson', () => {
  it('takes each candidate whose draw falls below the rate, in sorted order, whatever the connection order', () => {
    const draws = [0.1, 0.9, 0.49, 0.5, 0.2];
    let next = 0;
    const random = () => draws[next++] as number;
    // Sorted first: a, b, c, d, e get 0.1, 0.9, 0.49, 0.5, 0.2.
    expect(selectPoisson(['e', 'c', 'a', 'd', 'b'], 0.5, random)).toEqual(['a', 'c', 'e']);
    expect(next).toBe(5);
  });

  it('may select nobody, and everybody at rate 1', () => {
    expect(selectPoisson(['a', 'b'], 0.5, () => 0.99)).toEqual([]);
    expect(selectPoisson(['a', 'b'], 1, () => 0.999)).toEqual(['a', 'b']);
  });

  it('refuses a rate outside (0, 1] with the field', () => {
    for (const rate of [0, -0.1, 1.5, Number.NaN]) {
      expect(() => selectPoisson(['a'], rate, cryptoUniform)).toThrow(
        expect.objectContaining({
          code: 'INVALID_ARGUMENT',
          data: { field: 'strategyOptions.samplingRate' },
        }),
      );
    }
  });

  it('with the CSPRNG, selects each of 20,000 candidates with probability q (within 5 sigma)', () => {
    const candidates = Array.from({ length: 20_000 }, (_, i) => `c${i}`);
    const q = 0.3;
    const selected = selectPoisson(candidates, q, cryptoUniform).length;
    const sigma = Math.sqrt(candidates.length * q * (1 - q));
    expect(Math.abs(selected - candidates.length * q)).toBeLessThan(5 * sigma);
  });
});

describe('cryptoUniform', () => {
  it('draws in [0, 1) with a mean near 1/2 and no repeats', () => {
    const draws = Array.from({ length: 10_000 }, cryptoUniform);
    expect(draws.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(new Set(draws).size).toBe(draws.length);
    const mean = draws.reduce((a, b) => a + b, 0) / draws.length;
    // The mean of 10,000 uniforms has sd 0.0029.
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.015);
  });
});
