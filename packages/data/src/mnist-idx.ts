import { ErrorCode, TesseraError } from '@tessera/protocol';

// The IDX parser, apart from the loader in mnist.ts so that browsers can use it without node:fs.

/**
 * One split of MNIST as raw bytes. Pixels stay as bytes (0..255) because every client
 * process loads the whole set: 47 MB as bytes, four times that as floats. Convert only
 * the slice a client trains on, with `toExamples`. The arrays are shared by every caller
 * in the process: do not write to them.
 */
export interface MnistSplit {
  /** count * rows * cols pixel bytes, row-major, one image after another. */
  images: Uint8Array;
  /** count labels, 0..9. */
  labels: Uint8Array;
  count: number;
  rows: 28;
  cols: 28;
}

export type MnistSplitName = 'train' | 'test';

const IDX_IMAGES_MAGIC = 0x00000803; // unsigned bytes, 3 dimensions
const IDX_LABELS_MAGIC = 0x00000801; // unsigned bytes, 1 dimension
const IMAGES_HEADER_BYTES = 16;
const LABELS_HEADER_BYTES = 8;
const MNIST_SIDE = 28;
const NUM_CLASSES = 10;

function corrupt(source: string, problem: string): TesseraError {
  return new TesseraError(
    ErrorCode.INVALID_ARGUMENT,
    `Corrupt MNIST IDX file ${source}: ${problem}`,
  );
}

function readUint32BigEndian(bytes: Uint8Array, offset: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(offset, false);
}

/**
 * Parses an IDX image file and its IDX label file (the format of LeCun's MNIST
 * distribution: big-endian uint32 header, then unsigned bytes). Exported for tests and
 * for callers holding the bytes already; `source` names the file in error messages.
 */
export function parseMnistIdx(
  images: { bytes: Uint8Array; source: string },
  labels: { bytes: Uint8Array; source: string },
): MnistSplit {
  if (images.bytes.byteLength < IMAGES_HEADER_BYTES) {
    throw corrupt(images.source, `${images.bytes.byteLength} bytes is shorter than the header`);
  }
  if (labels.bytes.byteLength < LABELS_HEADER_BYTES) {
    throw corrupt(labels.source, `${labels.bytes.byteLength} bytes is shorter than the header`);
  }
  const imagesMagic = readUint32BigEndian(images.bytes, 0);
  if (imagesMagic !== IDX_IMAGES_MAGIC) {
    throw corrupt(
      images.source,
      `magic number 0x${imagesMagic.toString(16)}, expected 0x${IDX_IMAGES_MAGIC.toString(16)} (images)`,
    );
  }
  const labelsMagic = readUint32BigEndian(labels.bytes, 0);
  if (labelsMagic !== IDX_LABELS_MAGIC) {
    throw corrupt(
      labels.source,
      `magic number 0x${labelsMagic.toString(16)}, expected 0x${IDX_LABELS_MAGIC.toString(16)} (labels)`,
    );
  }
  const imageCount = readUint32BigEndian(images.bytes, 4);
  const rows = readUint32BigEndian(images.bytes, 8);
  const cols = readUint32BigEndian(images.bytes, 12);
  if (rows !== MNIST_SIDE || cols !== MNIST_SIDE) {
    throw corrupt(images.source, `images are ${rows}x${cols}, expected 28x28`);
  }
  const expectedImageBytes = IMAGES_HEADER_BYTES + imageCount * rows * cols;
  if (images.bytes.byteLength !== expectedImageBytes) {
    throw corrupt(
      images.source,
      `${images.bytes.byteLength} bytes, expected ${expectedImageBytes} for ${imageCount} images`,
    );
  }
  const labelCount = readUint32BigEndian(labels.bytes, 4);
  if (labelCount !== imageCount) {
    throw corrupt(labels.source, `${labelCount} labels for ${imageCount} images`);
  }
  if (labels.bytes.byteLength !== LABELS_HEADER_BYTES + labelCount) {
    throw corrupt(
      labels.source,
      `${labels.bytes.byteLength} bytes, expected ${LABELS_HEADER_BYTES + labelCount}`,
    );
  }
  // Views, not copies: the file buffers are kept whole anyway.
  const imageBytes = images.bytes.subarray(IMAGES_HEADER_BYTES);
  const labelBytes = labels.bytes.subarray(LABELS_HEADER_BYTES);
  for (let i = 0; i < labelBytes.length; i++) {
    const label = labelBytes[i] ?? 0;
    if (label >= NUM_CLASSES) {
      throw corrupt(labels.source, `label ${label} at index ${i} is outside 0..9`);
    }
  }
  return {
    images: imageBytes,
    labels: labelBytes,
    count: imageCount,
    rows: MNIST_SIDE,
    cols: MNIST_SIDE,
  };
}
