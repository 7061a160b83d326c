import {
  type Examples,
  loadCsvExamples,
  loadMnist,
  MNIST_INPUT,
  parsePartitionScheme,
  partition,
  splitHoldout,
  toExamples,
} from '@tessera/data';
import { ErrorCode, TesseraError } from '@tessera/protocol';

export interface LocalData {
  train: Examples;
  holdout: Examples | null;
  description: string;
}

export interface DataOptions {
  /** `K/N`: this client is partition K (0-based) of N over the MNIST training set. */
  mnist?: string;
  /** How MNIST is split across the N clients: iid, shards[:k], dirichlet:alpha. */
  partition: string;
  /** Seed of the partition; every client of a federation must use the same one. */
  partitionSeed: number;
  /** A local CSV file (label first, then the features). */
  csv?: string;
  /** Every CSV feature is divided by this first (255 for 0..255 pixels). Default 1. */
  featureScale?: number;
  /** Fraction of the local examples kept out of training for federated evaluation. */
  holdoutFraction: number;
  /** Use at most this many local examples (quick trials and tests). */
  maxExamples?: number;
}

function parseShare(share: string): { index: number; of: number } {
  const match = /^(\d+)\/(\d+)$/.exec(share);
  const index = Number(match?.[1]);
  const of = Number(match?.[2]);
  if (!match || !(of >= 1) || !(index >= 0 && index < of)) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `--mnist expects K/N with 0 <= K < N (e.g. 3/10), got "${share}"`,
    );
  }
  return { index, of };
}

/** Loads the client's own examples. Only this process ever reads them. */
export function loadLocalData(options: DataOptions): LocalData {
  if (options.holdoutFraction < 0 || options.holdoutFraction >= 1) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `--holdout must be in [0, 1), got ${options.holdoutFraction}`,
    );
  }
  if ((options.mnist === undefined) === (options.csv === undefined)) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      'give exactly one data source: --mnist K/N or --csv FILE',
    );
  }
  const split = (
    all: Examples | Uint32Array,
    build: (indices: Uint32Array) => Examples,
    description: string,
  ): LocalData => {
    const every =
      all instanceof Uint32Array ? all : Uint32Array.from({ length: all.count }, (_, i) => i);
    const indices = every.subarray(0, options.maxExamples ?? every.length);
    const { train, holdout } = splitHoldout(
      indices,
      options.holdoutFraction,
      options.partitionSeed,
    );
    if (train.length === 0) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `${description}: ${indices.length} example(s), and --holdout ${options.holdoutFraction} keeps every one of them out of training`,
      );
    }
    return {
      train: build(train),
      holdout: holdout.length > 0 ? build(holdout) : null,
      description,
    };
  };
  if (options.mnist !== undefined) {
    const { index, of } = parseShare(options.mnist);
    const mnist = loadMnist('train');
    const scheme = parsePartitionScheme(options.partition);
    const mine = partition(mnist.labels, of, scheme, options.partitionSeed)[index] as Uint32Array;
    return split(
      mine,
      (ids) => toExamples(mnist, ids),
      `MNIST partition ${index}/${of} (${options.partition})`,
    );
  }
  // Checked against the models' input before anything connects: every model of the zoo reads
  // MNIST_INPUT (TfjsTrainer checks the run's own model again at each round).
  const featureScale = options.featureScale ?? 1;
  const csv = loadCsvExamples(options.csv as string, {
    schema: MNIST_INPUT,
    featureScale,
    ...(featureScale === 1
      ? { scaleHint: 'if the file holds 0..255 pixels, run with --scale 255' }
      : {}),
  });
  return split(
    csv,
    (ids) => selectExamples(csv, ids),
    `CSV ${options.csv}${featureScale === 1 ? '' : ` (features divided by ${featureScale})`}`,
  );
}

function selectExamples(source: Examples, indices: Uint32Array): Examples {
  const x = new Float32Array(indices.length * source.featureSize);
  const y = new Uint8Array(indices.length);
  indices.forEach((from, to) => {
    x.set(
      source.x.subarray(from * source.featureSize, (from + 1) * source.featureSize),
      to * source.featureSize,
    );
    y[to] = source.y[from] as number;
  });
  return { x, y, count: indices.length, featureSize: source.featureSize };
}
