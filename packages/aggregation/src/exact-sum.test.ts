import { ErrorCode } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import { EXACT_SUM_FORMAT_VERSION, ExactWeightedSum } from './exact-sum.js';
import { expectCode, seededRandom } from './testing/fixtures.js';

/** A float32 as an exact integer count of 2^-160 (independent of the accumulator's code). */
function units(value: number): bigint {
  const bits = new Int32Array(new Float32Array([value]).buffer)[0] as number;
  const exponent = (bits >>> 23) & 0xff;
  const fraction = bits & 0x7fffff;
  const magnitude =
    exponent === 0 ? BigInt(fraction) << 11n : BigInt(fraction | 0x800000) << BigInt(exponent + 10);
  return bits < 0 ? -magnitude : magnitude;
}

interface Term {
  values: Float32Array;
  weight: number;
}

function exactSums(terms: readonly Term[], length: number): bigint[] {
  const sums = new Array<bigint>(length).fill(0n);
  for (const { values, weight } of terms) {
    for (let i = 0; i < length; i++)
      sums[i] = (sums[i] as bigint) + BigInt(weight) * units(values[i] as number);
  }
  return sums;
}

/** A finite float64 as integer · 2^exponent, exactly. */
function float64Parts(value: number): { integer: bigint; exponent: number } {
  const bits = new BigUint64Array(new Float64Array([value]).buffer)[0] as bigint;
  const biased = Number((bits >> 52n) & 0x7ffn);
  const fraction = bits & ((1n << 52n) - 1n);
  const integer = biased === 0 ? fraction : fraction | (1n << 52n);
  return {
    integer: bits >> 63n === 1n ? -integer : integer,
    exponent: (biased === 0 ? 1 : biased) - 1075,
  };
}

/** The next float32 up from `value` (towards +Infinity). */
function nextUp(value: number): number {
  if (value === 0) return 2 ** -149;
  const bits = new Int32Array(new Float32Array([value]).buffer);
  bits[0] = (bits[0] as number) + (value > 0 ? 1 : -1);
  return new Float32Array(bits.buffer)[0] as number;
}

function nextDown(value: number): number {
  return -nextUp(-value);
}

/**
 * Checks that `rounded` is the float32 nearest to sum · 2^-160 / weight, ties to even, by exact
 * comparison of distances with both neighbours.
 */
function expectNearest(rounded: number, sum: bigint, weight: number, where: string): void {
  const w = BigInt(weight);
  const distance = (candidate: number) => {
    const d = units(candidate) * w - sum;
    return d < 0n ? -d : d;
  };
  const here = distance(rounded);
  for (const neighbour of [nextUp(rounded), nextDown(rounded)]) {
    if (!Number.isFinite(neighbour)) continue;
    const there = distance(neighbour);
    const evenHere = ((new Int32Array(new Float32Array([rounded]).buffer)[0] as number) & 1) === 0;
    if (there < here || (there === here && !evenHere)) {
      throw new Error(
        `${where}: ${rounded} is not the nearest float32 (ties to even); ${neighbour} is`,
      );
    }
  }
}

/**
 * The exact sums a partial's bytes encode (format 1, read from its documented layout, not with
 * the accumulator's code): coordinate i is top_i · 2^320 + Σ_j limb_j,i · 2^(32j), in units of
 * 2^-160.
 */
function sumsFromBytes(bytes: Uint8Array, length: number): bigint[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const mask = view.getUint32(12, true);
  const sums = new Array<bigint>(length).fill(0n);
  let offset = 32;
  if ((mask & (1 << 10)) !== 0) {
    for (let i = 0; i < length; i++)
      sums[i] = BigInt(view.getFloat64(offset + 8 * i, true)) << 320n;
    offset += 8 * length;
  }
  for (let j = 0; j < 10; j++) {
    if ((mask & (1 << j)) === 0) continue;
    for (let i = 0; i < length; i++) {
      const limb = view.getUint32(offset + 4 * i, true);
      sums[i] = (sums[i] as bigint) + (BigInt(limb) << BigInt(32 * j));
    }
    offset += 4 * length;
  }
  expect(offset).toBe(bytes.length);
  return sums;
}

/** A float32 from its fields: biased exponent 0..254, 23-bit fraction, sign. */
function float32Of(exponent: number, fraction: number, negative: boolean): number {
  const bits = new Uint32Array([((negative ? 1 : 0) << 31) | (exponent << 23) | fraction]);
  return new Float32Array(bits.buffer)[0] as number;
}

function expectMatchesReference(terms: readonly Term[], length: number): ExactWeightedSum {
  const sum = new ExactWeightedSum(length);
  for (const { values, weight } of terms) sum.add(values, weight);
  const reference = exactSums(terms, length);
  const weight = terms.reduce((total, term) => total + term.weight, 0);
  expect(sum.weight).toBe(weight);
  // The exact sum itself, not only its rounding: a wrong low bit would rarely move a mean.
  expect(sumsFromBytes(sum.toBytes(), length)).toEqual(reference);
  const mean = sum.mean();
  const mean64 = sum.mean64();
  for (let i = 0; i < length; i++) {
    const exact = reference[i] as bigint;
    expectNearest(mean[i] as number, exact, weight, `coordinate ${i}`);
    // mean64 within 2^-48 of the exact quotient (relative): |mean64 · W - S · 2^-160| ≤ 2^-48 |S · 2^-160|.
    const approx = mean64[i] as number;
    if (exact === 0n) {
      expect(approx).toBe(0);
      continue;
    }
    const { integer, exponent } = float64Parts(approx);
    const common = Math.min(exponent, -160);
    const scaledApprox = (integer * BigInt(weight)) << BigInt(exponent - common);
    const scaledExact = exact << BigInt(-160 - common);
    const error = scaledApprox - scaledExact;
    const magnitude = scaledExact < 0n ? -scaledExact : scaledExact;
    expect((error < 0n ? -error : error) << 48n <= magnitude).toBe(true);
  }
  return sum;
}

/** Seeded, so failures reproduce. */
const random = seededRandom;

/** Any float32 bit pattern that is finite: every exponent, subnormals, both signs. */
function anyFiniteFloat32(next: () => number): number {
  for (;;) {
    const bits = new Uint32Array([Math.floor(next() * 2 ** 32)]);
    const value = new Float32Array(bits.buffer)[0] as number;
    if (Number.isFinite(value)) return value;
  }
}

const FLOAT32_MAX = 3.4028234663852886e38;
const SMALLEST_SUBNORMAL = 2 ** -149;

function termsOf(rows: readonly number[][], weights: readonly number[]): Term[] {
  return rows.map((row, k) => ({ values: Float32Array.from(row), weight: weights[k] as number }));
}

function bytesOf(terms: readonly Term[], length: number): Uint8Array {
  const sum = new ExactWeightedSum(length);
  for (const { values, weight } of terms) sum.add(values, weight);
  return sum.toBytes();
}

function permute<T>(items: readonly T[], next: () => number): T[] {
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

describe('ExactWeightedSum: equals an exact BigInt reference', () => {
  it('random float32 bit patterns (every exponent, subnormals, both signs) and random weights', () => {
    const next = random(7);
    const length = 64;
    const terms: Term[] = [];
    for (let k = 0; k < 40; k++) {
      const values = new Float32Array(length);
      for (let i = 0; i < length; i++) values[i] = anyFiniteFloat32(next);
      terms.push({ values, weight: 1 + Math.floor(next() * 2 ** 20) });
    }
    expectMatchesReference(terms, length);
  });

  it('model-like values with example counts up to the wire maximum (1e9, folded in parts)', () => {
    const next = random(11);
    const length = 200;
    const terms: Term[] = [];
    for (let k = 0; k < 25; k++) {
      const values = new Float32Array(length);
      for (let i = 0; i < length; i++)
        values[i] = (next() - 0.5) * 2 ** (Math.floor(next() * 20) - 15);
      terms.push({ values, weight: k % 5 === 0 ? 1_000_000_000 : 1 + Math.floor(next() * 60_000) });
    }
    expectMatchesReference(terms, length);
  });

  it('adversarial: cancellation, subnormals, ±float32 max, huge and tiny together, exact ties', () => {
    const rows = [
      // catastrophic cancellation: FLT_MAX - FLT_MAX leaves the tiny terms exactly
      [FLOAT32_MAX, 1, SMALLEST_SUBNORMAL, 1e-30, -FLOAT32_MAX, 1, 2 ** -126, 0],
      [-FLOAT32_MAX, -1, SMALLEST_SUBNORMAL, -1e-30, FLOAT32_MAX, 1 + 2 ** -23, -(2 ** -126), 0],
      [FLOAT32_MAX, 1e-45, 3 * SMALLEST_SUBNORMAL, 1e30, -FLOAT32_MAX, 1, 2 ** -127, -0],
      [-FLOAT32_MAX, -1e-45, SMALLEST_SUBNORMAL, -1e30, FLOAT32_MAX, 1 + 2 ** -23, 2 ** -149, 5],
    ];
    expectMatchesReference(termsOf(rows, [1, 1, 1, 1]), 8);
    expectMatchesReference(termsOf(rows, [2 ** 29, 2 ** 29, 3, 1_000_000_000]), 8);
    // every term ±float32 max with the largest weights: the sum needs ~190 bits
    const big = termsOf(
      Array.from({ length: 20 }, (_, k) => [k % 3 === 0 ? -FLOAT32_MAX : FLOAT32_MAX]),
      Array.from({ length: 20 }, () => 1_000_000_000),
    );
    expectMatchesReference(big, 1);
  });

  it('rounds ties to even: the mean of 1 and 1 + 2^-23 (equal weights) is 1; of 1 + 2^-23 and 1 + 2^-22 is 1 + 2^-22', () => {
    const a = new ExactWeightedSum(2);
    a.add(Float32Array.from([1, 1 + 2 ** -23]), 3);
    a.add(Float32Array.from([1 + 2 ** -23, 1 + 2 ** -22]), 3);
    expect(Array.from(a.mean())).toEqual([1, 1 + 2 ** -22]);
  });

  it('a mean above a tie by less than float64 resolution rounds up (a float64 estimate alone would tie to even)', () => {
    // (1 + (1 + 2^-23) + 2^-80 + 0) / 4 = 0.5 + 2^-25 + 2^-82: just above the midpoint of 0.5
    // and 0.5 + 2^-24; in float64 the 2^-82 is lost and the tie would round down to 0.5.
    const terms = termsOf([[1], [1 + 2 ** -23], [2 ** -80], [0]], [1, 1, 1, 1]);
    const sum = expectMatchesReference(terms, 1);
    expect(sum.mean()[0]).toBe(0.5 + 2 ** -24);
    expect(Math.fround((1 + (1 + 2 ** -23) + 2 ** -80) / 4)).toBe(0.5);
  });

  it('means below float32 range round to the subnormal nearest, or to ±0', () => {
    const terms = termsOf(
      [
        [SMALLEST_SUBNORMAL, -SMALLEST_SUBNORMAL, 3 * SMALLEST_SUBNORMAL],
        [0, 0, 0],
        [0, 0, 0],
      ],
      [1, 1, 1],
    );
    const sum = expectMatchesReference(terms, 3);
    // 2^-149 / 3 rounds to 0, and its negative to -0; 3 · 2^-149 / 3 is exact.
    expect(Object.is(sum.mean()[0], 0)).toBe(true);
    expect(Object.is(sum.mean()[1], -0)).toBe(true);
    expect(sum.mean()[2]).toBe(SMALLEST_SUBNORMAL);
  });

  it('past 2^20 folds (carry propagation) it is still exact', () => {
    const sum = new ExactWeightedSum(2);
    const values = Float32Array.from([FLOAT32_MAX, -(2 ** -100)]);
    const folds = 2 ** 20 + 3;
    for (let k = 0; k < folds; k++) sum.add(values, 1);
    sum.add(Float32Array.from([-FLOAT32_MAX, 2 ** -149]), 7);
    const reference = exactSums(
      [
        { values, weight: folds },
        { values: Float32Array.from([-FLOAT32_MAX, 2 ** -149]), weight: 7 },
      ],
      2,
    );
    const back = ExactWeightedSum.fromBytes(sum.toBytes(), 2);
    for (const s of [sum, back]) {
      const mean = s.mean();
      for (let i = 0; i < 2; i++)
        expectNearest(mean[i] as number, reference[i] as bigint, folds + 7, `${i}`);
    }
  });
});

describe('ExactWeightedSum: the fold into three limbs', () => {
  // A product n · w lands in limbs k..k+2, k = floor((e + 10) / 32) of w's biased exponent e.
  const FRACTIONS = [0, 1, 0x400000, 0x555555, 0x7fffff];
  const WEIGHTS = [1, 3, 60_000, 2 ** 29 - 1, 2 ** 29, 1_000_000_000];

  it('every exponent (subnormals to float32 max), both signs, at every limb boundary, for small and the largest weights', () => {
    const row: number[] = [];
    for (let e = 0; e <= 254; e++) {
      for (const fraction of FRACTIONS) {
        if (e === 0 && fraction === 0) continue;
        row.push(float32Of(e, fraction, false), float32Of(e, fraction, true));
      }
    }
    // e + 10 a multiple of 32 (the product starts at a limb's lowest bit) and one below it
    // (the product's lowest bit is a limb's highest) are in the row, with every other exponent.
    expect(row).toContain(float32Of(22, 0, false));
    expect(row).toContain(float32Of(21, 0x7fffff, true));
    for (const weight of WEIGHTS) expectMatchesReference(termsOf([row], [weight]), row.length);
    // all together, and in a mixed order, so the limbs take carries from each other
    const next = random(99);
    const shuffled = WEIGHTS.map(() => permute(row, next));
    expectMatchesReference(termsOf(shuffled, WEIGHTS), row.length);
  });

  it('subnormals and float32 max with the largest weights: the sum reaches from limb 0 to the top limb', () => {
    const largestSubnormal = float32Of(0, 0x7fffff, false);
    const rows = [
      [SMALLEST_SUBNORMAL, largestSubnormal, -SMALLEST_SUBNORMAL, FLOAT32_MAX, 2 ** -126],
      [largestSubnormal, -largestSubnormal, SMALLEST_SUBNORMAL, FLOAT32_MAX, -(2 ** -126)],
      [-SMALLEST_SUBNORMAL, SMALLEST_SUBNORMAL, SMALLEST_SUBNORMAL, -FLOAT32_MAX, 2 ** -149],
    ];
    const sum = expectMatchesReference(termsOf(rows, [1_000_000_000, 2 ** 29, 1]), 5);
    const mask = new DataView(sum.toBytes().buffer).getUint32(12, true);
    expect(mask & 1).toBe(1);
    expect(mask & (1 << 10)).not.toBe(0);
  });

  it('negative sums and cancellation: n · w and n · (-w) leave exactly nothing (an empty limb mask)', () => {
    const row: number[] = [];
    for (let e = 0; e <= 254; e += 1)
      row.push(float32Of(e, e === 0 ? 1 : 0x2aaaaa + e, e % 2 === 0));
    const negated = row.map((value) => -value);
    const terms = termsOf([row, row, negated, negated], [2 ** 29, 7, 7, 2 ** 29]);
    const sum = expectMatchesReference(terms, row.length);
    const bytes = sum.toBytes();
    expect(new DataView(bytes.buffer).getUint32(12, true)).toBe(0);
    expect(bytes.length).toBe(32);
    expect(Array.from(sum.mean()).every((value) => Object.is(value, 0))).toBe(true);
    // one unit left over, negative: every limb of its two's-complement-like canonical form
    const below = expectMatchesReference(
      [...terms, ...termsOf([[-SMALLEST_SUBNORMAL]], [1])].map((t) => ({
        values: t.values.subarray(0, 1),
        weight: t.weight,
      })),
      1,
    );
    expect(sumsFromBytes(below.toBytes(), 1)).toEqual([-(1n << 11n)]);
  });

  it('±0 anywhere (folded branch-free into a limb the model uses) changes nothing', () => {
    const next = random(5);
    const length = 257;
    const terms: Term[] = Array.from({ length: 6 }, (_, k) => {
      const values = new Float32Array(length);
      for (let i = 0; i < length; i++) {
        const u = next();
        values[i] = u < 0.3 ? 0 : u < 0.5 ? -0 : anyFiniteFloat32(next);
      }
      return { values, weight: k === 0 ? 1_000_000_000 : 1 + k };
    });
    expectMatchesReference(terms, length);
    const zeros = new ExactWeightedSum(3);
    zeros.add(Float32Array.from([0, -0, 0]), 2 ** 29);
    expect(sumsFromBytes(zeros.toBytes(), 3)).toEqual([0n, 0n, 0n]);
    expect(Object.is(zeros.mean()[1], 0)).toBe(true);
  });

  it('every length past the four-at-a-time loop, and a non-finite value at every position of it, refused with nothing changed', () => {
    for (let length = 1; length <= 10; length++) {
      const next = random(length);
      const terms = Array.from({ length: 3 }, (_, k) => ({
        values: Float32Array.from({ length }, () => anyFiniteFloat32(next)),
        weight: [1_000_000_000, 5, 2 ** 29][k] as number,
      }));
      const sum = expectMatchesReference(terms, length);
      const before = sum.toBytes().slice();
      for (let at = 0; at < length; at++) {
        for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
          const values = terms[at % 3]?.values.slice() as Float32Array;
          values[at] = bad;
          const error = expectCode(
            () => sum.add(values, 1_000_000_000),
            ErrorCode.NON_FINITE_WEIGHTS,
            'weights',
          );
          expect(error.data?.['index']).toBe(at);
          expect(sum.toBytes()).toEqual(before);
          expect(sum.weight).toBe(1_000_000_000 + 5 + 2 ** 29);
          expect(sum.numUpdates).toBe(3);
        }
      }
    }
  });

  it('carries at the normalisation threshold: 6,000,000 folds of large odd pieces of one sign (unnormalised, a limb would pass 2^53 units and round)', () => {
    // At e + 10 ≡ 0 (mod 32) the product n · m is in units of its lowest limb, whose piece is
    // n · m mod 2^32 taken in -2^31..2^31: with n = 2^29 - 1 and m = 2^23 + 3 it is
    // 3 · 2^29 - m, odd and about 2^30.6, so 5.7 million such folds pass 2^53 units and would
    // lose their last bit without the carries every 2^20 folds. One coordinate near each end
    // of the exponent range and one in the middle, negative.
    const values = Float32Array.from([
      float32Of(22, 3, false),
      float32Of(118, 3, true),
      float32Of(246, 3, false),
    ]);
    const weight = 2 ** 29 - 1;
    const sum = new ExactWeightedSum(3);
    // a merged partial first, so normalisation falls at another phase than a multiple of 2^20
    const partial = new ExactWeightedSum(3);
    partial.add(values, weight);
    sum.merge(partial);
    const folds = 6_000_000;
    for (let k = 1; k < folds; k++) sum.add(values, weight);
    const one = exactSums([{ values, weight }], 3);
    const expected = one.map((x) => x * BigInt(folds));
    expect(sumsFromBytes(sum.toBytes(), 3)).toEqual(expected);
    const mean = sum.mean();
    for (let i = 0; i < 3; i++)
      expectNearest(mean[i] as number, expected[i] as bigint, weight * folds, `coordinate ${i}`);
  });
});

describe('ExactWeightedSum: independent of order and split', () => {
  const next = random(2026);
  const length = 97;
  const terms: Term[] = Array.from({ length: 30 }, (_, k) => {
    const values = new Float32Array(length);
    for (let i = 0; i < length; i++) {
      values[i] =
        k % 4 === 0 ? anyFiniteFloat32(next) : (next() - 0.5) * 2 ** (Math.floor(next() * 30) - 20);
    }
    return { values, weight: 1 + Math.floor(next() * 2 ** 31) };
  });
  const expected = bytesOf(terms, length);

  it('any permutation gives the same bytes, mean and mean64', () => {
    const reference = ExactWeightedSum.fromBytes(expected, length);
    for (let trial = 0; trial < 20; trial++) {
      const sum = new ExactWeightedSum(length);
      for (const { values, weight } of permute(terms, next)) sum.add(values, weight);
      expect(sum.toBytes()).toEqual(expected);
      expect(sum.mean()).toEqual(reference.mean());
      expect(sum.mean64()).toEqual(reference.mean64());
    }
  });

  it('any split into partials, sent as bytes and merged in any order, gives the same bytes', () => {
    for (let trial = 0; trial < 20; trial++) {
      const parts = 1 + Math.floor(next() * 6);
      const partials = Array.from({ length: parts }, () => new ExactWeightedSum(length));
      for (const { values, weight } of permute(terms, next)) {
        (partials[Math.floor(next() * parts)] as ExactWeightedSum).add(values, weight);
      }
      const owner = new ExactWeightedSum(length);
      for (const partial of permute(partials, next)) {
        owner.merge(ExactWeightedSum.fromBytes(partial.toBytes(), length));
      }
      expect(owner.toBytes()).toEqual(expected);
      expect(owner.numUpdates).toBe(terms.length);
    }
  });

  it('merge is associative: (a + b) + c and a + (b + c) have the same bytes', () => {
    const part = (from: number, to: number) => {
      const sum = new ExactWeightedSum(length);
      for (const { values, weight } of terms.slice(from, to)) sum.add(values, weight);
      return sum;
    };
    const left = part(0, 10);
    left.merge(part(10, 20));
    left.merge(part(20, 30));
    const right = part(10, 20);
    right.merge(part(20, 30));
    const outer = part(0, 10);
    outer.merge(right);
    expect(left.toBytes()).toEqual(outer.toBytes());
    expect(left.toBytes()).toEqual(expected);
  });

  it('the float64 sequential fold, by contrast, depends on the order here', () => {
    // Not a property of the exact sum: a check that the inputs above are hard enough.
    const orders = [terms, terms.slice().reverse()];
    const results = orders.map((order) => {
      const sums = new Float64Array(length);
      for (const { values, weight } of order)
        for (let i = 0; i < length; i++)
          sums[i] = (sums[i] as number) + weight * (values[i] as number);
      return sums;
    });
    expect(results[0]).not.toEqual(results[1]);
  });
});

describe('ExactWeightedSum: refused inputs change nothing', () => {
  function sample(): ExactWeightedSum {
    const sum = new ExactWeightedSum(3);
    sum.add(Float32Array.from([1, -2, 3e-40]), 5);
    return sum;
  }

  it('refuses a wrong length, a weight that is not an integer ≥ 1, a non-finite value, a total past 2^53 - 1', () => {
    const sum = sample();
    const before = sum.toBytes().slice();
    expectCode(() => sum.add(new Float32Array(4), 1), ErrorCode.WEIGHTS_LENGTH_MISMATCH, 'weights');
    for (const weight of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expectCode(
        () => sum.add(new Float32Array(3), weight),
        ErrorCode.INVALID_ARGUMENT,
        'numExamples',
      );
    }
    const error = expectCode(
      () => sum.add(Float32Array.from([1, Number.NaN, 2]), 1),
      ErrorCode.NON_FINITE_WEIGHTS,
      'weights',
    );
    expect(error.data?.['index']).toBe(1);
    expectCode(
      () => sum.add(Float32Array.from([Number.NEGATIVE_INFINITY, 0, 0]), 1),
      ErrorCode.NON_FINITE_WEIGHTS,
    );
    expectCode(
      () => sum.add(new Float32Array(3), Number.MAX_SAFE_INTEGER),
      ErrorCode.INVALID_ARGUMENT,
      'numExamples',
    );
    expectCode(
      () => sum.merge(new ExactWeightedSum(2)),
      ErrorCode.WEIGHTS_LENGTH_MISMATCH,
      'partial',
    );
    expect(sum.toBytes()).toEqual(before);
    expect(sum.weight).toBe(5);
    expect(sum.numUpdates).toBe(1);
  });

  it('averaging nothing is refused', () => {
    expectCode(() => new ExactWeightedSum(2).mean(), ErrorCode.INVALID_ARGUMENT);
    expectCode(() => new ExactWeightedSum(2).mean64(), ErrorCode.INVALID_ARGUMENT);
    const empty = ExactWeightedSum.fromBytes(new ExactWeightedSum(2).toBytes(), 2);
    expect(empty.weight).toBe(0);
  });
});

describe('ExactWeightedSum: partials as bytes', () => {
  const good = (() => {
    const sum = new ExactWeightedSum(3);
    sum.add(Float32Array.from([FLOAT32_MAX, -2, 3e-40]), 1_000_000_000);
    return sum.toBytes();
  })();
  const edit = (change: (view: DataView, bytes: Uint8Array) => void): Uint8Array => {
    const bytes = good.slice();
    change(new DataView(bytes.buffer), bytes);
    return bytes;
  };

  it('round-trips, and reads at an unaligned offset', () => {
    const framed = new Uint8Array(good.length + 3);
    framed.set(good, 3);
    const back = ExactWeightedSum.fromBytes(framed.subarray(3), 3);
    expect(back.toBytes()).toEqual(good);
    expect(back.weight).toBe(1_000_000_000);
    expect(new DataView(good.buffer).getUint16(4, true)).toBe(EXACT_SUM_FORMAT_VERSION);
  });

  it.each([
    ['shorter than its header', () => good.subarray(0, 20), ErrorCode.MALFORMED_FRAME],
    ['another magic', () => edit((_, b) => b.set([0x58], 0)), ErrorCode.MALFORMED_FRAME],
    ['another version', () => edit((v) => v.setUint16(4, 2, true)), ErrorCode.MALFORMED_FRAME],
    ['another limb count', () => edit((v) => v.setUint16(6, 12, true)), ErrorCode.MALFORMED_FRAME],
    [
      'another model size',
      () => edit((v) => v.setUint32(8, 4, true)),
      ErrorCode.WEIGHTS_LENGTH_MISMATCH,
    ],
    [
      'a mask past the top limb',
      () => edit((v) => v.setUint32(12, v.getUint32(12, true) | (1 << 11), true)),
      ErrorCode.MALFORMED_FRAME,
    ],
    [
      'a mask that disagrees with the size',
      () => edit((v) => v.setUint32(12, v.getUint32(12, true) ^ 1, true)),
      ErrorCode.MALFORMED_FRAME,
    ],
    [
      'a NaN weight',
      () => edit((v) => v.setFloat64(16, Number.NaN, true)),
      ErrorCode.MALFORMED_FRAME,
    ],
    [
      'a fractional weight',
      () => edit((v) => v.setFloat64(16, 1.5, true)),
      ErrorCode.MALFORMED_FRAME,
    ],
    [
      'a negative update count',
      () => edit((v) => v.setFloat64(24, -1, true)),
      ErrorCode.MALFORMED_FRAME,
    ],
    [
      'a weight with no updates',
      () => edit((v) => v.setFloat64(24, 0, true)),
      ErrorCode.MALFORMED_FRAME,
    ],
    ['a truncated body', () => good.subarray(0, good.length - 4), ErrorCode.MALFORMED_FRAME],
    ['a trailing byte', () => Uint8Array.from([...good, 0]), ErrorCode.MALFORMED_FRAME],
    [
      'a non-finite top limb',
      () => edit((v) => v.setFloat64(32, Number.POSITIVE_INFINITY, true)),
      ErrorCode.NON_FINITE_WEIGHTS,
    ],
    [
      'a NaN top limb',
      () => edit((v) => v.setFloat64(40, Number.NaN, true)),
      ErrorCode.NON_FINITE_WEIGHTS,
    ],
    [
      'a fractional top limb',
      () => edit((v) => v.setFloat64(32, 0.5, true)),
      ErrorCode.MALFORMED_FRAME,
    ],
    [
      'a top limb past 2^53',
      () => edit((v) => v.setFloat64(32, 2 ** 60, true)),
      ErrorCode.MALFORMED_FRAME,
    ],
  ] as const)('refuses %s with %s', (_, bytes, code) => {
    // The top limb is present: FLOAT32_MAX · 1e9 reaches 2^160.
    expect(new DataView(good.buffer).getUint32(12, true) & (1 << 10)).not.toBe(0);
    const owner = new ExactWeightedSum(3);
    owner.add(Float32Array.from([1, 2, 3]), 2);
    const before = owner.toBytes().slice();
    expectCode(() => owner.merge(ExactWeightedSum.fromBytes(bytes(), 3)), code, 'partial');
    expect(owner.toBytes()).toEqual(before);
  });
});
