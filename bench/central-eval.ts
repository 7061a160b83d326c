/**
 * Central evaluation speed: the coordinator's per-round evaluation of the FedAvg CNN
 * (fedavg-cnn, 1.66M parameters) on the 10,000 MNIST test images, by each engine in one
 * process: tfjs's evaluateModel on the plain WASM backend, on the 'openblas' backend (WASM
 * with OpenBLAS convolutions and products: what the coordinator's initBackend() picks where
 * @tessera/ml-native is built; model.predict's fused convolutions stay WASM), and the native
 * evaluator of @tessera/ml (native-evaluation.ts: oneDNN convolutions, OpenBLAS products) at
 * each thread count asked. The engines take turns, `--repeats` times; each row gives the
 * median and the spread of the wall time, CPU time over wall time (the threads busy), and the
 * loss and accuracy it computed (the engines must agree). Prints the CPU, cores and load
 * average at start and end, and writes bench/results/central-eval.json.
 *
 *   node --import tsx --conditions=@tessera/source bench/central-eval.ts [--repeats 3 --threads 1,2 --batch 1000 --count 10000 --out FILE]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadMnist, toExamples } from '@tessera/data';
import {
  createModel,
  createModelEvaluator,
  type EvaluationResult,
  evaluateModel,
  initBackend,
  loadNativeEvaluationAddon,
  MNIST_OBJECTIVE,
} from '@tessera/ml';

const { values: args } = parseArgs({
  options: {
    repeats: { type: 'string', default: '3' },
    threads: { type: 'string', default: '1,2' },
    batch: { type: 'string', default: '1000' },
    count: { type: 'string', default: '10000' },
    out: { type: 'string', default: 'bench/results/central-eval.json' },
  },
});
const repeats = Number(args.repeats);
const batchSize = Number(args.batch);
const threadCounts = args.threads.split(',').map(Number);
const test = toExamples(loadMnist('test'));
const count = Math.min(Number(args.count), test.count);
const data = {
  x: test.x.subarray(0, count * 784),
  y: test.y.subarray(0, count),
  count,
};

const loadStart = os.loadavg();
const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
console.log(
  `${cpu}, ${os.availableParallelism()} cores; load average ${loadStart.map((l) => l.toFixed(2)).join(' ')}`,
);
console.log(`fedavg-cnn on ${count} MNIST test images, batch ${batchSize}, ${repeats} repeats`);
console.log(`OMP_WAIT_POLICY=${process.env['OMP_WAIT_POLICY'] ?? '(unset)'}`);

const wasm = await initBackend('wasm');
console.log(`tfjs wasm: ${wasm.detail}`);
const model = createModel('fedavg-cnn', { seed: 0 });

interface Runner {
  name: string;
  run(): Promise<EvaluationResult>;
}

const runners: Runner[] = [
  {
    name: 'tfjs evaluateModel, wasm backend',
    run: async () => {
      await initBackend('wasm');
      return evaluateModel(model, data, batchSize, MNIST_OBJECTIVE);
    },
  },
];
const addon = await loadNativeEvaluationAddon();
if (addon.ok) {
  const openblas = await initBackend('openblas', { threads: os.availableParallelism() });
  console.log(`tfjs openblas: ${openblas.detail}`);
  runners.push({
    name: `tfjs evaluateModel, openblas backend (${os.availableParallelism()} threads)`,
    run: async () => {
      // As the coordinator's worker: initBackend() picks 'openblas', OpenBLAS at every core.
      await initBackend('openblas', { threads: os.availableParallelism() });
      return evaluateModel(model, data, batchSize, MNIST_OBJECTIVE);
    },
  });
  await initBackend('wasm');
  for (const threads of threadCounts) {
    const evaluator = await createModelEvaluator(model, MNIST_OBJECTIVE, {
      engine: 'native',
      batchSize,
      threads,
    });
    runners.push({
      name: `native evaluator, ${threads} thread${threads === 1 ? '' : 's'}`,
      run: () => evaluator.evaluate(data),
    });
  }
  console.log(`native: convolutions on ${addon.addon.convEngine()}`);
} else {
  console.log(`native evaluator skipped: ${addon.reason}`);
}

interface Sample {
  seconds: number;
  cpuOverWall: number;
  loss: number;
  accuracy: number;
}
const samples = new Map<string, Sample[]>(runners.map((r) => [r.name, []]));
// One untimed pass each first: WASM compilation, oneDNN's primitives, page faults.
for (const runner of runners) await runner.run();
for (let repeat = 0; repeat < repeats; repeat++) {
  // A rotating order, so that no engine always runs after the same one.
  for (let i = 0; i < runners.length; i++) {
    const runner = runners[(i + repeat) % runners.length] as Runner;
    const cpuStart = process.cpuUsage();
    const started = performance.now();
    const result = await runner.run();
    const seconds = (performance.now() - started) / 1000;
    const used = process.cpuUsage(cpuStart);
    samples.get(runner.name)?.push({
      seconds,
      cpuOverWall: (used.user + used.system) / 1e6 / seconds,
      loss: result.loss,
      accuracy: result.accuracy,
    });
  }
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
};
const baseline = median((samples.get(runners[0]?.name ?? '') ?? []).map((s) => s.seconds));
const rows = runners.map((runner) => {
  const runs = samples.get(runner.name) ?? [];
  const seconds = runs.map((s) => s.seconds);
  return {
    engine: runner.name,
    medianSeconds: median(seconds),
    minSeconds: Math.min(...seconds),
    maxSeconds: Math.max(...seconds),
    cpuOverWall: median(runs.map((s) => s.cpuOverWall)),
    imagesPerSecond: count / median(seconds),
    speedupOverWasm: baseline / median(seconds),
    loss: runs[0]?.loss ?? Number.NaN,
    accuracy: runs[0]?.accuracy ?? Number.NaN,
  };
});
const loadEnd = os.loadavg();
console.log('');
console.log('| engine | s (median [min–max]) | images/s | CPU/wall | vs wasm | loss | accuracy |');
console.log('|---|---|---|---|---|---|---|');
for (const row of rows) {
  console.log(
    `| ${row.engine} | ${row.medianSeconds.toFixed(2)} [${row.minSeconds.toFixed(2)}–${row.maxSeconds.toFixed(2)}] | ${row.imagesPerSecond.toFixed(0)} | ${row.cpuOverWall.toFixed(2)} | ${row.speedupOverWasm.toFixed(2)}x | ${row.loss.toFixed(6)} | ${row.accuracy.toFixed(4)} |`,
  );
}
console.log(`load average at the end ${loadEnd.map((l) => l.toFixed(2)).join(' ')}`);

mkdirSync(path.dirname(args.out), { recursive: true });
writeFileSync(
  args.out,
  `${JSON.stringify(
    {
      measuredAt: new Date().toISOString(),
      cpu,
      cores: os.availableParallelism(),
      loadAverageStart: loadStart,
      loadAverageEnd: loadEnd,
      ompWaitPolicy: process.env['OMP_WAIT_POLICY'] ?? null,
      model: 'fedavg-cnn',
      examples: count,
      batchSize,
      repeats,
      rows,
    },
    null,
    2,
  )}\n`,
);
console.log(`wrote ${args.out}`);
model.dispose();
