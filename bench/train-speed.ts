/**
 * Local training speed, tfjs next to PyTorch on the same machine: the FedAvg paper's 2NN
 * and CNN at batch 10 and 50, epochs of plain SGD over the first 3,000 MNIST training
 * examples, samples/s of every tfjs backend that starts here and of PyTorch
 * (/usr/bin/python3, python3-torch) at 1 thread and at every core. Each runtime is compared
 * with PyTorch at the same thread count, never across counts.
 *
 * Fair to both sides: PyTorch's every thread pool (ATen's OpenMP pool and the pthreads pool
 * of Debian's OpenBLAS, which torch.set_num_threads does not reach) is held to the stated
 * count (train_speed.py, with threadpoolctl where installed: it reports the pools), its loop
 * is the usual one with no host sync per step; the runtimes take turns epoch by epoch in a
 * rotating order, `--repeats` times, and each row gives the median and the spread.
 * 'Tessera native loop' is what a Node client trains with on the 'openblas' backend
 * (trainLocal's native loop: oneDNN convolutions, OpenBLAS products); 'tfjs openblas' is
 * the same backend through tfjs's optimizer.minimize. Both need @tessera/ml-native built
 * (OpenBLAS, and oneDNN for the convolutions, installed); they are skipped, with the
 * reason, where it is not.
 * Prints a table and writes bench/results/train-speed.json.
 *
 *   npm run bench:train-speed [-- --count 3000 --models fedavg-2nn,fedavg-cnn --batches 10,50
 *     --cpu-count 500 --cpu-models fedavg-2nn --repeats 5]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadMnist, toExamples } from '@tessera/data';
import {
  type BackendName,
  closeTrainingWorkers,
  createModel,
  initBackend,
  type TrainingData,
  type TrainingLoop,
  trainLocal,
} from '@tessera/ml';

const { values: args } = parseArgs({
  options: {
    count: { type: 'string', default: '3000' },
    // The plain JavaScript backend is slow: time it on fewer examples, and not the CNN
    // (several seconds per batch of 10, even with @tessera/ml's Conv2DBackpropFilter) unless asked.
    'cpu-count': { type: 'string', default: '500' },
    'cpu-models': { type: 'string', default: 'fedavg-2nn' },
    // Interleaved epochs per runtime; rows give their median and spread (see below).
    repeats: { type: 'string', default: '5' },
    models: { type: 'string', default: 'fedavg-2nn,fedavg-cnn' },
    batches: { type: 'string', default: '10,50' },
    python: { type: 'string', default: '/usr/bin/python3' },
  },
});
const count = Number(args.count);
const cpuCount = Number(args['cpu-count']);
const models = args.models.split(',');
const batchSizes = args.batches.split(',').map(Number);
const repeats = Number(args.repeats);
const LEARNING_RATE = 0.05;

const mnist = loadMnist('train');
const indices = Array.from({ length: count }, (_, i) => i);
const examples = toExamples(mnist, indices);
const data: TrainingData = { x: examples.x, y: examples.y, count };
const firstN = (n: number): TrainingData => ({
  x: data.x.subarray(0, n * 784),
  y: data.y.subarray(0, n),
  count: n,
});

// PyTorch reads the same examples from a raw file: float32 pixels, then uint8 labels.
const tempDir = mkdtempSync(path.join(os.tmpdir(), 'tessera-train-speed-'));
const dataFile = path.join(tempDir, 'mnist-3000.bin');
writeFileSync(
  dataFile,
  Buffer.concat([
    Buffer.from(data.x.buffer, data.x.byteOffset, data.x.byteLength),
    Buffer.from(data.y.buffer, data.y.byteOffset, data.y.byteLength),
  ]),
);
let torchVersion = 'unavailable';
const scriptPath = new URL('train_speed.py', import.meta.url).pathname;

/** What PyTorch reported of its thread pools (threadpoolctl), per thread count. */
const torchPools = new Map<number, unknown>();

/**
 * One epoch in a PyTorch process; samples/s, or undefined if PyTorch is not there. Every
 * pool PyTorch uses is held to `threads`: the BLAS/OpenMP variables are set for the child
 * (train_speed.py sets them again before importing torch, and applies threadpoolctl).
 */
function torchEpoch(model: string, batchSize: number, threads: number): number | undefined {
  try {
    const output = execFileSync(
      args.python,
      [
        scriptPath,
        ...['--data', dataFile, '--count', String(count), '--model', model],
        ...['--batch', String(batchSize), '--threads', String(threads)],
        ...['--lr', String(LEARNING_RATE), '--epochs', '1'],
      ],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {
          ...process.env,
          OPENBLAS_NUM_THREADS: String(threads),
          OMP_NUM_THREADS: String(threads),
          MKL_NUM_THREADS: String(threads),
        },
      },
    );
    const result = JSON.parse(output.trim().split('\n').pop() ?? '{}') as {
      samplesPerSecond: number[];
      torch: string;
      pools: unknown;
    };
    torchVersion = result.torch;
    torchPools.set(threads, result.pools);
    return result.samplesPerSecond[0];
  } catch (error) {
    console.error(`\nPyTorch (${args.python}) failed: ${(error as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

/** What the 'openblas' backend said it runs on (OpenBLAS kernels, convolution library). */
let openblasDetail = 'not available';

/** One epoch with trainLocal (after a short warm-up); samples/s. */
async function tfjsEpoch(
  backend: BackendName,
  modelName: string,
  batchSize: number,
  samples: number,
  options: { workers?: number; threads?: number; loop?: TrainingLoop } = {},
): Promise<number> {
  const { workers = 1, threads, loop = 'tfjs' } = options;
  const info = await initBackend(backend, threads === undefined ? {} : { threads });
  if (backend === 'openblas') openblasDetail = info.detail;
  const model = createModel(modelName, { seed: 1 });
  try {
    const trainOptions = {
      epochs: 1,
      batchSize,
      learningRate: LEARNING_RATE,
      seed: 1,
      workers,
      loop,
    };
    // Warm-up: first-use costs (module compilation, kernel setup) are not training speed.
    await trainLocal(model, firstN(Math.min(samples, 5 * batchSize)), trainOptions);
    const result = await trainLocal(model, firstN(samples), trainOptions);
    if (result.loop !== loop) throw new Error(`trained in the ${result.loop} loop, not ${loop}`);
    return result.samplesPerSecond;
  } finally {
    model.dispose();
  }
}

interface Runtime {
  label: string;
  /** Threads the runtime may use: it is compared with PyTorch at the same count. */
  threads: number;
  samples: number;
  models: string[];
  epoch: (model: string, batchSize: number) => Promise<number | undefined>;
}
const cores = os.availableParallelism();
const threadCounts = [...new Set([1, cores])];
const plural = (threads: number) => `${threads} thread${threads === 1 ? '' : 's'}`;
const runtimes: Runtime[] = threadCounts.flatMap((threads): Runtime[] => [
  {
    label: `PyTorch, ${plural(threads)}`,
    threads,
    samples: count,
    models,
    epoch: async (model, batchSize) => torchEpoch(model, batchSize, threads),
  },
  // What a Node client trains with where @tessera/ml-native is built: trainLocal's native
  // loop (oneDNN convolutions, OpenBLAS products).
  {
    label: `Tessera native loop, ${plural(threads)}`,
    threads,
    samples: count,
    models,
    epoch: (model, batchSize) =>
      tfjsEpoch('openblas', model, batchSize, count, { threads, loop: 'native' }),
  },
  // The same backend through tfjs's own loop (optimizer.minimize): WebAssembly with the
  // convolutions and matrix products on OpenBLAS.
  {
    label: `tfjs openblas, ${plural(threads)}`,
    threads,
    samples: count,
    models,
    epoch: (model, batchSize) => tfjsEpoch('openblas', model, batchSize, count, { threads }),
  },
  threads === 1
    ? {
        label: 'tfjs wasm, 1 thread',
        threads,
        samples: count,
        models,
        epoch: (model, batchSize) => tfjsEpoch('wasm', model, batchSize, count),
      }
    : {
        label: `tfjs wasm, ${threads} worker threads`,
        threads,
        samples: count,
        models,
        epoch: (model, batchSize) =>
          tfjsEpoch('wasm', model, batchSize, count, { workers: threads }),
      },
  ...(threads === 1
    ? [
        {
          label: 'tfjs cpu, 1 thread',
          threads,
          samples: cpuCount,
          models: args['cpu-models'].split(',').filter((name) => models.includes(name)),
          epoch: (model: string, batchSize: number) => tfjsEpoch('cpu', model, batchSize, cpuCount),
        },
      ]
    : []),
]);

interface Row {
  model: string;
  batchSize: number;
  runtime: string;
  threads: number;
  samples: number;
  /** samples/s of every timed epoch, in the order they ran. */
  epochs: number[];
  median: number;
  min: number;
  max: number;
  /** Median samples/s over PyTorch's median at the same model, batch size and thread count. */
  ratio?: number;
}
const rows: Row[] = [];

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
};

// Runtimes take turns, one epoch each per repeat, and the order rotates every repeat: load
// that comes and goes on a shared machine then hits all of them alike, and no runtime always
// runs right after another's warm caches. Each row reports the median and the spread.
for (const model of models) {
  for (const batchSize of batchSizes) {
    const active = runtimes.filter((runtime) => runtime.models.includes(model));
    const epochs = new Map<Runtime, number[]>(active.map((runtime) => [runtime, []]));
    for (let repeat = 0; repeat < repeats; repeat++) {
      const order = active.map((_, i) => active[(i + repeat) % active.length] as Runtime);
      for (const runtime of order) {
        let samplesPerSecond: number | undefined;
        try {
          samplesPerSecond = await runtime.epoch(model, batchSize);
        } catch (error) {
          console.error(`\n${runtime.label}: ${(error as Error).message.split('\n')[0]}`);
        }
        if (samplesPerSecond !== undefined) epochs.get(runtime)?.push(samplesPerSecond);
        process.stdout.write('.');
      }
    }
    for (const [runtime, values] of epochs) {
      if (values.length === 0) continue;
      rows.push({
        model,
        batchSize,
        runtime: runtime.label,
        threads: runtime.threads,
        samples: runtime.samples,
        epochs: values,
        median: median(values),
        min: Math.min(...values),
        max: Math.max(...values),
      });
    }
  }
}
process.stdout.write('\n');
await closeTrainingWorkers();
rmSync(tempDir, { recursive: true, force: true });

for (const row of rows) {
  const torch = rows.find(
    (r) =>
      r.model === row.model &&
      r.batchSize === row.batchSize &&
      r.threads === row.threads &&
      r.runtime.startsWith('PyTorch'),
  );
  if (torch) row.ratio = row.median / torch.median;
}

const cpus = os.cpus();
const load = os
  .loadavg()
  .map((value) => value.toFixed(1))
  .join(' ');
const coretype = process.env['OPENBLAS_CORETYPE'] ?? 'unset (OpenBLAS picks by CPU)';
const machine = `${cpus.length} x ${cpus[0]?.model ?? 'unknown CPU'}, load average ${load} at the end, node ${process.version}, PyTorch ${torchVersion}, OPENBLAS_CORETYPE ${coretype}; openblas backend: ${openblasDetail}`;
console.log(
  `\nMedian [min-max] of ${repeats} interleaved epochs of plain SGD over the first ${count} MNIST training examples (${machine})`,
);
for (const [threads, pools] of torchPools)
  console.log(`PyTorch's thread pools at ${plural(threads)}: ${JSON.stringify(pools)}`);
console.log('\n| model | batch | runtime | samples/s | x PyTorch, same threads |');
console.log('|---|---:|---|---:|---:|');
const fmt = (value: number) => Math.round(value).toLocaleString('en');
for (const row of rows) {
  const note = row.samples !== count ? ` (${row.samples} examples)` : '';
  console.log(
    `| ${row.model} | ${row.batchSize} | ${row.runtime}${note} | ${fmt(row.median)} [${fmt(row.min)}-${fmt(row.max)}] | ${row.ratio === undefined ? '-' : `${row.ratio.toFixed(2)}x`} |`,
  );
}
mkdirSync(new URL('results/', import.meta.url), { recursive: true });
writeFileSync(
  new URL('results/train-speed.json', import.meta.url),
  `${JSON.stringify({ date: new Date().toISOString(), machine, torchPools: Object.fromEntries(torchPools), count, repeats, learningRate: LEARNING_RATE, rows }, null, 2)}\n`,
);
