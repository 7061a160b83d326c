import { ErrorCode, TesseraError } from '@tessera/protocol';

/**
 * Exact example-weighted sums Σ_k n_k · w_k of float32 vectors, so that a round's aggregate does
 * not depend on the order updates arrive in, nor on how they were split into partial sums that
 * are merged later (several coordinator processes): integer addition is associative.
 *
 * Representation (after Neal, "Fast exact summation using small and large superaccumulators",
 * 2015, the small one): every float32 is m · 2^(e-150) with an integer |m| < 2^24 and
 * e in 1..254, so n · m with an integer n ≤ 2^29 is an integer below 2^53: the product n · w is
 * exact in float64. Each coordinate holds LIMB_COUNT float64 "limbs"; limb j holds an integer
 * multiple of its unit U_j = 2^(32j - 160) (stored as that value, not as the integer), so the
 * limbs span 2^-160 (below float32's smallest subnormal, 2^-149) to past 2^160 (above
 * n · float32's largest, < 2^157). A product lands in three adjacent limbs k, k + 1, k + 2,
 * where k = floor((e + 10) / 32) comes from the float32's exponent bits: n · w is a multiple of
 * U_k and below 2^21 · U_(k+2). It is split exactly, with no division or floor, by rounding to
 * a multiple of U_(k+2) and then of U_(k+1) with the magic constant 1.5 · 2^52 · U
 * ((x + c) - c rounds x to a multiple of U, ties to even, when |x| ≤ 2^51 · U), into pieces of
 * at most 2^31 units each (signed). A limb is exact while below 2^53 units: 2^20 additions of
 * pieces below 2^32 units cannot pass it, so carries are propagated only every 2^20 folds
 * (`normalise`), not per addition. An example count above 2^29 is folded in parts of at most
 * 2^29 (the sum is linear in n, so this stays exact). Limbs are stored limb-major (all
 * coordinates' limb 0, then limb 1, ...): a fold writes only the limbs its values' magnitudes
 * reach (limbs 3..6 for every magnitude from 2^-41 to below 2^23, which covers trained models'
 * weights), so until carries are propagated the other limbs' pages are never written (nor
 * resident), and a partial's bytes are read and written limb by limb.
 *
 * Bounds, enforced: each weight an integer ≥ 1, the total weight at most 2^53 - 1.
 *
 * Rounding happens once, when a mean is read: `mean()` is the float32 nearest to the exact
 * S / W (ties to even); `mean64()` is a float64 with relative error below 2^-48, a fixed
 * function of the exact sum (its canonical limbs), so it is order-independent too.
 */
export class ExactWeightedSum {
  /** limbs[j * length + i]: limb j of coordinate i, an integer multiple of U_j (limb-major). */
  private readonly limbs: Float64Array;
  private totalWeight = 0;
  private updates = 0;
  /** Additions into limbs since they were last normalised (each piece below 2^32). */
  private pending = 0;

  constructor(readonly length: number) {
    this.limbs = new Float64Array(length * LIMB_COUNT);
  }

  /** Σ n_k, exact. */
  get weight(): number {
    return this.totalWeight;
  }

  /** Updates folded in, merged partials included. */
  get numUpdates(): number {
    return this.updates;
  }

  /** Folds `weight · values` in. A refused input throws a TesseraError and changes nothing. */
  add(values: Float32Array, weight: number): void {
    if (values.length !== this.length) {
      throw new TesseraError(
        ErrorCode.WEIGHTS_LENGTH_MISMATCH,
        `update has ${values.length} parameters; the model has ${this.length}`,
        { field: 'weights', expectedParameters: this.length, receivedParameters: values.length },
      );
    }
    if (!Number.isInteger(weight) || weight < 1) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `exact aggregation needs an integer example count of at least 1, got ${weight}`,
        { field: 'numExamples' },
      );
    }
    this.checkTotal(weight);
    // A Float32Array's byteOffset is a multiple of 4, so its bits can be read in place.
    const bits = new Int32Array(values.buffer, values.byteOffset, values.length);
    for (let left = weight; left > 0; left -= MAX_FOLD_WEIGHT) {
      const part = Math.min(left, MAX_FOLD_WEIGHT);
      if (this.pending + 1 > PENDING_LIMIT) this.normalise();
      const bad = fold(this.limbs, this.length, values, bits, part, values.length);
      if (bad !== -1) {
        // Only the first part can stop here (every part reads the same values). Folding the
        // values before `bad` with -part subtracts exactly what was added (the split is odd in
        // its input, and every limb is an exact multiple of its unit), so the limbs are bit for
        // bit what they were.
        fold(this.limbs, this.length, values, bits, -part, bad);
        throw new TesseraError(
          ErrorCode.NON_FINITE_WEIGHTS,
          `weights[${bad}] is ${values[bad]}: every parameter must be a finite number`,
          { field: 'weights', index: bad },
        );
      }
      this.pending++;
    }
    this.totalWeight += weight;
    this.updates++;
  }

  /** Adds `other`'s sum, weight and update count into this one; `other` keeps its value. */
  merge(other: ExactWeightedSum): void {
    if (other.length !== this.length) {
      throw new TesseraError(
        ErrorCode.WEIGHTS_LENGTH_MISMATCH,
        `partial has ${other.length} parameters; the model has ${this.length}`,
        { field: 'partial', expectedParameters: this.length, receivedParameters: other.length },
      );
    }
    this.checkTotal(other.totalWeight);
    other.normalise();
    if (this.pending + 1 > PENDING_LIMIT) this.normalise();
    const mine = this.limbs;
    const theirs = other.limbs;
    for (let k = 0; k < mine.length; k++) mine[k] = (mine[k] as number) + (theirs[k] as number);
    this.pending++;
    this.totalWeight += other.totalWeight;
    this.updates += other.updates;
  }

  /** The float32 nearest to Σ n_k w_k / Σ n_k (ties to even): the only rounding. */
  mean(): Float32Array {
    const total = this.nonEmptyWeight();
    const out = new Float32Array(this.length);
    const magnitude = new Float64Array(LIMB_COUNT);
    for (let i = 0; i < this.length; i++) {
      const sign = this.canonicalMagnitude(i, magnitude);
      if (sign === 0) continue;
      const estimate = approximate(magnitude) / total;
      // The estimate is within 2^-48 of the exact quotient (relative); when the float32 rounding
      // of both ends of a wider interval agrees, it is the rounding of the exact quotient.
      const below = Math.fround(estimate * (1 - ROUNDING_MARGIN));
      const above = Math.fround(estimate * (1 + ROUNDING_MARGIN));
      const rounded = below === above ? below : exactQuotientToFloat32(magnitude, total);
      out[i] = sign * rounded;
    }
    return out;
  }

  /**
   * Σ n_k w_k / Σ n_k in float64: the exact sum's canonical limbs added in float64 from the
   * most significant down, then divided by Σ n_k once (relative error below 2^-48). It is a
   * fixed function of the exact sum, so it too is independent of order and split.
   */
  mean64(): Float64Array {
    const total = this.nonEmptyWeight();
    const out = new Float64Array(this.length);
    const magnitude = new Float64Array(LIMB_COUNT);
    for (let i = 0; i < this.length; i++) {
      const sign = this.canonicalMagnitude(i, magnitude);
      if (sign !== 0) out[i] = (sign * approximate(magnitude)) / total;
    }
    return out;
  }

  /**
   * The partial as bytes (format EXACT_SUM_FORMAT_VERSION, little-endian), for sending to the
   * process that merges it. Only limbs that are non-zero for some coordinate are written.
   *
   * Header (32 bytes): magic "TXES", u16 version, u16 limb count, u32 parameters, u32 mask of
   * the limbs present, f64 total weight, f64 update count. Then, if the top limb is present,
   * its values as f64 (it is signed); then each other present limb, lowest first, as u32.
   */
  toBytes(): Uint8Array {
    this.normalise();
    const n = this.length;
    let mask = 0;
    for (let j = 0; j < LIMB_COUNT; j++) {
      for (let k = j * n; k < (j + 1) * n; k++) {
        if (this.limbs[k] !== 0) {
          mask |= 1 << j;
          break;
        }
      }
    }
    const topPresent = (mask & TOP_BIT) !== 0;
    const lowerCount = popCount(mask & ~TOP_BIT);
    const bytes = new Uint8Array(HEADER_BYTES + (topPresent ? 8 * n : 0) + lowerCount * 4 * n);
    const header = new DataView(bytes.buffer);
    for (let b = 0; b < 4; b++) header.setUint8(b, MAGIC.charCodeAt(b));
    header.setUint16(4, EXACT_SUM_FORMAT_VERSION, true);
    header.setUint16(6, LIMB_COUNT, true);
    header.setUint32(8, n, true);
    header.setUint32(12, mask, true);
    header.setFloat64(16, this.totalWeight, true);
    header.setFloat64(24, this.updates, true);
    let offset = HEADER_BYTES;
    if (topPresent) {
      const top = new Float64Array(n);
      const unit = INV_UNIT[TOP_LIMB] as number;
      for (let i = 0; i < n; i++) top[i] = (this.limbs[TOP_LIMB * n + i] as number) * unit;
      bytes.set(littleEndianBytes(top), offset);
      offset += 8 * n;
    }
    for (let j = 0; j < TOP_LIMB; j++) {
      if ((mask & (1 << j)) === 0) continue;
      const limb = new Uint32Array(n);
      const unit = INV_UNIT[j] as number;
      for (let i = 0; i < n; i++) limb[i] = (this.limbs[j * n + i] as number) * unit;
      bytes.set(littleEndianBytes(limb), offset);
      offset += 4 * n;
    }
    return bytes;
  }

  /**
   * A partial from `toBytes`, for a model of `expectedLength` parameters. Anything else is
   * refused: MALFORMED_FRAME (field `partial`: magic, version, limb count, size, mask, weight,
   * a top limb that is not an integer below 2^53), WEIGHTS_LENGTH_MISMATCH (another model's
   * size), NON_FINITE_WEIGHTS (a non-finite top limb).
   */
  static fromBytes(bytes: Uint8Array, expectedLength: number): ExactWeightedSum {
    const refuse = (message: string, data: Record<string, unknown> = {}) =>
      new TesseraError(ErrorCode.MALFORMED_FRAME, `exact partial sum: ${message}`, {
        field: 'partial',
        ...data,
      });
    if (bytes.length < HEADER_BYTES) {
      throw refuse(`${bytes.length} bytes is shorter than its ${HEADER_BYTES}-byte header`);
    }
    const header = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
    const magic = String.fromCharCode(...bytes.subarray(0, 4));
    if (magic !== MAGIC) throw refuse(`starts with ${JSON.stringify(magic)}, not "${MAGIC}"`);
    const version = header.getUint16(4, true);
    if (version !== EXACT_SUM_FORMAT_VERSION) {
      throw refuse(`format version ${version}; this build reads ${EXACT_SUM_FORMAT_VERSION}`, {
        version,
        expectedVersion: EXACT_SUM_FORMAT_VERSION,
      });
    }
    const limbCount = header.getUint16(6, true);
    if (limbCount !== LIMB_COUNT) throw refuse(`${limbCount} limbs; format 1 has ${LIMB_COUNT}`);
    const n = header.getUint32(8, true);
    if (n !== expectedLength) {
      throw new TesseraError(
        ErrorCode.WEIGHTS_LENGTH_MISMATCH,
        `exact partial sum has ${n} parameters; the model has ${expectedLength}`,
        { field: 'partial', expectedParameters: expectedLength, receivedParameters: n },
      );
    }
    const mask = header.getUint32(12, true);
    if (mask >>> LIMB_COUNT !== 0) throw refuse(`limb mask ${mask} names limbs past ${TOP_LIMB}`);
    const weight = header.getFloat64(16, true);
    const updates = header.getFloat64(24, true);
    for (const [name, value] of [
      ['weight', weight],
      ['updates', updates],
    ] as const) {
      if (!Number.isSafeInteger(value) || value < 0) {
        throw refuse(`${name} ${value} is not an integer in 0..2^53 - 1`, { entry: name });
      }
    }
    if ((weight === 0) !== (updates === 0) || (weight === 0 && mask !== 0)) {
      throw refuse(`weight ${weight} with ${updates} updates and limb mask ${mask}`);
    }
    const topPresent = (mask & TOP_BIT) !== 0;
    const expectedBytes =
      HEADER_BYTES + (topPresent ? 8 * n : 0) + popCount(mask & ~TOP_BIT) * 4 * n;
    if (bytes.length !== expectedBytes) {
      throw refuse(`${bytes.length} bytes; its header describes ${expectedBytes}`, {
        receivedBytes: bytes.length,
        expectedBytes,
      });
    }
    const sum = new ExactWeightedSum(n);
    let offset = HEADER_BYTES;
    if (topPresent) {
      const top = fromLittleEndian(bytes.subarray(offset, offset + 8 * n), Float64Array);
      for (let i = 0; i < n; i++) {
        const value = top[i] as number;
        if (!Number.isFinite(value)) {
          throw new TesseraError(
            ErrorCode.NON_FINITE_WEIGHTS,
            `exact partial sum: top limb of parameter ${i} is ${value}`,
            { field: 'partial', index: i },
          );
        }
        if (!Number.isSafeInteger(value)) {
          throw refuse(`top limb of parameter ${i} is ${value}, not an integer below 2^53`, {
            index: i,
          });
        }
        sum.limbs[TOP_LIMB * n + i] = value * (UNIT[TOP_LIMB] as number);
      }
      offset += 8 * n;
    }
    for (let j = 0; j < TOP_LIMB; j++) {
      if ((mask & (1 << j)) === 0) continue;
      const limb = fromLittleEndian(bytes.subarray(offset, offset + 4 * n), Uint32Array);
      const unit = UNIT[j] as number;
      for (let i = 0; i < n; i++) sum.limbs[j * n + i] = (limb[i] as number) * unit;
      offset += 4 * n;
    }
    sum.totalWeight = weight;
    sum.updates = updates;
    return sum;
  }

  private checkTotal(weight: number): void {
    if (this.totalWeight + weight > Number.MAX_SAFE_INTEGER) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `exact aggregation: total weight ${this.totalWeight} + ${weight} would pass 2^53 - 1`,
        { field: 'numExamples' },
      );
    }
  }

  private nonEmptyWeight(): number {
    if (this.totalWeight === 0) {
      throw new TesseraError(ErrorCode.INVALID_ARGUMENT, 'cannot average zero updates');
    }
    return this.totalWeight;
  }

  /** Propagates carries: every limb but the top one into 0..2^32 - 1 units, the value unchanged. */
  private normalise(): void {
    if (this.pending === 0) return;
    const limbs = this.limbs;
    const n = this.length;
    for (let j = 0; j < TOP_LIMB; j++) {
      const next = UNIT[j + 1] as number;
      const inverse = INV_UNIT[j + 1] as number;
      // Limb j of every coordinate, then limb j + 1: carries reach limb j + 1 before it is done.
      for (let k = j * n; k < (j + 1) * n; k++) {
        const limb = limbs[k] as number;
        const over = Math.floor(limb * inverse);
        if (over !== 0) {
          limbs[k] = limb - over * next;
          limbs[k + n] = (limbs[k + n] as number) + over * next;
        }
      }
    }
    this.pending = 0;
  }

  /**
   * Writes |S_i| into `out` in canonical form (limbs 0..9 in 0..2^32 - 1, the top one ≥ 0) and
   * returns the sign of S_i (-1, 0 or 1).
   */
  private canonicalMagnitude(i: number, out: Float64Array): number {
    const n = this.length;
    let zero = true;
    for (let j = 0; j < LIMB_COUNT; j++) {
      const limb = (this.limbs[j * n + i] as number) * (INV_UNIT[j] as number);
      out[j] = limb;
      if (limb !== 0) zero = false;
    }
    if (zero) return 0;
    carry(out);
    if ((out[TOP_LIMB] as number) >= 0) return 1;
    for (let j = 0; j < LIMB_COUNT; j++) out[j] = -(out[j] as number);
    carry(out);
    return -1;
  }
}

/** Format of `ExactWeightedSum.toBytes`; a partial of another version is refused. */
export const EXACT_SUM_FORMAT_VERSION = 1;

const MAGIC = 'TXES';
const HEADER_BYTES = 32;
const LIMB_COUNT = 11;
const TOP_LIMB = LIMB_COUNT - 1;
const TOP_BIT = 1 << TOP_LIMB;
const RADIX = 2 ** 32;
const INV_RADIX = 2 ** -32;
/** Limb 0's unit is 2^LOWEST_EXPONENT. */
const LOWEST_EXPONENT = -160;
/** n · m stays below 2^53 for every float32 significand m < 2^24. */
const MAX_FOLD_WEIGHT = 2 ** 29;
/** Additions of pieces below 2^32 units a limb takes before it could pass 2^53 units. */
const PENDING_LIMIT = 2 ** 20;
/** Wider than the estimate's error (< 2^-48 relative), far below float32's 2^-24. */
const ROUNDING_MARGIN = 2 ** -46;
/** U_j = 2^(32j - 160), limb j's unit, and its inverse. */
const UNIT = Float64Array.from({ length: LIMB_COUNT }, (_, j) => 2 ** (32 * j + LOWEST_EXPONENT));
const INV_UNIT = Float64Array.from(
  { length: LIMB_COUNT },
  (_, j) => 2 ** -(32 * j + LOWEST_EXPONENT),
);
/**
 * SPLIT[k] = 1.5 · 2^52 · U_(k+2), for the lowest limb k = 0..8 a product touches: (x + c) - c
 * is x rounded to a multiple of U_(k+2) (ties to even) for |x| ≤ 2^51 · U_(k+2).
 */
const SPLIT = Float64Array.from(
  { length: TOP_LIMB - 1 },
  (_, k) => 1.5 * 2 ** 52 * (UNIT[k + 2] as number),
);
/** A limb's unit over the next one's, 2^-32: SPLIT[k] · LIMB_RATIO is 1.5 · 2^52 · U_(k+1). */
const LIMB_RATIO = 2 ** -32;
/**
 * The lowest limb a ±0 is "folded" into (adding 0 anywhere is exact): limbs a model's weights use
 * anyway, so that zeros (exponent 0, like subnormals) do not write limbs 0..2.
 */
const ZERO_LIMB = 4;

/**
 * Adds n · values[i] (|n| ≤ 2^29) into the limbs for i < end, or returns the first index whose
 * value is not finite (the limbs then hold the additions before it). `bits` are the values' bits.
 */
function fold(
  limbs: Float64Array,
  length: number,
  values: Float32Array,
  bits: Int32Array,
  n: number,
  end: number,
): number {
  const split = SPLIT;
  const twice = 2 * length;
  let i = 0;
  // Four coordinates an iteration: the typed arrays' checks are paid once for the four.
  for (; i + 3 < end; i += 4) {
    const b0 = bits[i] as number;
    const b1 = bits[i + 1] as number;
    const b2 = bits[i + 2] as number;
    const b3 = bits[i + 3] as number;
    const e0 = (b0 >>> 23) & 0xff;
    const e1 = (b1 >>> 23) & 0xff;
    const e2 = (b2 >>> 23) & 0xff;
    const e3 = (b3 >>> 23) & 0xff;
    if (e0 === 0xff || e1 === 0xff || e2 === 0xff || e3 === 0xff) break;
    const k0 = ((e0 + 10) >>> 5) + ((((b0 & 0x7fffffff) - 1) >> 31) & ZERO_LIMB);
    const k1 = ((e1 + 10) >>> 5) + ((((b1 & 0x7fffffff) - 1) >> 31) & ZERO_LIMB);
    const k2 = ((e2 + 10) >>> 5) + ((((b2 & 0x7fffffff) - 1) >> 31) & ZERO_LIMB);
    const k3 = ((e3 + 10) >>> 5) + ((((b3 & 0x7fffffff) - 1) >> 31) & ZERO_LIMB);
    const p0 = n * (values[i] as number);
    const p1 = n * (values[i + 1] as number);
    const p2 = n * (values[i + 2] as number);
    const p3 = n * (values[i + 3] as number);
    const h0 = split[k0] as number;
    const h1 = split[k1] as number;
    const h2 = split[k2] as number;
    const h3 = split[k3] as number;
    const t0 = p0 + h0 - h0;
    const t1 = p1 + h1 - h1;
    const t2 = p2 + h2 - h2;
    const t3 = p3 + h3 - h3;
    const r0 = p0 - t0;
    const r1 = p1 - t1;
    const r2 = p2 - t2;
    const r3 = p3 - t3;
    const c0 = h0 * LIMB_RATIO;
    const c1 = h1 * LIMB_RATIO;
    const c2 = h2 * LIMB_RATIO;
    const c3 = h3 * LIMB_RATIO;
    const m0 = r0 + c0 - c0;
    const m1 = r1 + c1 - c1;
    const m2 = r2 + c2 - c2;
    const m3 = r3 + c3 - c3;
    const a0 = k0 * length + i;
    const a1 = k1 * length + i + 1;
    const a2 = k2 * length + i + 2;
    const a3 = k3 * length + i + 3;
    limbs[a0] = (limbs[a0] as number) + (r0 - m0);
    limbs[a0 + length] = (limbs[a0 + length] as number) + m0;
    limbs[a0 + twice] = (limbs[a0 + twice] as number) + t0;
    limbs[a1] = (limbs[a1] as number) + (r1 - m1);
    limbs[a1 + length] = (limbs[a1 + length] as number) + m1;
    limbs[a1 + twice] = (limbs[a1 + twice] as number) + t1;
    limbs[a2] = (limbs[a2] as number) + (r2 - m2);
    limbs[a2 + length] = (limbs[a2 + length] as number) + m2;
    limbs[a2 + twice] = (limbs[a2 + twice] as number) + t2;
    limbs[a3] = (limbs[a3] as number) + (r3 - m3);
    limbs[a3 + length] = (limbs[a3 + length] as number) + m3;
    limbs[a3 + twice] = (limbs[a3 + twice] as number) + t3;
  }
  for (; i < end; i++) {
    const b = bits[i] as number;
    const exponent = (b >>> 23) & 0xff;
    if (exponent === 0xff) return i;
    // A value's bits begin at 2^(max(e,1) - 150 - 23) or above, so n · w is a multiple of U_k
    // for k = floor((e + 10) / 32) (0 for subnormals, like e = 1), and below 2^21 · U_(k+2).
    // ±0 (all bits but the sign clear) goes to ZERO_LIMB: (b & 0x7fffffff) - 1 is negative
    // only for it. Branch-free, as zeros can be anywhere.
    const k = ((exponent + 10) >>> 5) + ((((b & 0x7fffffff) - 1) >> 31) & ZERO_LIMB);
    const product = n * (values[i] as number); // exact: |n · m| < 2^53
    const high = split[k] as number;
    const middle = high * LIMB_RATIO;
    // Exact splits (every intermediate is a multiple of U_k below 2^53 units of its own binade):
    // top piece a multiple of U_(k+2), |rest| ≤ U_(k+2) / 2, then a multiple of U_(k+1) and a
    // remainder |low| ≤ U_(k+1) / 2, a multiple of U_k. Each piece is at most 2^31 units.
    const top = product + high - high;
    const rest = product - top;
    const mid = rest + middle - middle;
    const low = rest - mid;
    const at = k * length + i;
    limbs[at] = (limbs[at] as number) + low;
    limbs[at + length] = (limbs[at + length] as number) + mid;
    limbs[at + twice] = (limbs[at + twice] as number) + top;
  }
  return -1;
}

/** Carry propagation over a canonical-magnitude scratch (integer units); exact (integers < 2^53). */
function carry(limbs: Float64Array): void {
  for (let j = 0; j < TOP_LIMB; j++) {
    const limb = limbs[j] as number;
    const over = Math.floor(limb * INV_RADIX);
    if (over !== 0) {
      limbs[j] = limb - over * RADIX;
      limbs[j + 1] = (limbs[j + 1] as number) + over;
    }
  }
}

/**
 * A canonical magnitude's value in float64, added from the top limb down: eleven roundings of
 * non-negative terms, relative error below 11 · 2^-53 < 2^-49.
 */
function approximate(magnitude: Float64Array): number {
  let value = 0;
  for (let j = TOP_LIMB; j >= 0; j--) value += (magnitude[j] as number) * (UNIT[j] as number);
  return value;
}

/** The float32 nearest to M · 2^-160 / total (ties to even), M the canonical magnitude; integers throughout. */
function exactQuotientToFloat32(magnitude: Float64Array, total: number): number {
  let m = 0n;
  for (let j = TOP_LIMB; j >= 0; j--) m = (m << 32n) + BigInt(magnitude[j] as number);
  const w = BigInt(total);
  // floor(log2(M / W)) is bits(M) - bits(W), or one less.
  const guess = m.toString(2).length - w.toString(2).length;
  const reached = guess >= 0 ? m >= w << BigInt(guess) : m << BigInt(-guess) >= w;
  const exponent = reached ? guess : guess - 1;
  // Value exponent = exponent - 160; float32 keeps 24 bits, down to the subnormal quantum 2^-149.
  const quantumExponent = Math.max(exponent + LOWEST_EXPONENT - 23, -149);
  const divisor = w << BigInt(quantumExponent - LOWEST_EXPONENT);
  let quotient = m / divisor;
  const twiceRemainder = (m % divisor) * 2n;
  if (twiceRemainder > divisor || (twiceRemainder === divisor && (quotient & 1n) === 1n)) {
    quotient++;
  }
  return Number(quotient) * 2 ** quantumExponent;
}

function popCount(mask: number): number {
  let count = 0;
  for (let rest = mask; rest !== 0; rest &= rest - 1) count++;
  return count;
}

const hostIsLittleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** The values' little-endian bytes: a view on little-endian hosts (all mainstream ones). */
function littleEndianBytes(values: Float64Array | Uint32Array): Uint8Array {
  if (hostIsLittleEndian)
    return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const bytes = new Uint8Array(values.byteLength);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < values.length; i++) {
    if (values instanceof Float64Array) view.setFloat64(i * 8, values[i] as number, true);
    else view.setUint32(i * 4, values[i] as number, true);
  }
  return bytes;
}

/** Values from little-endian bytes; always a copy (the source may be unaligned, and is not ours). */
function fromLittleEndian<T extends Float64Array | Uint32Array>(
  bytes: Uint8Array,
  Kind: { new (length: number): T; BYTES_PER_ELEMENT: number },
): T {
  const values = new Kind(bytes.length / Kind.BYTES_PER_ELEMENT);
  if (hostIsLittleEndian) {
    new Uint8Array(values.buffer).set(bytes);
    return values;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < values.length; i++) {
    values[i] =
      Kind.BYTES_PER_ELEMENT === 8 ? view.getFloat64(i * 8, true) : view.getUint32(i * 4, true);
  }
  return values;
}
