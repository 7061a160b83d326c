import { ErrorCode, firstNonFinite, TesseraError } from '@tessera/protocol';

/**
 * Exact example-weighted sums Σ_k n_k · w_k of float32 vectors, so that a round's aggregate does
 * not depend on the order updates arrive in, nor on how they were split into partial sums that
 * are merged later (several coordinator processes): integer addition is associative.
 *
 * Representation (after Neal, "Fast exact summation using small and large superaccumulators",
 * 2015, the small one): every float32 is m · 2^(e-150) with an integer |m| < 2^24 and
 * e in 1..254, so n · m with an integer n ≤ 2^29 is an integer below 2^53, exact in float64.
 * Each coordinate holds LIMB_COUNT float64 "limbs"; limb j counts units of 2^(32j - 160), so the
 * limbs span 2^-160 (below float32's smallest subnormal, 2^-149) to past 2^160 (above
 * n · float32's largest, < 2^157). A product lands in three adjacent limbs as pieces below 2^32
 * each, and a limb is an integer-valued float64, exact while below 2^53: 2^20 additions of
 * pieces below 2^32 cannot pass it, so carries are propagated only every 2^20 folds
 * (`normalise`), not per addition. An example count above 2^29 is folded in parts of at most
 * 2^29 (the sum is linear in n, so this stays exact).
 *
 * Bounds, enforced: each weight an integer ≥ 1, the total weight at most 2^53 - 1.
 *
 * Rounding happens once, when a mean is read: `mean()` is the float32 nearest to the exact
 * S / W (ties to even); `mean64()` is a float64 with relative error below 2^-48, a fixed
 * function of the exact sum (its canonical limbs), so it is order-independent too.
 */
export class ExactWeightedSum {
  /** limbs[i * LIMB_COUNT + j]: limb j of coordinate i. */
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
    const bad = firstNonFinite(values);
    if (bad !== -1) {
      throw new TesseraError(
        ErrorCode.NON_FINITE_WEIGHTS,
        `weights[${bad}] is ${values[bad]}: every parameter must be a finite number`,
        { field: 'weights', index: bad },
      );
    }
    // A Float32Array's byteOffset is a multiple of 4, so its bits can be read in place.
    const bits = new Int32Array(values.buffer, values.byteOffset, values.length);
    for (let left = weight; left > 0; left -= MAX_FOLD_WEIGHT) {
      this.fold(bits, Math.min(left, MAX_FOLD_WEIGHT));
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
      for (let i = 0; i < n; i++) {
        if (this.limbs[i * LIMB_COUNT + j] !== 0) {
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
      for (let i = 0; i < n; i++) top[i] = this.limbs[i * LIMB_COUNT + TOP_LIMB] as number;
      bytes.set(littleEndianBytes(top), offset);
      offset += 8 * n;
    }
    for (let j = 0; j < TOP_LIMB; j++) {
      if ((mask & (1 << j)) === 0) continue;
      const limb = new Uint32Array(n);
      for (let i = 0; i < n; i++) limb[i] = this.limbs[i * LIMB_COUNT + j] as number;
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
        sum.limbs[i * LIMB_COUNT + TOP_LIMB] = value;
      }
      offset += 8 * n;
    }
    for (let j = 0; j < TOP_LIMB; j++) {
      if ((mask & (1 << j)) === 0) continue;
      const limb = fromLittleEndian(bytes.subarray(offset, offset + 4 * n), Uint32Array);
      for (let i = 0; i < n; i++) sum.limbs[i * LIMB_COUNT + j] = limb[i] as number;
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

  /** Folds n · values (n ≤ 2^29) into the limbs; `bits` are the float32 values' bits. */
  private fold(bits: Int32Array, n: number): void {
    if (this.pending + 1 > PENDING_LIMIT) this.normalise();
    const limbs = this.limbs;
    for (let i = 0; i < bits.length; i++) {
      const b = bits[i] as number;
      let exponent = (b >>> 23) & 0xff;
      let mantissa = b & 0x7fffff;
      if (exponent === 0) {
        if (mantissa === 0) continue;
        exponent = 1; // subnormal: m · 2^(1-150)
      } else {
        mantissa |= 0x800000;
      }
      // |w| = m · 2^(exponent - 150) = m · 2^shift units of limb 0 (2^-160).
      const shift = exponent + 10;
      const sign = 1 - ((b >>> 31) << 1);
      // n · m < 2^53, times a power of two below 2^32: exact, and below 2^85.
      let rest = n * mantissa * (POW2[shift & 31] as number);
      const high = Math.floor(rest * INV_RADIX_SQUARED);
      rest -= high * RADIX_SQUARED;
      const middle = Math.floor(rest * INV_RADIX);
      const low = rest - middle * RADIX;
      const k = i * LIMB_COUNT + (shift >>> 5);
      limbs[k] = (limbs[k] as number) + sign * low;
      limbs[k + 1] = (limbs[k + 1] as number) + sign * middle;
      limbs[k + 2] = (limbs[k + 2] as number) + sign * high;
    }
    this.pending++;
  }

  /** Propagates carries: every limb but the top one into 0..2^32 - 1, the value unchanged. */
  private normalise(): void {
    if (this.pending === 0) return;
    const limbs = this.limbs;
    for (let base = 0; base < limbs.length; base += LIMB_COUNT) carry(limbs, base);
    this.pending = 0;
  }

  /**
   * Writes |S_i| into `out` in canonical form (limbs 0..9 in 0..2^32 - 1, the top one ≥ 0) and
   * returns the sign of S_i (-1, 0 or 1).
   */
  private canonicalMagnitude(i: number, out: Float64Array): number {
    const base = i * LIMB_COUNT;
    let zero = true;
    for (let j = 0; j < LIMB_COUNT; j++) {
      const limb = this.limbs[base + j] as number;
      out[j] = limb;
      if (limb !== 0) zero = false;
    }
    if (zero) return 0;
    carry(out, 0);
    if ((out[TOP_LIMB] as number) >= 0) return 1;
    for (let j = 0; j < LIMB_COUNT; j++) out[j] = -(out[j] as number);
    carry(out, 0);
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
const RADIX_SQUARED = 2 ** 64;
const INV_RADIX_SQUARED = 2 ** -64;
/** Limb 0 counts units of 2^LOWEST_EXPONENT. */
const LOWEST_EXPONENT = -160;
/** n · m stays below 2^53 for every float32 significand m < 2^24. */
const MAX_FOLD_WEIGHT = 2 ** 29;
/** Additions of pieces below 2^32 a limb takes before it could pass 2^53. */
const PENDING_LIMIT = 2 ** 20;
/** Wider than the estimate's error (< 2^-48 relative), far below float32's 2^-24. */
const ROUNDING_MARGIN = 2 ** -46;
const POW2 = Float64Array.from({ length: 32 }, (_, r) => 2 ** r);
const LIMB_UNIT = Float64Array.from(
  { length: LIMB_COUNT },
  (_, j) => 2 ** (32 * j + LOWEST_EXPONENT),
);

/** Carry propagation over one coordinate's limbs at `base`; exact (all values integers < 2^53). */
function carry(limbs: Float64Array, base: number): void {
  for (let j = 0; j < TOP_LIMB; j++) {
    const limb = limbs[base + j] as number;
    const over = Math.floor(limb * INV_RADIX);
    if (over !== 0) {
      limbs[base + j] = limb - over * RADIX;
      limbs[base + j + 1] = (limbs[base + j + 1] as number) + over;
    }
  }
}

/**
 * A canonical magnitude's value in float64, added from the top limb down: eleven roundings of
 * non-negative terms, relative error below 11 · 2^-53 < 2^-49.
 */
function approximate(magnitude: Float64Array): number {
  let value = 0;
  for (let j = TOP_LIMB; j >= 0; j--) value += (magnitude[j] as number) * (LIMB_UNIT[j] as number);
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
