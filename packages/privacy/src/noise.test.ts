import { describe, expect, it } from 'vitest';
import { logErfc } from './logmath.js';
import { CryptoGaussianNoise, SeededGaussianNoise } from './noise.js';

/** Mean, standard deviation and the share beyond 1, 2, 3 of n draws. */
function moments(draws: Float64Array) {
  let sum = 0;
  let squares = 0;
  const beyond = [0, 0, 0];
  for (const z of draws) {
    sum += z;
    squares += z * z;
    for (let k = 0; k < 3; k++) if (Math.abs(z) > k + 1) beyond[k] = (beyond[k] as number) + 1;
  }
  const mean = sum / draws.length;
  return {
    mean,
    std: Math.sqrt(squares / draws.length - mean * mean),
    beyond: beyond.map((b) => b / draws.length),
  };
}

// P(|Z| > k) = erfc(k / sqrt 2).
const TAIL = [1, 2, 3].map((k) => Math.exp(logErfc(k / Math.SQRT2)));

describe.each([
  ['crypto', () => new CryptoGaussianNoise()],
  ['seeded', () => new SeededGaussianNoise(42)],
])('%s Gaussian noise', (_name, make) => {
  it('draws N(0, 1): mean, std and tails within 6 standard errors over 10^6 draws', () => {
    const n = 1_000_000;
    const draws = new Float64Array(n);
    make().forRound(1).fill(draws);
    const { mean, std, beyond } = moments(draws);
    // Standard errors: mean 1/sqrt(n); std ~ 1/sqrt(2n); a share p: sqrt(p(1-p)/n).
    expect(Math.abs(mean)).toBeLessThan(6 / Math.sqrt(n));
    expect(Math.abs(std - 1)).toBeLessThan(6 / Math.sqrt(2 * n));
    for (const [k, p] of TAIL.entries()) {
      expect(Math.abs((beyond[k] as number) - p)).toBeLessThan(6 * Math.sqrt((p * (1 - p)) / n));
    }
    // Neighbouring draws are uncorrelated (both Box–Muller outputs are used).
    let lag = 0;
    for (let i = 1; i < n; i++) lag += (draws[i] as number) * (draws[i - 1] as number);
    expect(Math.abs(lag / (n - 1))).toBeLessThan(6 / Math.sqrt(n));
  });

  it('fills odd lengths and successive calls continue the stream', () => {
    const stream = make().forRound(3);
    const a = new Float64Array(7);
    const b = new Float64Array(7);
    stream.fill(a);
    stream.fill(b);
    for (const z of [...a, ...b]) expect(Number.isFinite(z)).toBe(true);
    expect([...a]).not.toEqual([...b]);
  });
});

describe('noise sources', () => {
  it('crypto noise never repeats; it says it is cryptographic', () => {
    const noise = new CryptoGaussianNoise();
    expect(noise.cryptographic).toBe(true);
    const a = new Float64Array(64);
    const b = new Float64Array(64);
    noise.forRound(1).fill(a);
    noise.forRound(1).fill(b);
    expect([...a]).not.toEqual([...b]);
  });

  it('without a cryptographic generator there is no crypto noise (never a fallback to Math.random)', () => {
    const original = Object.getOwnPropertyDescriptor(globalThis, 'crypto');
    Object.defineProperty(globalThis, 'crypto', { value: undefined, configurable: true });
    try {
      expect(() => new CryptoGaussianNoise()).toThrow(
        expect.objectContaining({ code: 'UNAVAILABLE' }),
      );
    } finally {
      if (original) Object.defineProperty(globalThis, 'crypto', original);
    }
    expect(new CryptoGaussianNoise().cryptographic).toBe(true);
  });

  it('seeded noise is a function of (seed, round) only, and says it is not cryptographic', () => {
    const draw = (seed: number, round: number) => {
      const out = new Float64Array(32);
      new SeededGaussianNoise(seed).forRound(round).fill(out);
      return [...out];
    };
    expect(new SeededGaussianNoise(1).cryptographic).toBe(false);
    expect(draw(7, 5)).toEqual(draw(7, 5));
    expect(draw(7, 5)).not.toEqual(draw(7, 6));
    expect(draw(7, 5)).not.toEqual(draw(8, 5));
    // Seeds that differ only above 2^32 differ too.
    expect(draw(2 ** 40, 1)).not.toEqual(draw(0, 1));
    expect(() => new SeededGaussianNoise(0.5)).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT', data: { field: 'seed' } }),
    );
  });
});
