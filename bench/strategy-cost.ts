/**
 * What one round of each aggregation strategy costs the coordinator: wall time from the first
 * `add` to `finish()`, and the memory the round allocates beyond the updates themselves, for
 * `--clients` updates of `--params` parameters (defaults: 100 x 1,663,370, the fedavg-cnn).
 * Prints a table and writes bench/results/strategy-cost.json.
 *
 *   node --expose-gc --import tsx --conditions=@tessera/source bench/strategy-cost.ts
 *   ... bench/strategy-cost.ts --clients 10 --params 100000 --rounds 1 --strategies fedavg,krum
 *
 * The updates (clients x params x 4 bytes: 665 MB at the defaults) are made once and shared by
 * every strategy. Rules that need all updates at once (median, trimmed mean, Krum, Bulyan,
 * centered clipping past one iteration) keep references to them, so what they hold is listed
 * apart as `holds updates`: in the coordinator those are the decoded update arrays, kept for
 * the round instead of being dropped after `add`. Each strategy runs `--rounds` rounds from the
 * previous result, so a stateful one's later rounds carry its state; the time is the median.
 */
import { writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  createStrategy,
  SCAFFOLD_MAX_PARAMETERS,
  STRATEGY_NAMES,
  type TrainUpdate,
} from '@tessera/aggregation';

const { values: args } = parseArgs({
  options: {
    clients: { type: 'string', default: '100' },
    params: { type: 'string', default: '1663370' },
    rounds: { type: 'string', default: '3' },
    strategies: { type: 'string', default: STRATEGY_NAMES.join(',') },
    out: {
      type: 'string',
      default: join(fileURLToPath(new URL('.', import.meta.url)), 'results', 'strategy-cost.json'),
    },
  },
});
const CLIENTS = Number(args.clients);
const PARAMS = Number(args.params);
const ROUNDS = Number(args.rounds);
/** SCAFFOLD refuses models whose two vectors do not fit one frame: say so rather than crash. */
const NAMES = args.strategies.split(',').filter((name) => {
  if (name !== 'scaffold' || PARAMS <= SCAFFOLD_MAX_PARAMETERS) return true;
  console.log(
    `scaffold: not measured, it trains models of up to ${SCAFFOLD_MAX_PARAMETERS} parameters (--params ${SCAFFOLD_MAX_PARAMETERS} --strategies scaffold measures it there)`,
  );
  return false;
});

/** Options that let every rule run on CLIENTS updates (Bulyan needs n >= 4f + 3). */
const OPTIONS: Record<string, Record<string, unknown>> = {
  krum: { f: Math.max(0, Math.min(10, Math.floor((CLIENTS - 3) / 2))) },
  'multi-krum': { f: Math.max(0, Math.min(10, Math.floor((CLIENTS - 3) / 2))) },
  bulyan: { f: Math.max(0, Math.min(10, Math.floor((CLIENTS - 3) / 4))) },
  // dp-fedavg has no defaults (a privacy parameter is chosen, never implied): a typical one.
  'dp-fedavg': { noiseMultiplier: 1, clipNorm: 1, expectedClientsPerRound: CLIENTS },
  scaffold: { clientCount: CLIENTS },
};
/** The rules that keep every update of the round (see packages/aggregation). */
const BUFFERING = new Set(['fedmedian', 'trimmed-mean', 'krum', 'multi-krum', 'bulyan']);

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) console.warn('run node with --expose-gc for the memory column; it reads 0 without');

function updatesAround(global: Float32Array): TrainUpdate[] {
  return Array.from({ length: CLIENTS }, (_, k) => {
    const weights = new Float32Array(PARAMS);
    for (let i = 0; i < PARAMS; i++)
      weights[i] = (global[i] as number) + 0.01 * Math.sin(i * 0.37 + k * 1.3);
    return { clientId: `c${k}`, numExamples: 300 + k, weights, metrics: { loss: 1 } };
  });
}

const initial = new Float32Array(PARAMS);
for (let i = 0; i < PARAMS; i++) initial[i] = Math.cos(i) * 0.05;
const updates = updatesAround(initial);
/** SCAFFOLD's updates: the same models, each with a Δc_i (made only when scaffold is measured). */
const scaffoldUpdates = NAMES.includes('scaffold')
  ? updates.map((update, k) => {
      const controlDelta = new Float32Array(PARAMS);
      for (let i = 0; i < PARAMS; i++) controlDelta[i] = 0.001 * Math.cos(i * 0.11 + k);
      return { ...update, controlDelta };
    })
  : [];

/** What the figures were measured on: the machine is shared, so its load goes with them. */
const machine = {
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: availableParallelism(),
  node: process.version,
  loadBefore: loadavg().map((x) => Number(x.toFixed(2))),
};
console.log(
  `${CLIENTS} clients x ${PARAMS} parameters, ${ROUNDS} rounds each; ${machine.cpu}, ${machine.cores} cores, node ${machine.node}; load average ${machine.loadBefore.join(' ')}`,
);

const mb = (bytes: number) => bytes / (1 << 20);
const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;

interface Row {
  strategy: string;
  options: Record<string, unknown>;
  msPerRound: number;
  extraMb: number;
  holdsUpdatesMb: number;
  stateMb: number;
}
const rows: Row[] = [];

for (const name of NAMES) {
  const options = OPTIONS[name] ?? {};
  const strategy = createStrategy(name, options);
  const times: number[] = [];
  let extra = 0;
  let global: Float32Array = initial;
  for (let round = 1; round <= ROUNDS; round++) {
    gc?.();
    const before = process.memoryUsage().arrayBuffers;
    const start = process.hrtime.bigint();
    const aggregator = strategy.beginRound(round, global);
    for (const update of name === 'scaffold' ? scaffoldUpdates : updates) aggregator.add(update);
    const result = aggregator.finish();
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
    // What is still allocated with the result and the aggregator alive (the round's own sums,
    // the new model, the state), before either is dropped.
    extra = Math.max(extra, process.memoryUsage().arrayBuffers - before);
    global = result.weights ?? global;
  }
  const state = strategy.state();
  const stateBytes = state
    ? Object.values(state.arrays).reduce((sum, array) => sum + array.byteLength, 0)
    : 0;
  rows.push({
    strategy: name,
    options: { ...strategy.options },
    msPerRound: median(times),
    extraMb: mb(extra),
    holdsUpdatesMb:
      BUFFERING.has(name) ||
      (name === 'centered-clipping' && Number(strategy.options['iterations']) > 1)
        ? mb(CLIENTS * PARAMS * 4)
        : 0,
    stateMb: mb(stateBytes),
  });
  const row = rows.at(-1) as Row;
  console.log(
    `${name.padEnd(20)} ${row.msPerRound.toFixed(0).padStart(8)} ms  +${row.extraMb.toFixed(1).padStart(7)} MB  holds ${row.holdsUpdatesMb.toFixed(0).padStart(5)} MB  state ${row.stateMb.toFixed(1)} MB`,
  );
}

const loadAfter = loadavg().map((x) => Number(x.toFixed(2)));
console.log(`\nload average after: ${loadAfter.join(' ')}\n`);
console.log('| strategy | ms per round (median) | round allocates | holds the updates | state |');
console.log('| --- | ---: | ---: | ---: | ---: |');
for (const row of rows) {
  console.log(
    `| ${row.strategy} | ${row.msPerRound.toFixed(0)} | ${row.extraMb.toFixed(1)} MB | ${row.holdsUpdatesMb > 0 ? `${row.holdsUpdatesMb.toFixed(0)} MB` : '—'} | ${row.stateMb > 0 ? `${row.stateMb.toFixed(1)} MB` : '—'} |`,
  );
}
const out = args.out;
writeFileSync(
  out,
  `${JSON.stringify({ clients: CLIENTS, params: PARAMS, rounds: ROUNDS, machine: { ...machine, loadAfter }, rows }, null, 2)}\n`,
);
console.log(`wrote ${out}`);
