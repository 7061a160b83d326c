import { ErrorCode, TesseraError } from './errors.js';

/**
 * Weights travel as raw little-endian IEEE-754 float32 bytes (MessagePack `bin`), never as
 * number arrays: 4 bytes a parameter, no framing, no per-value overhead.
 */

const hostIsLittleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** A zero-copy byte view of the vector on little-endian hosts (all mainstream ones). */
export function weightsToBytes(weights: Float32Array): Uint8Array {
  if (hostIsLittleEndian)
    return new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength);
  const bytes = new Uint8Array(weights.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < weights.length; i++) view.setFloat32(i * 4, weights[i] as number, true);
  return bytes;
}

/**
 * Decodes a weight vector of exactly `expectedLength` parameters, without checking its values
 * (for a caller whose next step checks them anyway, such as an aggregator's `add`). Always
 * copies, so the result is aligned and independent of the frame it came from.
 */
export function decodeWeights(bytes: Uint8Array, expectedLength: number): Float32Array {
  if (bytes.byteLength !== expectedLength * 4) {
    throw new TesseraError(
      ErrorCode.WEIGHTS_LENGTH_MISMATCH,
      `weights hold ${bytes.byteLength} bytes (${bytes.byteLength / 4} float32 values); expected ${expectedLength} parameters (${expectedLength * 4} bytes)`,
      { expectedParameters: expectedLength, receivedBytes: bytes.byteLength },
    );
  }
  const weights = new Float32Array(expectedLength);
  if (hostIsLittleEndian) {
    new Uint8Array(weights.buffer).set(bytes);
  } else {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < expectedLength; i++) weights[i] = view.getFloat32(i * 4, true);
  }
  return weights;
}

/**
 * Decodes and checks a weight vector: exactly `expectedLength` parameters, all finite.
 * Always copies, so the result is aligned and independent of the frame it came from.
 */
export function bytesToWeights(bytes: Uint8Array, expectedLength: number): Float32Array {
  const weights = decodeWeights(bytes, expectedLength);
  const bad = firstNonFinite(weights);
  if (bad !== -1) {
    throw new TesseraError(
      ErrorCode.NON_FINITE_WEIGHTS,
      `weights[${bad}] is ${weights[bad]}: every parameter must be a finite number`,
      { index: bad },
    );
  }
  return weights;
}

/** Index of the first NaN or +-Infinity, or -1. */
export function firstNonFinite(values: Float32Array): number {
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    // v - v is NaN exactly when v is NaN or infinite; cheaper than Number.isFinite per element
    // (and as fast as testing the exponent bits through a Uint32Array view, measured).
    if (v - v !== 0) return i;
  }
  return -1;
}
