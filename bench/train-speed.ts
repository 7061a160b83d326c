/**
 * Local training speed, tfjs next to PyTorch on the same machine: the FedAvg paper's 2NN
 * and CNN at batch 10 and 50, one epoch of plain SGD over the first 3,000 MNIST training
 * examples, samples/s of every tfjs backend that starts here and of PyTorch
 * (/usr/bin/python3, python3-torch) at 1 and 2 threads, with the ratio to PyTorch's best.
 * 'Tessera native loop' is what a Node client trains with on the 'openblas' backend
 * (trainLocal's native loop: oneDNN convolutions, OpenBLAS products); 'tfjs openblas' is
 * the same backend through tfjs's optimizer.minimize. Both need @tessera/ml-native built
 * (OpenBLAS, and oneDNN for the convolutions, installed); they are skipped, with the
 * reason, where it is not.
 * Prints a table and writes bench/results/train-speed.json.
 *
 *   npm run bench:train-speed [-- --count 3000 --models fedavg-2nn,fedavg-cnn --batches 10,50
 *     --cpu-count 500 --cpu-models fedavg-2nn --repeats 3]
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
    // Each runtime's best of this many epochs (see below).
    repeats: { type: 'string', default: '3' },
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

interface Row {
  model: string;
  batchSize: number;
  runtime: string;
  samples: number;
  samplesPerSecond: number;
  /** samples/s over PyTorch's best at this model and batch size. */
  ratio?: number;
}
const rows: Row[] = [];

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

/** One epoch in a PyTorch process; samples/s, or undefined if PyTorch is not there. */
function torchEpoch(model: string, batchSize: number, threads: number): number | undefined {
  try {
    const output = execFileSync(
      args.python,
      [
        scriptPath,
        ...['--data', dataFile, '--count', String(count), '--model', model],
        ...['--batch', String(batchSize), '--threads', String(threads)],
        ...['--lr', String(LEARNING_RATE)],
      ],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const result = JSON.parse(output.trim().split('\n').pop() ?? '{}') as {
      samplesPerSecond: number;
      torch: string;
    };
    torchVersion = result.torch;
    return result.samplesPerSecond;
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
  samples: number;
  models: string[];
  epoch: (model: string, batchSize: number) => Promise<number | undefined>;
}
const cores = os.availableParallelism();
const runtimes: Runtime[] = [
  ...[1, 2].map((threads) => ({
    label: `PyTorch ${threads} thread${threads === 1 ? '' : 's'}`,
    samples: count,
    models,
    epoch: async (model: string, batchSize: number) => torchEpoch(model, batchSize, threads),
  })),
  // What a Node client trains with where @tessera/ml-native is built: trainLocal's native
  // loop, at 1 thread and at every core, like PyTorch above.
  ...[...new Set([1, cores])].map((threads) => ({
    label: `Tessera native loop, ${threads} thread${threads === 1 ? '' : 's'}`,
    samples: count,
    models,
    epoch: (model: string, batchSize: number) =>
      tfjsEpoch('openblas', model, batchSize, count, { threads, loop: 'native' }),
  })),
  // The same backend through tfjs's own loop (optimizer.minimize): WebAssembly with the
  // convolutions and matrix products on OpenBLAS.
  {
    label: 'tfjs openblas, 1 thread',
    samples: count,
    models,
    epoch: (model, batchSize) => tfjsEpoch('openblas', model, batchSize, count, { threads: 1 }),
  },
  {
    label: 'tfjs wasm',
    samples: count,
    models,
    epoch: (model, batchSize) => tfjsEpoch('wasm', model, batchSize, count),
  },
  ...(cores > 1
    ? [
        {
          label: `tfjs wasm, ${cores} threads`,
          samples: count,
          models,
          epoch: (model: string, batchSize: number) =>
            tfjsEpoch('wasm', model, batchSize, count, { workers: cores }),
        },
      ]
    : []),
  {
    label: 'tfjs cpu',
    samples: cpuCount,
    models: args['cpu-models'].split(',').filter((name) => models.includes(name)),
    epoch: (model, batchSize) => tfjsEpoch('cpu', model, batchSize, cpuCount),
  },
];

// Runtimes take turns, `repeats` rounds, and each keeps its best epoch: on a shared
// machine, load that comes and goes then hits all of them alike rather than whichever
// happened to run at the time.
for (const model of models) {
  for (const batchSize of batchSizes) {
    const best = new Map<Runtime, number>();
    for (let repeat = 0; repeat < repeats; repeat++) {
      for (const runtime of runtimes) {
        if (!runtime.models.includes(model)) continue;
        let samplesPerSecond: number | undefined;
        try {
          samplesPerSecond = await runtime.epoch(model, batchSize);
        } catch (error) {
          console.error(`\n${runtime.label}: ${(error as Error).message.split('\n')[0]}`);
        }
        if (samplesPerSecond !== undefined) {
          best.set(runtime, Math.max(best.get(runtime) ?? 0, samplesPerSecond));
        }
        process.stdout.write('.');
      }
    }
    for (const [runtime, samplesPerSecond] of best) {
      rows.push({
        model,
        batchSize,
        runtime: runtime.label,
        samples: runtime.samples,
        samplesPerSecond,
      });
    }
  }
}
process.stdout.write('\n');
await closeTrainingWorkers();
rmSync(tempDir, { recursive: true, force: true });

for (const row of rows) {
  const best = Math.max(
    0,
    ...rows
      .filter(
        (r) =>
          r.model === row.model && r.batchSize === row.batchSize && r.runtime.startsWith('PyTorch'),
      )
      .map((r) => r.samplesPerSecond),
  );
  if (best > 0) row.ratio = row.samplesPerSecond / best;
}

const cpus = os.cpus();
const load = os
  .loadavg()
  .map((value) => value.toFixed(1))
  .join(' ');
const machine = `${cpus.length} x ${cpus[0]?.model ?? 'unknown CPU'}, load average ${load} at the end, node ${process.version}, PyTorch ${torchVersion}; openblas backend: ${openblasDetail}`;
console.log(
  `\nBest of ${repeats} epochs of plain SGD over the first ${count} MNIST training examples (${machine})\n`,
);
const header = `| model | batch | runtime | samples/s | x PyTorch best |`;
console.log(header);
console.log('|---|---:|---|---:|---:|');
for (const row of rows) {
  const note = row.samples !== count ? ` (${row.samples} examples)` : '';
  console.log(
    `| ${row.model} | ${row.batchSize} | ${row.runtime}${note} | ${Math.round(row.samplesPerSecond).toLocaleString('en')} | ${row.ratio === undefined ? '-' : `${row.ratio.toFixed(2)}x`} |`,
  );
}
mkdirSync(new URL('results/', import.meta.url), { recursive: true });
writeFileSync(
  new URL('results/train-speed.json', import.meta.url),
  `${JSON.stringify({ date: new Date().toISOString(), machine, count, repeats, learningRate: LEARNING_RATE, rows }, null, 2)}\n`,
);
