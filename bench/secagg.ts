/**
 * What secure aggregation costs per round: bytes on the wire (msgpackr-encoded messages, as the
 * engine will send them) and time, per client and for the server, at 10, 50 and 100 clients on
 * the 2NN (199,210 parameters) and the CNN (1,663,370), next to plain FedAvg (one float32 update
 * up per client, a weighted sum on the server). Each configuration runs once with no drop-out and
 * once with 10% of the clients dropping after sharing (the server then reconstructs their keys
 * and removes their pairwise masks: its expensive case). All clients run one after another in
 * this process, so "client ms" is the mean over the n selected clients of one client's own work
 * (as are the byte columns: a client that dropped sends less).
 *
 *   npm run bench:secagg                                                     # the full table
 *   npm run bench:secagg -- --tiny                                           # a smoke run
 *   npm run bench:secagg -- --clients=10,50 --params=199210                  # a subset
 *
 * Writes bench/results/secagg.json (not with --tiny).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import {
  type DropoutSchedule,
  SECAGG_PROTOCOL,
  type SecAggInput,
  type SecAggSetup,
  type SimulationResult,
  simulateRound,
} from '@tessera/secagg';
import { Packr } from 'msgpackr';

const argument = (name: string) =>
  process.argv.find((arg) => arg.startsWith(`--${name}=`))?.split('=')[1];
const tiny = process.argv.includes('--tiny');
const clientCounts = tiny ? [4] : (argument('clients') ?? '10,50,100').split(',').map(Number);
const parameterCounts = tiny
  ? [1000]
  : (argument('params') ?? '199210,1663370').split(',').map(Number);

const packr = new Packr({ useRecords: false });
const wireBytes = (message: unknown) => packr.pack(message).length;

function setupFor(n: number, parameterCount: number): SecAggSetup {
  return {
    protocol: SECAGG_PROTOCOL,
    roundId: `bench/${n}/${parameterCount}`,
    curve: 'X25519',
    clientIds: Array.from({ length: n }, (_, i) => `client-${String(i).padStart(3, '0')}`),
    threshold: Math.floor((2 * n) / 3) + 1,
    parameterCount,
    clipRange: 1,
    maxExamplesPerClient: 10_000,
  };
}

function inputsFor(setup: SecAggSetup): Map<string, SecAggInput> {
  const inputs = new Map<string, SecAggInput>();
  setup.clientIds.forEach((id, k) => {
    const weights = new Float32Array(setup.parameterCount);
    for (let i = 0; i < weights.length; i++) weights[i] = Math.sin(i * 0.001 + k) * 0.1;
    inputs.set(id, { weights, numExamples: 100 + k });
  });
  return inputs;
}

/** Plain FedAvg's server work for the same round: Σ n_k·w_k / Σ n_k over float32 updates. */
function plainFedAvgMs(inputs: Map<string, SecAggInput>, parameterCount: number): number {
  const started = performance.now();
  const sum = new Float64Array(parameterCount);
  let examples = 0;
  for (const { weights, numExamples } of inputs.values()) {
    examples += numExamples;
    for (let i = 0; i < parameterCount; i++)
      sum[i] = (sum[i] as number) + numExamples * (weights[i] as number);
  }
  const average = new Float32Array(parameterCount);
  for (let i = 0; i < parameterCount; i++) average[i] = (sum[i] as number) / examples;
  return performance.now() - started;
}

interface Row {
  clients: number;
  parameters: number;
  threshold: number;
  dropped: number;
  upBytesPerClient: number;
  downBytesPerClient: number;
  plainUpBytesPerClient: number;
  clientMsPerClient: number;
  serverMs: number;
  plainServerMs: number;
  maxAbsError: number;
}

function summarise(
  setup: SecAggSetup,
  dropped: number,
  run: SimulationResult,
  plainMs: number,
): Row {
  const steps = Object.values(run.steps);
  const n = setup.clientIds.length;
  const total = (pick: (step: (typeof steps)[number]) => number) =>
    steps.reduce((sum, step) => sum + pick(step), 0);
  return {
    clients: n,
    parameters: setup.parameterCount,
    threshold: setup.threshold,
    dropped,
    upBytesPerClient: Math.round(total((step) => step.upBytes) / n),
    downBytesPerClient: Math.round(total((step) => step.downBytes) / n),
    // A plain FedAvg update: the float32 weights (plus a few bytes of metadata, left out).
    plainUpBytesPerClient: setup.parameterCount * 4,
    clientMsPerClient: Math.round(total((step) => step.clientMs) / n),
    serverMs: Math.round(total((step) => step.serverMs)),
    plainServerMs: Math.round(plainMs),
    maxAbsError: run.result.maxAbsError,
  };
}

console.log(
  `secagg bench on ${cpus()[0]?.model ?? 'unknown CPU'} (${cpus().length} cores), Node ${process.version}`,
);
const rows: Row[] = [];
for (const parameterCount of parameterCounts) {
  for (const n of clientCounts) {
    const setup = setupFor(n, parameterCount);
    const inputs = inputsFor(setup);
    const plainMs = plainFedAvgMs(inputs, parameterCount);
    const droppedCount = Math.max(1, Math.floor(n / 10));
    const schedules: [number, DropoutSchedule][] = [
      [0, {}],
      [droppedCount, { afterSharing: setup.clientIds.slice(0, droppedCount) }],
    ];
    for (const [dropped, dropouts] of schedules) {
      const run = await simulateRound(setup, inputs, dropouts, {
        measure: wireBytes,
        recordView: false,
      });
      const row = summarise(setup, dropped, run, plainMs);
      rows.push(row);
      console.log(JSON.stringify(row));
    }
  }
}

const header = [
  'clients',
  'params',
  't',
  'dropped',
  'up B/client',
  'down B/client',
  'plain up B',
  'client ms',
  'server ms',
  'plain server ms',
];
console.log(`\n| ${header.join(' | ')} |\n|${header.map(() => '---').join('|')}|`);
for (const row of rows) {
  console.log(
    `| ${[
      row.clients,
      row.parameters.toLocaleString('en'),
      row.threshold,
      row.dropped,
      row.upBytesPerClient.toLocaleString('en'),
      row.downBytesPerClient.toLocaleString('en'),
      row.plainUpBytesPerClient.toLocaleString('en'),
      row.clientMsPerClient,
      row.serverMs,
      row.plainServerMs,
    ].join(' | ')} |`,
  );
}
if (!tiny) {
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(
    'bench/results/secagg.json',
    `${JSON.stringify({ cpu: cpus()[0]?.model, cores: cpus().length, node: process.version, rows }, null, 2)}\n`,
  );
}
