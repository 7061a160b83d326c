/**
 * Sources of standard normal draws for the Gaussian mechanism.
 *
 * The sampler is Box–Muller (Box & Muller 1958) on uniforms of 53 random bits (the full
 * precision of a double): u1 = 1 - k1 / 2^53 in (0, 1] (never 0, so log(u1) is finite),
 * u2 = k2 / 2^53 in [0, 1), and z1, z2 = sqrt(-2 ln u1) (cos 2 pi u2, sin 2 pi u2); both
 * outputs are used. Why this one: it is exact in distribution for exact uniforms, has no
 * rejection loop (constant time per pair, so the time taken says nothing about the draws), and
 * is simple enough to check by reading. Its known limits, stated rather than hidden:
 *  - the largest |z| it can produce is sqrt(-2 ln 2^-53) = 8.57 (a tail mass of ~1e-17 is
 *    missing, far below any delta used);
 *  - like every floating-point sampler it is not the ideal real-valued Gaussian: the set of
 *    reachable doubles is irregular, which floating-point attacks exploit (Mironov, "On
 *    Significance of the Least Significant Bits for Differential Privacy", CCS 2012, for
 *    Laplace; Jin et al., "Are We There Yet? Timing and Floating-Point Attacks on Differential
 *    Privacy Systems", IEEE S&P 2022, for Gaussian samplers). Here the noise is added to a
 *    float64 sum, divided, and rounded to float32 model weights, which discards the low bits
 *    those attacks read; it is not a proof. An exact discrete Gaussian (Canonne, Kamath,
 *    Steinke 2020) would be the fix, at a cost per coordinate this package does not pay yet.
 */

import { ErrorCode, TesseraError } from '@tessera/protocol';

/** Standard normal draws for one round. */
export interface NormalStream {
  /** Fills `out` with independent N(0, 1) draws. */
  fill(out: Float64Array): void;
}

/**
 * Where a mechanism's noise comes from. `forRound` names the round the draws are for: a
 * cryptographic source ignores it (every draw is fresh); a seeded source for tests derives its
 * stream from it, so that a resumed run or a retried round draws what the uninterrupted run
 * drew.
 */
export interface GaussianNoise {
  /** Whether the draws are unpredictable (false: seeded, for tests and simulations only). */
  readonly cryptographic: boolean;
  forRound(round: number): NormalStream;
}

const TWO_POW_26 = 2 ** 26;
const TWO_POW_53 = 2 ** 53;

/** The 53-bit integer from two 32-bit words: 27 high bits of `a`, 26 of `b`. */
function bits53(a: number, b: number): number {
  return (a >>> 5) * TWO_POW_26 + (b >>> 6);
}

/** Box–Muller over a supply of random 32-bit words (4 words per pair of draws). */
class BoxMullerStream implements NormalStream {
  private readonly words = new Uint32Array(16_384);
  private position = this.words.length;

  constructor(private readonly refill: (words: Uint32Array) => void) {}

  private word(): number {
    if (this.position === this.words.length) {
      this.refill(this.words);
      this.position = 0;
    }
    return this.words[this.position++] as number;
  }

  fill(out: Float64Array): void {
    for (let i = 0; i < out.length; i += 2) {
      const u1 = 1 - bits53(this.word(), this.word()) / TWO_POW_53;
      const u2 = bits53(this.word(), this.word()) / TWO_POW_53;
      const radius = Math.sqrt(-2 * Math.log(u1));
      const angle = 2 * Math.PI * u2;
      out[i] = radius * Math.cos(angle);
      if (i + 1 < out.length) out[i + 1] = radius * Math.sin(angle);
    }
  }
}

/** getRandomValues fills at most 65,536 bytes per call (WebCrypto). */
const MAX_RANDOM_WORDS = 65_536 / 4;

/**
 * Noise from the platform's cryptographic generator (`globalThis.crypto.getRandomValues`:
 * WebCrypto in browsers and in Node >= 19): what a DP run uses. No seed, no replay.
 */
export class CryptoGaussianNoise implements GaussianNoise {
  readonly cryptographic = true;

  constructor() {
    if (typeof globalThis.crypto?.getRandomValues !== 'function') {
      // A missing CSPRNG must stop a private run, never fall back to Math.random.
      throw new TesseraError(
        ErrorCode.UNAVAILABLE,
        'CryptoGaussianNoise: globalThis.crypto.getRandomValues is not available',
      );
    }
  }

  forRound(_round: number): NormalStream {
    return new BoxMullerStream((words) => {
      for (let offset = 0; offset < words.length; offset += MAX_RANDOM_WORDS) {
        globalThis.crypto.getRandomValues(words.subarray(offset, offset + MAX_RANDOM_WORDS));
      }
    });
  }
}

/** SplitMix32-style finaliser (a bijection of 32-bit words), to spread a seed's bits. */
function mix32(value: number): number {
  let z = (value + 0x9e3779b9) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

/**
 * Deterministic noise for tests and simulations ONLY: anyone who knows the seed knows every
 * draw, so a run using it has no privacy at all. Each round's stream is xoshiro128**
 * (Blackman & Vigna 2018) seeded from (seed, round), so the draws of round r do not depend on
 * which rounds ran before in this process.
 */
export class SeededGaussianNoise implements GaussianNoise {
  readonly cryptographic = false;

  constructor(readonly seed: number) {
    if (!Number.isSafeInteger(seed)) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `SeededGaussianNoise: seed ${seed} is not a safe integer`,
        { field: 'seed' },
      );
    }
  }

  forRound(round: number): NormalStream {
    const low = this.seed >>> 0;
    const high = Math.floor(this.seed / 2 ** 32) >>> 0;
    let s0 = mix32(low ^ 0x243f6a88);
    let s1 = mix32(high ^ mix32(s0));
    let s2 = mix32((round >>> 0) ^ mix32(s1));
    let s3 = mix32(Math.floor(round / 2 ** 32) ^ mix32(s2) ^ 0x85a308d3);
    if ((s0 | s1 | s2 | s3) === 0) s0 = 1;
    const rotl = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;
    return new BoxMullerStream((words) => {
      for (let i = 0; i < words.length; i++) {
        words[i] = Math.imul(rotl(Math.imul(s1, 5) >>> 0, 7), 9) >>> 0;
        const t = (s1 << 9) >>> 0;
        s2 = (s2 ^ s0) >>> 0;
        s3 = (s3 ^ s1) >>> 0;
        s1 = (s1 ^ s2) >>> 0;
        s0 = (s0 ^ s3) >>> 0;
        s2 = (s2 ^ t) >>> 0;
        s3 = rotl(s3, 11);
      }
    });
  }
}
