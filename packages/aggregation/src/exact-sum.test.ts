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

function expectMatchesReference(terms: readonly Term[], length: number): ExactWeightedSum {
  const sum = new ExactWeightedSum(length);
  for (const { values, weight } of terms) sum.add(values, weight);
  const reference = exactSums(terms, length);
  const weight = terms.reduce((total, term) => total + term.weight, 0);
  expect(sum.weight).toBe(weight);
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
