import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { MnistSplit } from './mnist-idx.js';

/** Training examples ready for a model: features as floats, integer labels. */
export interface Examples {
  /** count * featureSize features, row-major (one example after another). */
  x: Float32Array;
  /** count integer class labels. */
  y: Uint8Array;
  count: number;
  featureSize: number;
}

/**
 * The examples of `split` at `indices` (all of them when omitted), pixels scaled from
 * 0..255 to [0, 1].
 */
export function toExamples(split: MnistSplit, indices?: ArrayLike<number>): Examples {
  const featureSize = split.rows * split.cols;
  const count = indices === undefined ? split.count : indices.length;
  const x = new Float32Array(count * featureSize);
  const y = new Uint8Array(count);
  for (let row = 0; row < count; row++) {
    const source = indices === undefined ? row : (indices[row] ?? -1);
    if (!Number.isInteger(source) || source < 0 || source >= split.count) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `toExamples: indices[${row}] = ${String(indices?.[row])} is not an example index in 0..${split.count - 1}`,
      );
    }
    const pixelOffset = source * featureSize;
    const featureOffset = row * featureSize;
    for (let i = 0; i < featureSize; i++) {
      x[featureOffset + i] = (split.images[pixelOffset + i] ?? 0) / 255;
    }
    y[row] = split.labels[source] ?? 0;
  }
  return { x, y, count, featureSize };
}
