/**
 * Local training speed, Tessera next to PyTorch on the same machine: the FedAvg paper's 2NN
 * and CNN on the first 3,000 MNIST training examples; the built-in penguins task's MLP (9
 * features, dense 16, dense 3) on its 266-row training split, a timed epoch being as many
 * passes as make ten times --count (30,000) examples (the 2NN's, 30,000 examples whatever --count); and the built-in spam task's Transformer (token and position
 * embedding, one TransformerBlock, average pooling, sigmoid; in PyTorch the same block from
 * nn.MultiheadAttention, nn.LayerNorm and nn.Linear, same widths, heads, feed-forward,
 * LayerNorm epsilon and dropout) on the first 3,000 e-mails of its training split. Batch 10
 * and 50, plain SGD, samples/s of Tessera's native loop, of the tfjs loop on every backend
 * that starts here, and of PyTorch (/usr/bin/python3, python3-torch) at 1 thread and at every
 * core. Each runtime is compared with PyTorch at the same thread count, never across counts.
 *
 * Fair to both sides: PyTorch's every thread pool (ATen's OpenMP pool and the pthreads pool
 * of Debian's OpenBLAS, which torch.set_num_threads does not reach) is held to the stated
 * count (train_speed.py, with threadpoolctl where installed: it reports the pools), its loop
 * is the usual one with no host sync per step; the runtimes take turns epoch by epoch in a
 * rotating order, `--repeats` times, and each row gives the median and the spread. Every row
 * also gives the process's CPU time over wall time and how many of its threads were busy
 * (bench/thread-usage.ts), so that "1 thread" is measured on both sides.
 * 'Tessera native loop' is what a Node client trains with on the 'openblas' backend
 * (trainLocal's native loop: oneDNN convolutions, OpenBLAS products); 'tfjs openblas' is
 * the same backend through tfjs's optimizer.minimize. Both need @tessera/ml-native built
 * (OpenBLAS, and oneDNN for the convolutions, installed); they are skipped, with the
 * reason, where it is not; so is the native loop where planNativeTraining does not plan a
 * task's model (the bench prints the layer and why).
 * Prints what it ran on (CPU, cores, load average at start and end, BLAS libraries and their
 * kernels, each backend's detail line), a table, and writes bench/results/train-speed.json.
 *
 *   npm run bench:train-speed [-- --count 3000 --models fedavg-2nn,fedavg-cnn,penguins,spam
 *     --batches 10,50 --cpu-count 500 --cpu-models fedavg-2nn --repeats 5
 *     --runtimes pytorch,native,tfjs-openblas,tfjs-wasm,tfjs-wasm-workers,tfjs-cpu]
 *   npm run bench:train-speed -- --quick [--out FILE]   (a smoke run: 200 examples, batch 10,
 *     1 repeat; its figures are not measurements, and it writes JSON only to --out)
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  loadMnist,
  loadPenguins,
  loadSpamAssassin,
  tabularExamples,
  textExamples,
  toExamples,
} from '@tessera/data';
import {
  type BackendName,
  buildTaskModel,
  closeTrainingWorkers,
  createModel,
  type DenseEngine,
  initBackend,
  planNativeTraining,
  setNativeDenseEngine,
  type TrainingData,
  type TrainingLoop,
  type TrainingObjective,
  taskObjective,
  trainLocal,
} from '@tessera/ml';
import { builtinTask } from '@tessera/tasks';
import { measureThreads } from './thread-usage.js';

const { values: args } = parseArgs({
  options: {
    count: { type: 'string' },
    // The plain JavaScript backend is slow: time it on fewer examples, and not the CNN
    // (several seconds per batch of 10, even with @tessera/ml's Conv2DBackpropFilter) unless asked.
    'cpu-count': { type: 'string' },
    'cpu-models': { type: 'string', default: 'fedavg-2nn' },
    // Interleaved epochs per runtime; rows give their median and spread (see below).
    repeats: { type: 'string' },
    models: { type: 'string', default: 'fedavg-2nn,fedavg-cnn,penguins,spam' },
    batches: { type: 'string' },
    python: { type: 'string', default: '/usr/bin/python3' },
    // A smoke run: every model and runtime once, on few examples (explicit options still win).
    quick: { type: 'boolean', default: false },
    // Where the JSON goes: bench/results/train-speed.json, or with --quick nowhere unless given.
    out: { type: 'string' },
    // Which runtimes to time (ids below); all by default.
    runtimes: { type: 'string' },
  },
});
const quick = args.quick;
const count = Number(args.count ?? (quick ? 200 : 3000));
const cpuCount = Number(args['cpu-count'] ?? (quick ? 50 : 500));
const models = args.models.split(',');
const batchSizes = (args.batches ?? (quick ? '10' : '10,50')).split(',').map(Number);
const repeats = Number(args.repeats ?? (quick ? 1 : 5));
const LEARNING_RATE = 0.05;
const loadAtStart = os.loadavg();
console.log(
  `train-speed on ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'unknown CPU'}, load average ${os
    .loadavg()
    .map((value) => value.toFixed(1))
    .join(' ')} at the start`,
);
// Both sides' OpenMP pools (PyTorch's ATen, Tessera's oneDNN) read OMP_WAIT_POLICY when
// libgomp loads, before this module runs, so `npm run bench:train-speed` sets it: PASSIVE, so
// that an OpenMP pool idle while OpenBLAS works sleeps instead of spinning on a core the other
// pool needs (PyTorch's 2-thread rows ran 3 busy threads on 2 cores without it).
console.log(
  `OMP_WAIT_POLICY=${process.env['OMP_WAIT_POLICY'] ?? '(unset: OpenMP threads spin when idle)'} (both sides)`,
);

/** The models timed besides the zoo's: built-in tasks, built with buildTaskModel. */
const TASK_MODELS = new Set(['penguins', 'spam']);
for (const model of models) {
  if (!['fedavg-2nn', 'fedavg-cnn', ...TASK_MODELS].includes(model)) {
    throw new Error(
      `--models: '${model}' is not timed here (fedavg-2nn, fedavg-cnn, penguins, spam)`,
    );
  }
}

interface BenchData {
  data: TrainingData<Uint8Array | Float32Array>;
  /** Floats per example (784 pixels, the penguins' 9 features, or spam's maxLength token ids). */
  features: number;
  /** Passes over the data per timed epoch (the penguins' split is too small to time once). */
  passes: number;
  /** The same examples for PyTorch: float32 features, then uint8 labels. */
  file: string;
  /** What else train_speed.py needs to build the same model. */
  torchArgs: string[];
}

const tempDir = mkdtempSync(path.join(os.tmpdir(), 'tessera-train-speed-'));

/** Writes `data` where train_speed.py reads it. */
function benchData(
  name: string,
  data: TrainingData<Uint8Array | Float32Array>,
  features: number,
  torchArgs: string[] = [],
  passes = 1,
): BenchData {
  const file = path.join(tempDir, `${name}-${data.count}.bin`);
  const labels = Uint8Array.from(data.y);
  writeFileSync(
    file,
    Buffer.concat([
      Buffer.from(data.x.buffer, data.x.byteOffset, data.x.byteLength),
      Buffer.from(labels.buffer, labels.byteOffset, labels.byteLength),
    ]),
  );
  return { data, features, passes, file, torchArgs };
}

const benchSets = new Map<string, BenchData>();
if (models.some((model) => !TASK_MODELS.has(model))) {
  const mnist = loadMnist('train');
  const examples = toExamples(
    mnist,
    Array.from({ length: count }, (_, i) => i),
  );
  const mnist784 = benchData('mnist', { x: examples.x, y: examples.y, count }, 784);
  benchSets.set('mnist', mnist784);
  // The 2NN trains ~40,000 samples/s: a 3,000-example epoch lasts under 0.1 s, too short to
  // tell one busy thread from two with /proc's 10 ms clock ticks. Its timed epoch is as many
  // passes as make 30,000 examples (the same file; PyTorch gets the same --passes; one pass
  // in a --quick smoke run).
  benchSets.set('mnist-2nn', { ...mnist784, passes: quick ? 1 : Math.ceil(30_000 / count) });
}
if (models.includes('penguins')) {
  const task = builtinTask('penguins');
  if (task.input.kind !== 'tabular') throw new Error('the penguins task is a tabular task');
  const examples = tabularExamples(loadPenguins().train, task.input);
  const rows = Math.min(count, examples.count);
  const { featureSize } = examples;
  benchSets.set(
    'penguins',
    benchData(
      'penguins',
      {
        x: examples.x.subarray(0, rows * featureSize),
        y: examples.y.subarray(0, rows),
        count: rows,
      },
      featureSize,
      [],
      // Ten times the others' examples: at 211 parameters a step is mostly fixed cost, and
      // one 3,000-example epoch of the native loop lasts a few milliseconds.
      Math.ceil((10 * count) / rows),
    ),
  );
}
if (models.includes('spam')) {
  const task = builtinTask('spam');
  if (task.input.kind !== 'text') throw new Error('the spam task is a text task');
  const { train } = loadSpamAssassin();
  if (train.count < count) throw new Error(`--count ${count}: spam has ${train.count} e-mails`);
  const examples = textExamples(train, task.input);
  const length = task.input.maxLength;
  benchSets.set(
    'spam',
    benchData(
      'spam',
      { x: examples.x.subarray(0, count * length), y: examples.y.subarray(0, count), count },
      length,
      ['--vocabulary', String(task.input.tokenizer.vocabulary.length + 2)],
    ),
  );
}
const setOf = (model: string): BenchData => {
  const set = benchSets.get(
    TASK_MODELS.has(model) ? model : model === 'fedavg-2nn' ? 'mnist-2nn' : 'mnist',
  );
  if (set === undefined) throw new Error(`no data for ${model}`);
  return set;
};
const firstN = (model: string, n: number): TrainingData<Uint8Array | Float32Array> => {
  const { data, features } = setOf(model);
  const rows = Math.min(n, data.count);
  return { x: data.x.subarray(0, rows * features), y: data.y.subarray(0, rows), count: rows };
};
/** Examples one timed epoch of `model` trains on, at most `n` per pass. */
const samplesOf = (model: string, n: number): number =>
  firstN(model, n).count * setOf(model).passes;

let torchVersion = 'unavailable';
const scriptPath = new URL('train_speed.py', import.meta.url).pathname;

/** Parameters of each model as each side built it (`model tfjs`, `model PyTorch`): equal. */
const paramCounts = new Map<string, number>();

/** What PyTorch reported of its thread pools (threadpoolctl), per PyTorch row. */
const torchPools = new Map<string, unknown>();
const plural = (threads: number) => `${threads} thread${threads === 1 ? '' : 's'}`;
const torchLabel = (threads: number, blasThreads: number) =>
  `PyTorch, ${plural(threads)}${blasThreads === threads ? '' : `, OpenBLAS ${blasThreads}`}`;

/** One timed epoch: samples/s, and the threads it really used (see thread-usage.ts). */
interface Epoch {
  samplesPerSecond: number;
  cpuPerWall: number;
  busyThreads: number;
}

/**
 * One epoch in a PyTorch process; samples/s, or undefined if PyTorch is not there. Every
 * pool PyTorch uses is held to `threads`: the BLAS/OpenMP variables are set for the child
 * (train_speed.py sets them again before importing torch, and applies threadpoolctl).
 */
function torchEpoch(
  model: string,
  batchSize: number,
  threads: number,
  blasThreads = threads,
): Epoch | undefined {
  try {
    const output = execFileSync(
      args.python,
      [
        scriptPath,
        ...['--data', setOf(model).file, '--count', String(setOf(model).data.count)],
        ...['--model', model, '--passes', String(setOf(model).passes)],
        ...['--features', String(setOf(model).features), ...setOf(model).torchArgs],
        ...['--batch', String(batchSize), '--threads', String(threads)],
        ...['--blas-threads', String(blasThreads)],
        ...['--lr', String(LEARNING_RATE), '--epochs', '1'],
      ],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {
          ...process.env,
          OPENBLAS_NUM_THREADS: String(blasThreads),
          OMP_NUM_THREADS: String(threads),
          MKL_NUM_THREADS: String(blasThreads),
        },
      },
    );
    const result = JSON.parse(output.trim().split('\n').pop() ?? '{}') as {
      samplesPerSecond: number[];
      cpuPerWall: number[];
      busyThreads: number[];
      torch: string;
      pools: unknown;
      params: number;
    };
    torchVersion = result.torch;
    paramCounts.set(`${model} PyTorch`, result.params);
    torchPools.set(torchLabel(threads, blasThreads), result.pools);
    const [samplesPerSecond, cpuPerWall, busyThreads] = [
      result.samplesPerSecond[0],
      result.cpuPerWall[0],
      result.busyThreads[0],
    ];
    if (samplesPerSecond === undefined || cpuPerWall === undefined || busyThreads === undefined) {
      throw new Error(`train_speed.py printed no epoch: ${output.slice(-200)}`);
    }
    return { samplesPerSecond, cpuPerWall, busyThreads };
  } catch (error) {
    console.error(`\nPyTorch (${args.python}) failed: ${(error as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

/**
 * What each backend said it runs on (initBackend's detail line: for 'openblas', the
 * OpenBLAS kernels and the native loop's convolution library).
 */
const backendDetails = new Set<string>();

/** A zoo model, or a built-in task's model with its objective (the task's loss). */
async function benchModel(
  name: string,
): Promise<{ model: Awaited<ReturnType<typeof buildTaskModel>>; objective?: TrainingObjective }> {
  if (!TASK_MODELS.has(name)) return { model: createModel(name, { seed: 1 }) };
  const task = builtinTask(name);
  return { model: await buildTaskModel(task, { seed: 1 }), objective: taskObjective(task) };
}

/** One epoch with trainLocal (after a short warm-up); samples/s and threads used. */
async function tfjsEpoch(
  backend: BackendName,
  modelName: string,
  batchSize: number,
  samples: number,
  options: { workers?: number; threads?: number; loop?: TrainingLoop; dense?: DenseEngine } = {},
): Promise<Epoch> {
  const { workers = 1, threads, loop = 'tfjs' } = options;
  const info = await initBackend(backend, threads === undefined ? {} : { threads });
  backendDetails.add(`${backend}: ${info.detail}`);
  // Every native epoch sets it: the runtimes take turns in one process.
  if (loop === 'native') {
    const dense = options.dense ?? 'auto';
    backendDetails.add(`native loop's dense products, ${dense}: ${setNativeDenseEngine(dense)}`);
  }
  const { model, objective } = await benchModel(modelName);
  paramCounts.set(`${modelName} tfjs`, model.countParams());
  try {
    const trainOptions = {
      epochs: setOf(modelName).passes,
      batchSize,
      learningRate: LEARNING_RATE,
      seed: 1,
      workers,
      loop,
      objective,
    };
    // Warm-up: first-use costs (module compilation, kernel setup) are not training speed.
    await trainLocal(model, firstN(modelName, Math.min(samples, 5 * batchSize)), {
      ...trainOptions,
      epochs: 1,
    });
    // OpenBLAS's workers spin for a while after parallel work before they sleep: timed right
    // after a 2-thread epoch, a 1-thread epoch showed a second busy thread (CPU/wall 1.98)
    // doing nothing for it. Let them park first.
    await new Promise((resolve) => setTimeout(resolve, 250));
    const { result, cpuPerWall, busyThreads } = await measureThreads(() =>
      trainLocal(model, firstN(modelName, samples), trainOptions),
    );
    if (result.loop !== loop) throw new Error(`trained in the ${result.loop} loop, not ${loop}`);
    return { samplesPerSecond: result.samplesPerSecond, cpuPerWall, busyThreads };
  } finally {
    model.dispose();
  }
}

/** Runtimes by id (--runtimes picks some; each id stands for its rows at every thread count). */
const RUNTIME_IDS = [
  'pytorch',
  'native',
  'native-openblas-dense',
  'tfjs-openblas',
  'tfjs-wasm',
  'tfjs-wasm-workers',
  'tfjs-cpu',
] as const;
type RuntimeId = (typeof RUNTIME_IDS)[number];
const runtimeIds = (args.runtimes ?? RUNTIME_IDS.join(',')).split(',');
for (const id of runtimeIds) {
  if (!(RUNTIME_IDS as readonly string[]).includes(id)) {
    throw new Error(`--runtimes: unknown runtime '${id}' (${RUNTIME_IDS.join(', ')})`);
  }
}

interface Runtime {
  id: RuntimeId;
  label: string;
  /** Threads the runtime may use: it is compared with PyTorch at the same count. */
  threads: number;
  samples: number;
  models: string[];
  epoch: (model: string, batchSize: number) => Promise<Epoch | undefined>;
}
const cores = os.availableParallelism();
const threadCounts = [...new Set([1, cores])];
const runtimes: Runtime[] = threadCounts
  .flatMap((threads): Runtime[] => [
    {
      id: 'pytorch',
      label: torchLabel(threads, threads),
      threads,
      samples: count,
      models,
      epoch: async (model, batchSize) => torchEpoch(model, batchSize, threads),
    },
    // On several threads PyTorch's two pools can contend (ATen's OpenMP and OpenBLAS's
    // pthreads, each at the count). Its other honest configuration gives ATen the threads and
    // OpenBLAS one, the split Tessera's native loop uses; ratios are taken against the faster.
    ...(threads > 1
      ? [
          {
            id: 'pytorch' as const,
            label: torchLabel(threads, 1),
            threads,
            samples: count,
            models,
            epoch: async (model: string, batchSize: number) =>
              torchEpoch(model, batchSize, threads, 1),
          },
        ]
      : []),
    // What a Node client trains with where @tessera/ml-native is built: trainLocal's native
    // loop (oneDNN convolutions, and dense products on oneDNN's sgemm where it is built).
    {
      id: 'native',
      label: `Tessera native loop, ${plural(threads)}`,
      threads,
      samples: count,
      models,
      epoch: (model, batchSize) =>
        tfjsEpoch('openblas', model, batchSize, count, { threads, loop: 'native' }),
    },
    // The same loop with its dense products on OpenBLAS (as before oneDNN's sgemm ran them):
    // what the choice of library is worth, measured in the same run.
    {
      id: 'native-openblas-dense',
      label: `Tessera native loop, OpenBLAS dense, ${plural(threads)}`,
      threads,
      samples: count,
      models,
      epoch: (model, batchSize) =>
        tfjsEpoch('openblas', model, batchSize, count, {
          threads,
          loop: 'native',
          dense: 'openblas',
        }),
    },
    // The same backend through tfjs's own loop (optimizer.minimize): WebAssembly with the
    // convolutions and matrix products on OpenBLAS.
    {
      id: 'tfjs-openblas',
      label: `tfjs openblas, ${plural(threads)}`,
      threads,
      samples: count,
      models,
      epoch: (model, batchSize) => tfjsEpoch('openblas', model, batchSize, count, { threads }),
    },
    threads === 1
      ? {
          id: 'tfjs-wasm',
          label: 'tfjs wasm, 1 thread',
          threads,
          samples: count,
          models,
          epoch: (model, batchSize) => tfjsEpoch('wasm', model, batchSize, count),
        }
      : {
          id: 'tfjs-wasm-workers',
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
            id: 'tfjs-cpu' as const,
            label: 'tfjs cpu, 1 thread',
            threads,
            samples: cpuCount,
            models: args['cpu-models'].split(',').filter((name) => models.includes(name)),
            epoch: (model: string, batchSize: number) =>
              tfjsEpoch('cpu', model, batchSize, cpuCount),
          },
        ]
      : []),
  ])
  .filter((runtime) => runtimeIds.includes(runtime.id));

interface Row {
  model: string;
  batchSize: number;
  runtime: string;
  threads: number;
  samples: number;
  /** Every timed epoch, in the order they ran. */
  epochs: Epoch[];
  /** Of the epochs' samples/s. */
  median: number;
  min: number;
  max: number;
  /** The epochs' median CPU time over wall time, and the most threads busy in one. */
  cpuPerWall: number;
  busyThreads: number;
  /** Median samples/s over the faster PyTorch median at the same model, batch size and threads. */
  ratio?: number;
}
const rows: Row[] = [];
/** `model | runtime` -> why it could not be timed. */
const untimed = new Map<string, string>();

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
    const epochs = new Map<Runtime, Epoch[]>(active.map((runtime) => [runtime, []]));
    for (let repeat = 0; repeat < repeats; repeat++) {
      const order = active.map((_, i) => active[(i + repeat) % active.length] as Runtime);
      for (const runtime of order) {
        let epoch: Epoch | undefined;
        try {
          epoch = await runtime.epoch(model, batchSize);
        } catch (error) {
          const reason = (error as Error).message.split('\n')[0] ?? '';
          console.error(`\n${runtime.label}: ${reason}`);
          // Said once under the table: why a runtime has no row (the native loop names the
          // layer that stops it; data-parallel workers train softmax cross-entropy only).
          untimed.set(`${model} | ${runtime.label}`, reason);
        }
        if (epoch !== undefined) epochs.get(runtime)?.push(epoch);
        process.stdout.write('.');
      }
    }
    for (const [runtime, timed] of epochs) {
      if (timed.length === 0) continue;
      const values = timed.map((epoch) => epoch.samplesPerSecond);
      rows.push({
        model,
        batchSize,
        runtime: runtime.label,
        threads: runtime.threads,
        samples: samplesOf(model, runtime.samples),
        epochs: timed,
        median: median(values),
        min: Math.min(...values),
        max: Math.max(...values),
        cpuPerWall: median(timed.map((epoch) => epoch.cpuPerWall)),
        busyThreads: Math.max(...timed.map((epoch) => epoch.busyThreads)),
      });
    }
  }
}
process.stdout.write('\n');
await closeTrainingWorkers();
rmSync(tempDir, { recursive: true, force: true });

for (const row of rows) {
  // Against PyTorch's faster configuration at the same model, batch size and thread count.
  const torch = rows
    .filter(
      (r) =>
        r.model === row.model &&
        r.batchSize === row.batchSize &&
        r.threads === row.threads &&
        r.runtime.startsWith('PyTorch'),
    )
    .sort((a, b) => b.median - a.median)[0];
  if (torch) row.ratio = row.median / torch.median;
}

const cpus = os.cpus();
const formatLoad = (load: number[]) => load.map((value) => value.toFixed(1)).join(' ');
const loadAtEnd = os.loadavg();
const coretype = process.env['OPENBLAS_CORETYPE'] ?? 'unset (OpenBLAS picks by CPU)';
const machine = {
  cpu: cpus[0]?.model ?? 'unknown CPU',
  cores: cpus.length,
  loadAverageAtStart: formatLoad(loadAtStart),
  loadAverageAtEnd: formatLoad(loadAtEnd),
  node: process.version,
  pytorch: torchVersion,
  openblasCoretype: coretype,
  backends: [...backendDetails],
};
console.log(
  `\nRan on ${machine.cores} x ${machine.cpu}; load average (1, 5, 15 min) ${machine.loadAverageAtStart} at the start, ${machine.loadAverageAtEnd} at the end; node ${machine.node}, PyTorch ${torchVersion}, OPENBLAS_CORETYPE ${coretype}`,
);
for (const detail of backendDetails) console.log(`tfjs backend ${detail}`);
for (const [label, pools] of torchPools) {
  console.log(`${label}'s thread pools (threadpoolctl): ${JSON.stringify(pools)}`);
}
const setNames = models
  .map(
    (model) =>
      `${model} ${samplesOf(model, count).toLocaleString('en')}${setOf(model).passes > 1 ? ` (${setOf(model).passes} passes over ${setOf(model).data.count})` : ''}`,
  )
  .join(', ');
console.log(
  `\nMedian [min-max] samples/s of ${repeats} interleaved epochs of plain SGD per runtime; examples per epoch: ${setNames}. CPU/wall: the process's CPU time over the epoch's wall time (median); busy: the most of its threads that each ran over a tenth of an epoch.${quick ? ' QUICK SMOKE RUN: not a measurement.' : ''}`,
);
console.log(
  '\n| model | batch | runtime | samples/s | x faster PyTorch, same threads | CPU/wall | busy threads |',
);
console.log('|---|---:|---|---:|---:|---:|---:|');
const fmt = (value: number) => Math.round(value).toLocaleString('en');
for (const row of rows) {
  const note = row.samples !== samplesOf(row.model, count) ? ` (${row.samples} examples)` : '';
  console.log(
    `| ${row.model} | ${row.batchSize} | ${row.runtime}${note} | ${fmt(row.median)} [${fmt(row.min)}-${fmt(row.max)}] | ${row.ratio === undefined ? '-' : `${row.ratio.toFixed(2)}x`} | ${row.cpuPerWall.toFixed(2)} | ${row.busyThreads} |`,
  );
}
// Besides the loss, the layers the native loop has no kernels for (its plan names the first).
for (const name of models.filter((model) => TASK_MODELS.has(model))) {
  const { model } = await benchModel(name);
  const plan = planNativeTraining(model, builtinTask(name).loss);
  model.dispose();
  console.log(`\nNative loop plan for ${name}: ${plan.ok ? 'plans' : plan.reason}`);
  if (!plan.ok) untimed.set(`${name} | native loop plan`, plan.reason);
}
for (const model of models) {
  const tfjs = paramCounts.get(`${model} tfjs`);
  const torch = paramCounts.get(`${model} PyTorch`);
  if (tfjs !== undefined && torch !== undefined && tfjs !== torch) {
    console.log(`\nWARNING: ${model} has ${tfjs} parameters in tfjs, ${torch} in PyTorch`);
  }
}
if (untimed.size > 0) {
  console.log('\nNot timed:');
  for (const [what, reason] of untimed) console.log(`- ${what}: ${reason}`);
}
const outFile =
  args.out ?? (quick ? undefined : new URL('results/train-speed.json', import.meta.url).pathname);
if (outFile !== undefined) {
  mkdirSync(path.dirname(outFile), { recursive: true });
  writeFileSync(
    outFile,
    `${JSON.stringify({ date: new Date().toISOString(), machine, torchPools: Object.fromEntries(torchPools), count, repeats, learningRate: LEARNING_RATE, rows, untimed: Object.fromEntries(untimed), paramCounts: Object.fromEntries(paramCounts) }, null, 2)}\n`,
  );
}
