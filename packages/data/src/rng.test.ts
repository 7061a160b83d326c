import { ErrorCode } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import { createRng } from './rng.js';

const draws = (seed: number, n: number): number[] => {
  const rng = createRng(seed);
  return Array.from({ length: n }, () => rng.next());
};

describe('createRng', () => {
  it('repeats its stream for a seed and differs across seeds', () => {
    expect(draws(42, 100)).toEqual(draws(42, 100));
    expect(draws(42, 100)).not.toEqual(draws(43, 100));
    // Seeds that differ only above 32 bits are distinct streams too.
    expect(draws(2 ** 40, 10)).not.toEqual(draws(0, 10));
  });

  it('draws in [0, 1) with a uniform-looking mean and spread', () => {
    const values = draws(7, 100_000);
    expect(Math.min(...values)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...values)).toBeLessThan(1);
    const mean = values.reduce((sum, v) => sum + v, 0) / values.length;
    const variance = values.reduce((sum, v) => sum + (v - mean) ** 2, 0) / values.length;
    expect(mean).toBeCloseTo(0.5, 2);
    expect(variance).toBeCloseTo(1 / 12, 2);
  });

  it('int(n) covers 0..n-1 only', () => {
    const rng = createRng(1);
    const seen = new Set<number>();
    for (let i = 0; i < 1000; i++) seen.add(rng.int(6));
    expect([...seen].sort()).toEqual([0, 1, 2, 3, 4, 5]);
    expect(() => rng.int(0)).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
  });

  it('shuffles in place into a permutation, reproducibly', () => {
    const a = createRng(5).shuffle(Uint32Array.from({ length: 50 }, (_, i) => i));
    const b = createRng(5).shuffle(Uint32Array.from({ length: 50 }, (_, i) => i));
    expect(a).toEqual(b);
    expect([...a].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect([...a]).not.toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it('gamma has mean = shape, for shape below and above 1', () => {
    const rng = createRng(9);
    for (const shape of [0.3, 1, 4.5]) {
      let sum = 0;
      const n = 40_000;
      for (let i = 0; i < n; i++) sum += rng.gamma(shape);
      expect(sum / n).toBeCloseTo(shape, 1);
    }
  });

  it('dirichlet draws sum to 1', () => {
    const rng = createRng(3);
    for (const alpha of [0.01, 0.5, 100]) {
      const p = rng.dirichlet(alpha, 20);
      expect(p.reduce((sum, v) => sum + v, 0)).toBeCloseTo(1, 10);
      expect(Math.min(...p)).toBeGreaterThanOrEqual(0);
    }
  });

  it('rejects a seed that is not a safe integer', () => {
    expect(() => createRng(0.5)).toThrow(/seed must be a safe integer/);
    expect(() => createRng(Number.NaN)).toThrow(/seed/);
  });
});
