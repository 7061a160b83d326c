/**
 * What the exact accumulator (ExactWeightedSum) costs next to today's float64 sequential fold
 * (WeightedSum), per coordinate, and next to copying the same bytes (memcpy: a Float32Array
 * `set`) in the same run: `--clients` updates of `--params` parameters (defaults: 100 x
 * 1,663,370, the fedavg-cnn), each into a fresh accumulator as a round does (so the first
 * writes to its pages are counted). `--repeats` (default 5) rounds of the three, interleaved
 * (memcpy, float64, exact, memcpy, ...), so that other load on the machine falls on all three
 * alike; the table gives the median and the range. Each fold is first run on a small
 * accumulator so that the optimising compiler has compiled it, as it has in a coordinator that
 * has folded a few updates (the first fold of a fresh process runs interpreted at first).
 * Also the state's bytes (allocated, and how much the exact state made resident: RSS growth
 * across its first round), the finish (float32 mean, float64 mean), a partial's size as bytes
 * and the time to encode, decode and merge it. Prints a table and writes
 * bench/results/exact-sum.json (or `--out`).
 *
 *   node --import tsx --conditions=@tessera/source bench/exact-sum.ts
 *   ... bench/exact-sum.ts --clients 20 --params 100000 --repeats 3
 *
 * `--distinct` different update vectors (default 8) are made once and folded in turn, so the
 * run does not hold clients x params x 4 bytes; the fold's cost does not depend on which vector
 * it is. Example counts are 1..60,000 (the MNIST shards'), below the 2^29 of one fold pass.
 */
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ExactWeightedSum, WeightedSum } from '@tessera/aggregation';

const { values: args } = parseArgs({
  options: {
    clients: { type: 'string', default: '100' },
    params: { type: 'string', default: '1663370' },
    distinct: { type: 'string', default: '8' },
    repeats: { type: 'string', default: '5' },
    out: {
      type: 'string',
      default: join(fileURLToPath(new URL('.', import.meta.url)), 'results', 'exact-sum.json'),
    },
  },
});
const CLIENTS = Number(args.clients);
const PARAMS = Number(args.params);
const DISTINCT = Math.min(Number(args.distinct), CLIENTS);
const REPEATS = Number(args.repeats);

const loadAtStart = loadavg();
console.log(
  `exact-sum bench: ${CLIENTS} updates x ${PARAMS} parameters, ${cpus()[0]?.model ?? 'unknown CPU'}, node ${process.version}, load average at start ${loadAtStart.map((l) => l.toFixed(2)).join(' ')}`,
);

/** Trained-model-like values: a seeded spread over many binades, both signs, a few zeros. */
function makeUpdate(seed: number): Float32Array {
  const values = new Float32Array(PARAMS);
  let state = seed >>> 0;
  for (let i = 0; i < PARAMS; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const unit = state / 2 ** 32;
    values[i] = i % 97 === 0 ? 0 : (unit - 0.5) * 2 ** ((state & 15) - 10);
  }
  return values;
}

const updates = Array.from({ length: DISTINCT }, (_, k) => makeUpdate(k + 1));
const examples = Array.from({ length: CLIENTS }, (_, k) => 1 + ((k * 7919) % 60_000));

function timeMs(action: () => void): number {
  const start = process.hrtime.bigint();
  action();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

const perCoordinateNs = (ms: number) => (ms * 1e6) / (CLIENTS * PARAMS);
const median = (values: readonly number[]) => {
  const sorted = values.slice().sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
};

// Warm-up: each fold compiled by the optimising compiler before it is timed.
{
  const small = 20_000;
  const warm = Array.from({ length: 4 }, (_, k) =>
    (updates[k % DISTINCT] as Float32Array).subarray(0, small),
  );
  const float64Warm = new WeightedSum(small);
  const exactWarm = new ExactWeightedSum(small);
  const copyWarm = new Float32Array(small);
  for (let k = 0; k < 50; k++) {
    const values = warm[k % warm.length] as Float32Array;
    copyWarm.set(values);
    float64Warm.add(values, 1 + k);
    exactWarm.add(values, 1 + k);
  }
}

const target = new Float32Array(PARAMS);
const times = { memcpy: [] as number[], float64Fold: [] as number[], exactFold: [] as number[] };
let float64 = new WeightedSum(PARAMS);
let exact = new ExactWeightedSum(PARAMS);
let exactResidentBytes = 0;
for (let repeat = 0; repeat < REPEATS; repeat++) {
  // memcpy: the same bytes copied into one buffer, once per update.
  times.memcpy.push(
    timeMs(() => {
      for (let k = 0; k < CLIENTS; k++) target.set(updates[k % DISTINCT] as Float32Array);
    }),
  );
  times.float64Fold.push(
    timeMs(() => {
      float64 = new WeightedSum(PARAMS);
      for (let k = 0; k < CLIENTS; k++)
        float64.add(updates[k % DISTINCT] as Float32Array, examples[k] as number);
    }),
  );
  const rssBefore = process.memoryUsage().rss;
  times.exactFold.push(
    timeMs(() => {
      exact = new ExactWeightedSum(PARAMS);
      for (let k = 0; k < CLIENTS; k++)
        exact.add(updates[k % DISTINCT] as Float32Array, examples[k] as number);
    }),
  );
  if (repeat === 0) exactResidentBytes = process.memoryUsage().rss - rssBefore;
}
const memcpyMs = median(times.memcpy);
const float64FoldMs = median(times.float64Fold);
const exactFoldMs = median(times.exactFold);

let float64Mean: Float32Array = new Float32Array(0);
const float64MeanMs = timeMs(() => {
  float64Mean = float64.mean();
});
let exactMean: Float32Array = new Float32Array(0);
const exactMeanMs = timeMs(() => {
  exactMean = exact.mean();
});
const exactMean64Ms = timeMs(() => {
  exact.mean64();
});
let partial: Uint8Array = new Uint8Array(0);
const encodeMs = timeMs(() => {
  partial = exact.toBytes();
});
const owner = new ExactWeightedSum(PARAMS);
const decodeMergeMs = timeMs(() => {
  owner.merge(ExactWeightedSum.fromBytes(partial, PARAMS));
});

let differing = 0;
for (let i = 0; i < PARAMS; i++) if (float64Mean[i] !== exactMean[i]) differing++;

const loadAtEnd = loadavg();
const stateBytes = { float64: 8 * PARAMS, exactAllocated: 88 * PARAMS, exactResidentBytes };
const rows = [
  ['memcpy (Float32Array set)', times.memcpy],
  ['float64 sequential fold (WeightedSum.add)', times.float64Fold],
  ['exact fold (ExactWeightedSum.add)', times.exactFold],
] as const;
console.log(
  `\n| fold (median of ${REPEATS} rounds) | ms a round | ns / coordinate | range | x memcpy | x float64 |\n| --- | ---: | ---: | ---: | ---: | ---: |`,
);
for (const [name, ms] of rows) {
  const ns = ms.map(perCoordinateNs);
  console.log(
    `| ${name} | ${median(ms).toFixed(0)} | ${median(ns).toFixed(2)} | ${Math.min(...ns).toFixed(2)}-${Math.max(...ns).toFixed(2)} | ${(median(ms) / memcpyMs).toFixed(1)} | ${(median(ms) / float64FoldMs).toFixed(2)} |`,
  );
}
const mb = (bytes: number) => (bytes / 1e6).toFixed(0);
console.log(
  `\nstate: float64 ${mb(stateBytes.float64)} MB; exact ${mb(stateBytes.exactAllocated)} MB allocated (11 limbs of 8 bytes a parameter), RSS grew ${mb(exactResidentBytes)} MB over its first round (the limbs the folds wrote)`,
);
console.log(
  `\nfinish: float64 mean ${float64MeanMs.toFixed(0)} ms; exact mean (float32, rounded once) ${exactMeanMs.toFixed(0)} ms; exact mean64 ${exactMean64Ms.toFixed(0)} ms`,
);
console.log(
  `partial: ${(partial.length / 2 ** 20).toFixed(1)} MiB (${(partial.length / PARAMS).toFixed(1)} bytes a parameter), encode ${encodeMs.toFixed(0)} ms, decode + merge ${decodeMergeMs.toFixed(0)} ms`,
);
console.log(`exact vs float64 means: ${differing} of ${PARAMS} coordinates differ (by rounding)`);
console.log(`load average at end ${loadAtEnd.map((l) => l.toFixed(2)).join(' ')}`);

writeFileSync(
  args.out,
  `${JSON.stringify(
    {
      date: new Date().toISOString(),
      cpu: cpus()[0]?.model,
      node: process.version,
      loadAverageStart: loadAtStart,
      loadAverageEnd: loadAtEnd,
      clients: CLIENTS,
      params: PARAMS,
      distinctUpdates: DISTINCT,
      repeats: REPEATS,
      note: 'each fold warmed up first; every round into a fresh accumulator; medians of interleaved rounds',
      ms: {
        memcpy: memcpyMs,
        float64Fold: float64FoldMs,
        exactFold: exactFoldMs,
        float64Mean: float64MeanMs,
        exactMean: exactMeanMs,
        exactMean64: exactMean64Ms,
        partialEncode: encodeMs,
        partialDecodeMerge: decodeMergeMs,
      },
      nsPerCoordinate: {
        memcpy: perCoordinateNs(memcpyMs),
        float64Fold: perCoordinateNs(float64FoldMs),
        exactFold: perCoordinateNs(exactFoldMs),
      },
      nsPerCoordinateEachRound: {
        memcpy: times.memcpy.map(perCoordinateNs),
        float64Fold: times.float64Fold.map(perCoordinateNs),
        exactFold: times.exactFold.map(perCoordinateNs),
      },
      exactOverFloat64: exactFoldMs / float64FoldMs,
      stateBytes,
      partialBytes: partial.length,
      coordinatesDiffering: differing,
    },
    null,
    2,
  )}\n`,
);
