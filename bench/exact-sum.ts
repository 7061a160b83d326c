/**
 * What the exact accumulator (ExactWeightedSum) costs next to today's float64 sequential fold
 * (WeightedSum), per coordinate, as a multiple of copying the same bytes (memcpy: a
 * Float32Array `set`) in the same run: `--clients` updates of `--params` parameters (defaults:
 * 100 x 1,663,370, the fedavg-cnn). Also the finish (float32 mean, float64 mean), a partial's
 * size as bytes and the time to encode, decode and merge it. Prints a table and writes
 * bench/results/exact-sum.json.
 *
 *   node --import tsx --conditions=@tessera/source bench/exact-sum.ts
 *   ... bench/exact-sum.ts --clients 20 --params 100000
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
    out: {
      type: 'string',
      default: join(fileURLToPath(new URL('.', import.meta.url)), 'results', 'exact-sum.json'),
    },
  },
});
const CLIENTS = Number(args.clients);
const PARAMS = Number(args.params);
const DISTINCT = Math.min(Number(args.distinct), CLIENTS);

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

// memcpy: the same bytes copied into one buffer, once per update.
const target = new Float32Array(PARAMS);
const memcpyMs = timeMs(() => {
  for (let k = 0; k < CLIENTS; k++) target.set(updates[k % DISTINCT] as Float32Array);
});

const float64 = new WeightedSum(PARAMS);
const float64FoldMs = timeMs(() => {
  for (let k = 0; k < CLIENTS; k++)
    float64.add(updates[k % DISTINCT] as Float32Array, examples[k] as number);
});
let float64Mean: Float32Array = new Float32Array(0);
const float64MeanMs = timeMs(() => {
  float64Mean = float64.mean();
});

const exact = new ExactWeightedSum(PARAMS);
const exactFoldMs = timeMs(() => {
  for (let k = 0; k < CLIENTS; k++)
    exact.add(updates[k % DISTINCT] as Float32Array, examples[k] as number);
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
const rows = [
  ['memcpy (Float32Array set)', memcpyMs, 1],
  ['float64 sequential fold (WeightedSum.add)', float64FoldMs, float64FoldMs / memcpyMs],
  ['exact fold (ExactWeightedSum.add)', exactFoldMs, exactFoldMs / memcpyMs],
] as const;
console.log('\n| fold | total ms | ns / coordinate | x memcpy |\n| --- | ---: | ---: | ---: |');
for (const [name, ms, ratio] of rows) {
  console.log(
    `| ${name} | ${ms.toFixed(0)} | ${perCoordinateNs(ms).toFixed(2)} | ${ratio.toFixed(1)} |`,
  );
}
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
      partialBytes: partial.length,
      coordinatesDiffering: differing,
    },
    null,
    2,
  )}\n`,
);
