import { describe, expect, it } from 'vitest';
import { ErrorCode, TesseraError } from './errors.js';
import { bytesToWeights, firstNonFinite, weightsToBytes } from './weights.js';

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
});
