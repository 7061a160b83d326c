import { describe, expect, it } from 'vitest';
import { ErrorCode, TesseraError } from './errors.js';
import { bytesToWeights, decodeWeights, firstNonFinite, weightsToBytes } from './weights.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return error instanceof TesseraError ? error.code : 'not a TesseraError';
  }
  return undefined;
}

describe('weights codec', () => {
  it('round-trips float32 values bit for bit, little-endian', () => {
    const weights = new Float32Array([
      0, -0, 1.5, -2.25, 3.4028234663852886e38, 1.401298464324817e-45,
    ]);
    const bytes = weightsToBytes(weights);
    expect(bytes.byteLength).toBe(24);
    // 1.5 = 0x3fc00000, stored least significant byte first.
    expect([...bytes.subarray(8, 12)]).toEqual([0x00, 0x00, 0xc0, 0x3f]);
    const back = bytesToWeights(bytes, weights.length);
    expect(new Uint32Array(back.buffer)).toEqual(new Uint32Array(weights.buffer));
  });

  it('decodes from an unaligned slice of a larger frame', () => {
    const frame = new Uint8Array(1 + 8);
    frame.set(weightsToBytes(new Float32Array([7, -7])), 1);
    expect([...bytesToWeights(frame.subarray(1), 2)]).toEqual([7, -7]);
  });

  it('refuses a vector of the wrong length, naming both sizes', () => {
    const bytes = weightsToBytes(new Float32Array(3));
    expect(codeOf(() => bytesToWeights(bytes, 4))).toBe(ErrorCode.WEIGHTS_LENGTH_MISMATCH);
    expect(() => bytesToWeights(bytes, 4)).toThrow(/12 bytes .* expected 4 parameters/);
    expect(codeOf(() => bytesToWeights(bytes.subarray(0, 11), 3))).toBe(
      ErrorCode.WEIGHTS_LENGTH_MISMATCH,
    );
  });

  it.each([NaN, Infinity, -Infinity])('refuses %s and says where it is', (bad) => {
    const weights = new Float32Array([1, 2, bad, 4]);
    expect(firstNonFinite(weights)).toBe(2);
    expect(codeOf(() => bytesToWeights(weightsToBytes(weights), 4))).toBe(
      ErrorCode.NON_FINITE_WEIGHTS,
    );
    expect(() => bytesToWeights(weightsToBytes(weights), 4)).toThrow(/weights\[2\]/);
  });

  it('tells finite from non-finite by the bits: every NaN payload and sign, the infinities, and the finite edges', () => {
    const bits = new Uint32Array([
      0x7f800000, // +Infinity
      0xff800000, // -Infinity
      0x7fc00000, // quiet NaN
      0xffc00001, // negative quiet NaN with a payload
      0x7f800001, // signalling NaN, smallest payload
      0x7fffffff, // NaN, largest payload
    ]);
    for (let k = 0; k < bits.length; k++) {
      const values = new Float32Array(8).fill(1);
      new Uint32Array(values.buffer)[5] = bits[k] as number;
      expect(firstNonFinite(values), `0x${(bits[k] as number).toString(16)}`).toBe(5);
    }
    const finite = new Uint32Array([
      0x7f7fffff, // largest finite (3.4028235e38)
      0xff7fffff, // its negative
      0x00000001, // smallest subnormal
      0x80000000, // -0
      0x00000000, // +0
      0x00800000, // smallest normal
    ]);
    expect(firstNonFinite(new Float32Array(finite.buffer))).toBe(-1);
  });

  it('checks only the view it is given, at any offset into a larger buffer', () => {
    const backing = new Float32Array([Number.NaN, 1, 2, 3, Number.POSITIVE_INFINITY]);
    expect(firstNonFinite(backing.subarray(1, 4))).toBe(-1);
    expect(firstNonFinite(backing.subarray(1))).toBe(3);
    expect(firstNonFinite(new Float32Array(0))).toBe(-1);
  });

  it('decodeWeights copies and checks the length only: the caller checks the values', () => {
    const weights = new Float32Array([1, Number.NaN, 3]);
    const frame = new Uint8Array(13);
    frame.set(weightsToBytes(weights), 1);
    const decoded = decodeWeights(frame.subarray(1), 3);
    expect(decoded.byteOffset).toBe(0);
    expect(Number.isNaN(decoded[1])).toBe(true);
    frame.fill(0);
    expect(decoded[2]).toBe(3);
    expect(codeOf(() => decodeWeights(frame, 3))).toBe(ErrorCode.WEIGHTS_LENGTH_MISMATCH);
  });
});
