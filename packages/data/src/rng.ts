import { ErrorCode, TesseraError } from '@tessera/protocol';

/**
 * A small seeded pseudo-random generator: sfc32 (Chris Doty-Humphrey's Small Fast
 * Counting generator, from PractRand), seeded through splitmix32 so that nearby seeds
 * (0, 1, 2...) give unrelated streams. Not cryptographic: it exists so that shuffles and
 * partitions are reproducible from a seed recorded with a run.
 */
export interface Rng {
  /** Uniform in [0, 1), 32 bits of resolution. */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** Shuffles `array` in place (Fisher–Yates) and returns it. */
  shuffle<T extends { [index: number]: unknown; length: number }>(array: T): T;
  /** Standard normal N(0, 1) (Marsaglia's polar method). */
  normal(): number;
  /** Gamma(shape, 1) (Marsaglia & Tsang 2000; boosted for shape < 1). */
  gamma(shape: number): number;
  /** One draw from Dirichlet(alpha, ..., alpha) with `size` components; sums to 1. */
  dirichlet(alpha: number, size: number): Float64Array;
}

const TWO_POW_32 = 4294967296;

/** Throws INVALID_ARGUMENT unless `seed` is a safe integer (seeds are recorded and replayed). */
export function assertSeed(seed: number, where: string): void {
  if (!Number.isSafeInteger(seed)) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `${where}: seed must be a safe integer, got ${String(seed)}`,
    );
  }
}

export function createRng(seed: number): Rng {
  assertSeed(seed, 'createRng');
  // splitmix32 spreads the seed (both 32-bit halves, so large seeds are distinct too)
  // over the 128-bit sfc32 state.
  let mixState = (seed >>> 0) ^ Math.imul(Math.floor(seed / TWO_POW_32) >>> 0, 0x9e3779b9);
  const splitmix32 = (): number => {
    mixState = (mixState + 0x9e3779b9) | 0;
    let z = mixState;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = splitmix32();
  let b = splitmix32();
  let c = splitmix32();
  let counter = splitmix32();

  const nextUint32 = (): number => {
    const result = (((a + b) | 0) + counter) | 0;
    counter = (counter + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + result) | 0;
    return result >>> 0;
  };
  // The first outputs of sfc32 still carry the seed's structure; the reference
  // implementation discards a dozen.
  for (let i = 0; i < 12; i++) nextUint32();

  const next = (): number => nextUint32() / TWO_POW_32;

  const int = (n: number): number => {
    if (!Number.isInteger(n) || n <= 0 || n > TWO_POW_32) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `Rng.int: n must be an integer in [1, 2^32], got ${String(n)}`,
      );
    }
    return Math.floor(next() * n);
  };

  const normal = (): number => {
    for (;;) {
      const u = 2 * next() - 1;
      const v = 2 * next() - 1;
      const s = u * u + v * v;
      if (s > 0 && s < 1) return u * Math.sqrt((-2 * Math.log(s)) / s);
    }
  };

  const gamma = (shape: number): number => {
    if (!(shape > 0) || !Number.isFinite(shape)) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `Rng.gamma: shape must be a positive finite number, got ${String(shape)}`,
      );
    }
    if (shape < 1) {
      // Gamma(k) = Gamma(k + 1) * U^(1/k): Marsaglia & Tsang only holds for k >= 1.
      const u = 1 - next(); // in (0, 1], so the power never sees 0
      return gamma(shape + 1) * u ** (1 / shape);
    }
    const d = shape - 1 / 3;
    const c = 1 / Math.sqrt(9 * d);
    for (;;) {
      let x: number;
      let v: number;
      do {
        x = normal();
        v = 1 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const u = 1 - next();
      if (u < 1 - 0.0331 * x * x * x * x) return d * v;
      if (Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
    }
  };

  const dirichlet = (alpha: number, size: number): Float64Array => {
    if (!Number.isInteger(size) || size <= 0) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `Rng.dirichlet: size must be a positive integer, got ${String(size)}`,
      );
    }
    const draws = new Float64Array(size);
    let total = 0;
    for (let i = 0; i < size; i++) {
      const draw = gamma(alpha);
      draws[i] = draw;
      total += draw;
    }
    if (total === 0) {
      // Every gamma underflowed (tiny alpha): the limit of Dirichlet(alpha -> 0) puts
      // all the mass on one component.
      draws[Math.floor(next() * size)] = 1;
      return draws;
    }
    for (let i = 0; i < size; i++) draws[i] = (draws[i] ?? 0) / total;
    return draws;
  };

  const shuffle = <T extends { [index: number]: unknown; length: number }>(array: T): T => {
    for (let i = array.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      const held = array[i];
      array[i] = array[j];
      array[j] = held;
    }
    return array;
  };

  return { next, int, shuffle, normal, gamma, dirichlet };
}
