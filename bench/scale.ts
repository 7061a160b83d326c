/**
 * Several coordinators under load (issue 16, item 4). Load comes from separate processes
 * (bench/scale-load.ts) speaking the real protocol. For one and for two coordinator processes
 * (on one PostgreSQL and, for two, one Redis with a prefix of this run's own):
 *
 *  - idle: `--clients N` authenticated connections held, spread evenly over the processes;
 *    each process's RSS per connection (RSS after minus RSS before, over its connections) and
 *    event-loop lag p99 (its /metrics, prom-client's monitorEventLoopDelay);
 *  - rounds: a fedavg-2nn run (199,210 parameters) with every client in every round
 *    (minClients N), the virtual clients answering `train` at once; each round's time from
 *    `round started` to `round committed` in the owner's log (commit included, no evaluation),
 *    and the owner's /healthz latency during the rounds (asked every 20 ms from this process,
 *    requests overlapping, so a stall shows in every request it holds);
 *
 * next to what the same round's bytes cost to decode (the project's MessagePack parser,
 * pre-scan included) and fold (bytesToWeights + the float64 FedAvg sum) on one core in this
 * process: the floor of a round that one process aggregates. Prints the machine, its load
 * average, a table; writes bench/results/scale.json.
 *
 *   TEST_DATABASE_URL=postgresql://... npm run bench:scale -- --clients 1000 --rounds 3
 *   (--processes 1,2  --load-processes 2 per coordinator  --redis redis://127.0.0.1:6379
 *    --idle-only: connections only, no rounds;  --quick: 40 clients, 1 round, for the smoke
 *    test;  --out FILE instead of bench/results/scale.json)
 *
 * 10,000 connections need as many file descriptors in the coordinator process: the bench
 * checks `ulimit -n` first (raise it with `ulimit -n 65536` in the shell that runs it).
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { WeightedSum } from '@tessera/aggregation';
import { modelSpec } from '@tessera/ml';
import {
  bytesToWeights,
  createMsgpackParser,
  encodePacket,
  type Packet,
  PacketType,
  weightsToBytes,
} from '@tessera/protocol';
import {
  adminApi,
  type CoordinatorProcess,
  freePort,
  startCoordinatorProcess,
} from '../test/coordinator-processes.js';
import { createTestSchema } from '../test/tcp-proxy.js';

const { values: args } = parseArgs({
  options: {
    clients: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '3' },
    processes: { type: 'string', default: '1,2' },
    'load-processes': { type: 'string', default: '2' },
    'database-url': { type: 'string' },
    redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
    'idle-only': { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});
const QUICK = args.quick === true;
const IDLE_ONLY = args['idle-only'] === true;
const CLIENTS = QUICK ? 40 : Number(args.clients);
const ROUNDS = QUICK ? 1 : Number(args.rounds);
const LOADS_PER_COORDINATOR = Number(args['load-processes']);
const PROCESS_COUNTS = (args.processes ?? '1,2').split(',').map(Number);
const { TEST_DATABASE_URL: testDatabaseUrl } = process.env;
const databaseUrl = args['database-url'] ?? testDatabaseUrl;
if (!databaseUrl) throw new Error('needs PostgreSQL: --database-url or TEST_DATABASE_URL');
const ADMIN_TOKEN = `scale-${randomUUID()}`;
const MODEL = 'fedavg-2nn';
const PARAMS = modelSpec(MODEL).paramCount;
const loadCli = fileURLToPath(new URL('./scale-load.ts', import.meta.url));
const api = adminApi(ADMIN_TOKEN);

const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;
/** Nearest-rank quantile. */
const quantile = (values: number[], q: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? Number.NaN;
};

/** The coordinator's file descriptor limit is this shell's (it inherits it). */
function checkFileLimit(): void {
  const limit = Number(execFileSync('sh', ['-c', 'ulimit -n']).toString().trim());
  // Each process holds at most all the connections, plus its database pool, Redis, logs.
  if (Number.isFinite(limit) && limit < CLIENTS + 512) {
    throw new Error(
      `ulimit -n is ${limit}: too few file descriptors for ${CLIENTS} connections; run \`ulimit -n ${Math.max(65_536, CLIENTS * 2)}\` first`,
    );
  }
}

/** Runs `work` on at most `limit` items at once, in order of the items. */
async function inParallel<T, R>(items: T[], limit: number, work: (item: T) => Promise<R>) {
  const results = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const index = next++;
        results[index] = await work(items[index] as T);
      }
    }),
  );
  return results;
}

/**
 * Asks `url`/healthz every `intervalMs` until stopped, one request at a time as a health
 * checker does (a stall of S ms shows as one answer of up to S ms; requests on a fixed
 * schedule would pile up behind a slow coordinator and measure the pile).
 */
function probeHealthz(url: string, intervalMs = 20) {
  const latencies: number[] = [];
  let failures = 0;
  let stopped = false;
  const probe = async () => {
    while (!stopped) {
      const start = performance.now();
      try {
        const response = await fetch(`${url}/healthz`);
        await response.arrayBuffer();
        latencies.push(performance.now() - start);
      } catch {
        failures += 1;
      }
      const wait = start + intervalMs - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
  };
  const running = probe();
  return {
    stop: async () => {
      stopped = true;
      await running;
      return { latencies, failures };
    },
  };
}

/**
 * One scrape of a coordinator's /metrics: a reading of each series found by the end of its
 * name. One scrape for all: prom-client resets the event-loop delay histogram at each scrape.
 */
async function scrape(on: CoordinatorProcess): Promise<(suffix: string) => number> {
  const response = await fetch(`${on.url}/metrics`, {
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  const text = await response.text();
  return (suffix) => gauge(text, on, suffix);
}

function gauge(text: string, on: CoordinatorProcess, suffix: string): number {
  const line = text
    .split('\n')
    .find((l) => !l.startsWith('#') && l.split(/[ {]/)[0]?.endsWith(suffix));
  if (!line) throw new Error(`no metric *${suffix} at ${on.url}/metrics`);
  return Number(line.split(' ').at(-1));
}

interface Figures {
  processes: number;
  clients: number;
  rssPerConnectionKiB: number[];
  eventLoopLagP99Ms: number[];
  /** Seconds to get every connection welcomed. */
  connectSeconds: number;
  roundMs: number[];
  /** The owner's /healthz during the rounds (null with --idle-only). */
  healthz: {
    samples: number;
    failures: number;
    p50Ms: number;
    p99Ms: number;
    maxMs: number;
  } | null;
}

async function measure(processes: number, cleanups: Array<() => unknown>): Promise<Figures> {
  const schema = await createTestSchema(databaseUrl as string);
  cleanups.push(() => schema.drop());
  const prefix = `bench:scale:${randomUUID()}:`;
  const coordinators: CoordinatorProcess[] = [];
  for (let k = 0; k < processes; k++) {
    coordinators.push(
      await startCoordinatorProcess({
        name: `C${k}`,
        port: await freePort(),
        databaseUrl: schema.url,
        adminToken: ADMIN_TOKEN,
        args: [
          ...(processes > 1 ? ['--redis', args.redis as string, '--redis-prefix', prefix] : []),
          ...['--log-level', 'info'],
        ],
        cleanups,
      }),
    );
  }
  const first = coordinators[0] as CoordinatorProcess;
  const federation = await api<{ id: string }>(first, 'POST', '/federations', { name: 'scale' });
  // Sixteen requests at a time: issuing 10,000 tokens one after the other took minutes.
  const tokens = await inParallel(
    Array.from({ length: CLIENTS }, (_, k) => k),
    16,
    async (k) =>
      (
        await api<{ token: string }>(first, 'POST', `/federations/${federation.id}/clients`, {
          organisation: `org-${k}`,
        })
      ).token,
  );
  const rssBefore = (await Promise.all(coordinators.map(scrape))).map((read) =>
    read('resident_memory_bytes'),
  );

  // Tokens dealt round-robin: coordinator k gets every processes-th, split over its loads.
  const dir = mkdtempSync(join(tmpdir(), 'tessera-scale-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const connected: Array<Promise<void>> = [];
  const connectStart = performance.now();
  const perCoordinator = coordinators.map(() => 0);
  const loads = processes * LOADS_PER_COORDINATOR;
  for (let l = 0; l < loads; l++) {
    const target = l % processes;
    const share = tokens.filter((_, k) => k % loads === l);
    perCoordinator[target] = (perCoordinator[target] ?? 0) + share.length;
    const file = join(dir, `tokens-${l}.json`);
    writeFileSync(file, JSON.stringify(share));
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '--conditions=@tessera/source',
        loadCli,
        (coordinators[target] as CoordinatorProcess).url,
        file,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    cleanups.push(() => {
      child.kill('SIGTERM');
    });
    connected.push(
      new Promise<void>((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`load process exited with ${code}`)));
        createInterface({ input: child.stdout }).on('line', (line) => {
          if (line.includes('"connected"')) resolve();
          // A refused handshake or a dropped connection: the figures would not be for N.
          else if (line.includes('"error"') || line.includes('"disconnected"'))
            console.log(`load process ${l}: ${line}`);
        });
      }),
    );
  }
  await Promise.all(connected);
  const connectSeconds = (performance.now() - connectStart) / 1000;
  // This scrape starts the lag window (prom-client resets it): 5 s of idle connections.
  await Promise.all(coordinators.map(scrape));
  await new Promise((resolve) => setTimeout(resolve, 5_000));
  const idle = await Promise.all(coordinators.map(scrape));
  const rssAfter = idle.map((read) => read('resident_memory_bytes'));
  const lag = idle.map((read) => read('eventloop_lag_p99_seconds'));
  const idleFigures = {
    processes,
    clients: CLIENTS,
    rssPerConnectionKiB: rssAfter.map(
      (after, k) => (after - (rssBefore[k] ?? 0)) / 1024 / Math.max(1, perCoordinator[k] ?? 1),
    ),
    eventLoopLagP99Ms: lag.map((seconds) => seconds * 1000),
    connectSeconds,
  };
  if (IDLE_ONLY) return { ...idleFigures, roundMs: [], healthz: null };

  const run = await api<{ id: string }>(first, 'POST', '/runs', {
    model: MODEL,
    federationId: federation.id,
    rounds: ROUNDS,
    minClients: CLIENTS,
    roundDeadlineMs: 600_000,
    localEpochs: 1,
    batchSize: 10,
    learningRate: 0.05,
    seed: 1,
  });
  const probe = probeHealthz(first.url);
  await api(first, 'POST', `/runs/${run.id}/start`);
  const logTimes = (message: string) =>
    first.lines
      .filter((line) => line.includes(`"msg":"${message}"`) && line.includes(run.id))
      .map((line) => Date.parse(/"time":"([^"]+)"/.exec(line)?.[1] ?? ''));
  const started = Date.now();
  while (logTimes('round committed').length < ROUNDS) {
    if (Date.now() - started > 30 * 60_000)
      throw new Error(
        `rounds did not finish in 30 minutes (log: ${first.lines.slice(-5).join(' | ')})`,
      );
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const { latencies, failures } = await probe.stop();
  const starts = logTimes('round started');
  const commits = logTimes('round committed');
  return {
    ...idleFigures,
    roundMs: commits.map((commit, k) => commit - (starts[k] ?? Number.NaN)),
    healthz: {
      samples: latencies.length,
      failures,
      p50Ms: quantile(latencies, 0.5),
      p99Ms: quantile(latencies, 0.99),
      maxMs: Math.max(...latencies),
    },
  };
}

/** Decoding and folding one round's updates (CLIENTS of them) on one core, here. */
function decodeAndFoldMs(): number {
  const weights = new Float32Array(PARAMS);
  for (let i = 0; i < PARAMS; i++) weights[i] = Math.sin(i) * 0.05;
  const frame = encodePacket({
    type: PacketType.EVENT,
    nsp: '/',
    id: 1,
    data: [
      'update',
      {
        status: 'ok',
        runId: 'run',
        round: 1,
        weights: Uint8Array.from(weightsToBytes(weights)),
        numExamples: 10,
        durationMs: 1,
        metrics: {},
      },
    ],
  });
  const parser = createMsgpackParser({ maxFrameBytes: 1 << 30 });
  const once = () => {
    const sum = new WeightedSum(PARAMS);
    for (let k = 0; k < CLIENTS; k++) {
      const decoder = new parser.Decoder();
      let packet: Packet | undefined;
      decoder.on('decoded', (decoded: Packet) => {
        packet = decoded;
      });
      decoder.add(frame);
      if (!packet) throw new Error('no packet decoded');
      const update = (packet.data as [string, { weights: Uint8Array }])[1];
      sum.add(bytesToWeights(update.weights, PARAMS), 10);
    }
    return sum.mean();
  };
  once();
  const samples: number[] = [];
  for (let r = 0; r < 3; r++) {
    const start = process.hrtime.bigint();
    once();
    samples.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  return median(samples);
}

const cleanups: Array<() => unknown> = [];
const results: Figures[] = [];
checkFileLimit();
try {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  console.log(
    `bench:scale on ${cpu} x ${cpus().length}, Node ${process.version}; load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  console.log(
    `${CLIENTS} virtual clients, ${MODEL} (${PARAMS} parameters), ${IDLE_ONLY ? 'idle connections only' : `${ROUNDS} rounds`}\n`,
  );
  for (const processes of PROCESS_COUNTS) {
    const figures = await measure(processes, cleanups);
    results.push(figures);
    console.log(`measured ${processes} coordinator(s): ${JSON.stringify(figures)}`);
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
  const fold = IDLE_ONLY ? null : decodeAndFoldMs();
  const rows = results.map((r) => ({
    coordinators: r.processes,
    clients: r.clients,
    'connect s': r.connectSeconds.toFixed(1),
    'RSS/connection KiB': r.rssPerConnectionKiB.map((v) => v.toFixed(0)).join(' / '),
    'loop lag p99 ms (idle)': r.eventLoopLagP99Ms.map((v) => v.toFixed(1)).join(' / '),
    ...(IDLE_ONLY
      ? {}
      : {
          'round ms (median)': median(r.roundMs).toFixed(0),
          'rounds ms': r.roundMs.map((v) => v.toFixed(0)).join(', '),
          '/healthz p50 / p99 / max ms (rounds)': r.healthz
            ? `${r.healthz.p50Ms.toFixed(1)} / ${r.healthz.p99Ms.toFixed(1)} / ${r.healthz.maxMs.toFixed(0)}`
            : '-',
        }),
  }));
  console.table(rows);
  if (fold !== null)
    console.log(
      `decode + fold of the same ${CLIENTS} updates on one core (this process): ${fold.toFixed(0)} ms`,
    );
  console.log(
    `load average after: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  const out = args.out ?? fileURLToPath(new URL('./results/scale.json', import.meta.url));
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(
    out,
    `${JSON.stringify({ cpu, cores: cpus().length, node: process.version, loadavg: loadavg(), model: MODEL, params: PARAMS, rounds: ROUNDS, quick: QUICK, idleOnly: IDLE_ONLY, results, decodeAndFoldMs: fold }, null, 2)}\n`,
  );
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup();
}
