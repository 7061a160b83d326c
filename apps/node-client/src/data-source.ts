import { statSync } from 'node:fs';
import { FileTaskData, type SplitOptions, type TaskData } from '@tessera/client';
import {
  type Examples,
  loadCsvExamples,
  loadMnist,
  MNIST_INPUT,
  parsePartitionScheme,
  partition,
  readTextFile,
  splitHoldout,
  toExamples,
} from '@tessera/data';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { openImageFolder } from './image-folder.js';

/**
 * The client's examples: MNIST's (--mnist, --csv), loaded before joining, or a file read per
 * task when a round names one (--data); then train and holdout are null and taskData reads it.
 */
export type LocalData =
  | { train: Examples; holdout: Examples | null; taskData?: undefined; description: string }
  | { train: null; holdout: null; taskData: TaskData; description: string };

export interface DataOptions {
  /** `K/N`: this client is partition K (0-based) of N over the MNIST training set. */
  mnist?: string;
  /** How MNIST is split across the N clients: iid, shards[:k], dirichlet:alpha. */
  partition: string;
  /** Seed of the partition; every client of a federation must use the same one. */
  partitionSeed: number;
  /** A local CSV file (label first, then the features). */
  csv?: string;
  /**
   * Data for any task, read per task: a file (CSV/TSV by column name, or JSON Lines), or a
   * folder of class sub-folders of images.
   */
  data?: string;
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

/** Whether --data names a folder (images, one sub-folder per class) rather than a file. */
export function isFolder(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false; // reading it as a file says what is wrong
  }
}

/**
 * A --data file: read once here to count its rows (the hello's hint, and a file that cannot be
 * read or parsed at all is refused before joining), then once per task a round names.
 */
export async function openTaskDataFile(
  options: DataOptions & { data: string },
): Promise<FileTaskData> {
  const path = options.data;
  return FileTaskData.open({ name: path, read: () => readTextFile(path) }, splitOptions(options));
}

/** How every task's rows are split: --holdout, --partition-seed, --max-examples. */
export function splitOptions(options: DataOptions): SplitOptions {
  return {
    holdoutFraction: options.holdoutFraction,
    partitionSeed: options.partitionSeed,
    ...(options.maxExamples === undefined ? {} : { maxExamples: options.maxExamples }),
  };
}

/** Loads the client's own examples. Only this process ever reads them. */
export async function loadLocalData(options: DataOptions): Promise<LocalData> {
  if (options.holdoutFraction < 0 || options.holdoutFraction >= 1) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `--holdout must be in [0, 1), got ${options.holdoutFraction}`,
    );
  }
  const sources = [options.mnist, options.csv, options.data].filter((s) => s !== undefined);
  if (sources.length !== 1) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      'give exactly one data source: --mnist K/N, --csv FILE or --data FILE',
    );
  }
  if (options.data !== undefined) {
    const folder = isFolder(options.data);
    const taskData = folder
      ? await openImageFolder(options.data, splitOptions(options))
      : await openTaskDataFile({ ...options, data: options.data });
    const what = folder ? 'images' : 'rows';
    return {
      train: null,
      holdout: null,
      taskData,
      description: `data ${options.data} (read per task; ${taskData.numExamples} training and ${taskData.numHoldout ?? 0} held-out ${what} if it fits)`,
    };
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
