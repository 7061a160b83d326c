/**
 * What one fedavg-cnn update (1,663,370 parameters, 6.65 MB) costs the coordinator, step by
 * step, each as a multiple of a plain memcpy of the same bytes measured in the same run; then
 * the event-loop lag of a real coordinator (port 0, PGlite) while client processes (the built
 * node client) send it such updates. Prints a table and writes bench/results/coordinator.json.
 *
 *   npm run bench:coordinator
 *
 *   npm run bench:coordinator -- --repeats 31 --clients 4 --rounds 3   (the defaults)
 *   npm run bench:coordinator -- --database-url postgresql://...       (PostgreSQL, not PGlite)
 *
 * Updates received = clients x rounds (every client is in every round).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { WeightedSum } from '@tessera/aggregation';
import { Coordinator, createLogger } from '@tessera/coordinator';
import { openDatabase } from '@tessera/db';
import {
  bytesToWeights,
  createMsgpackParser,
  decodeWeights,
  encodePacket,
  firstNonFinite,
  type Packet,
  PacketType,
  PEER_FRAME_LIMITS,
  scanMsgpack,
  sha256Hex,
  weightsToBytes,
} from '@tessera/protocol';

const PARAMS = 1_663_370;
const { values: args } = parseArgs({
  options: {
    repeats: { type: 'string', default: '31' },
    clients: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '3' },
    // PostgreSQL (e.g. postgresql://postgres@127.0.0.1:5432/bench); default: PGlite, which runs
    // in the coordinator's own thread, so its commits show up in the event-loop lag.
    'database-url': { type: 'string' },
  },
});
const REPEATS = Number(args.repeats);
const CLIENTS = Number(args.clients);
const ROUNDS = Number(args.rounds);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

/** Median milliseconds of `REPEATS` runs after two warm-ups. */
function time(fn: () => void): number {
  fn();
  fn();
  const samples: number[] = [];
  for (let r = 0; r < REPEATS; r++) {
    const start = process.hrtime.bigint();
    fn();
    samples.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  return median(samples);
}

// --- The per-update steps -------------------------------------------------------------------

const weights = new Float32Array(PARAMS);
for (let i = 0; i < PARAMS; i++) weights[i] = Math.sin(i) * 0.05;
const bytes = Uint8Array.from(weightsToBytes(weights));
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
      weights: bytes,
      numExamples: 600,
      durationMs: 1000,
      metrics: { loss: 0.1, accuracy: 0.9 },
    },
  ],
});
const copy = new Uint8Array(bytes.byteLength);
const parser = createMsgpackParser({ maxFrameBytes: 1 << 30 });
const sum = new WeightedSum(PARAMS);

// ws masks (client) and unmasks (server) every frame's payload: with `bufferutil` natively.
const requireFromWs = createRequire(createRequire(import.meta.url).resolve('ws'));
interface WsBufferUtil {
  mask(source: Buffer, mask: Buffer, output: Buffer, offset: number, length: number): void;
  unmask(buffer: Buffer, mask: Buffer): void;
}
const wsBufferUtilPath = requireFromWs.resolve('./lib/buffer-util.js');
// ws's own JavaScript loop, as it runs without bufferutil: a second copy of its module, loaded
// with ws's documented opt-out set.
// (ws is loaded already, by the coordinator's imports: the copy in use is the cached one.)
const wsBufferUtil = requireFromWs(wsBufferUtilPath) as WsBufferUtil;
const wsBufferUtilModule = requireFromWs.cache[wsBufferUtilPath];
delete requireFromWs.cache[wsBufferUtilPath];
process.env['WS_NO_BUFFER_UTIL'] = '1';
const wsFallback = requireFromWs(wsBufferUtilPath) as WsBufferUtil;
// biome-ignore lint/suspicious/noUndeclaredEnvVars: ws's own opt-out, read by ws, not by a task
delete process.env['WS_NO_BUFFER_UTIL'];
requireFromWs.cache[wsBufferUtilPath] = wsBufferUtilModule;
if (wsFallback === wsBufferUtil) throw new Error('could not load ws without bufferutil');
const bufferutil = (() => {
  try {
    return requireFromWs.resolve('bufferutil');
  } catch {
    return null;
  }
})();
const maskKey = Buffer.from([0x12, 0x34, 0x56, 0x78]);
const wsPayload = Buffer.from(frame);
const wsOutput = Buffer.alloc(wsPayload.byteLength);

const steps: Array<{ step: string; ms: number }> = [];
const memcpyMs = time(() => copy.set(bytes));
steps.push({ step: 'memcpy of the update bytes', ms: memcpyMs });
steps.push({
  step: 'ws mask (client side, as ws loads it)',
  ms: time(() => wsBufferUtil.mask(wsPayload, maskKey, wsOutput, 0, wsPayload.byteLength)),
});
steps.push({
  step: 'ws unmask (coordinator side, as ws loads it)',
  ms: time(() => wsBufferUtil.unmask(wsOutput, maskKey)),
});
steps.push({
  step: 'ws unmask, JavaScript fallback (no bufferutil)',
  ms: time(() => wsFallback.unmask(wsOutput, maskKey)),
});
steps.push({
  step: 'pre-scan of the frame (scanMsgpack)',
  ms: time(() => {
    const scan = scanMsgpack(frame, PEER_FRAME_LIMITS);
    if (!scan.ok) throw new Error(scan.reason);
  }),
});
steps.push({
  step: 'packet decode (project parser, incl. pre-scan)',
  ms: time(() => {
    const decoder = new parser.Decoder();
    let packet: Packet | undefined;
    decoder.on('decoded', (decoded: Packet) => {
      packet = decoded;
    });
    decoder.add(frame);
    if (!packet) throw new Error('no packet decoded');
  }),
});
steps.push({
  step: 'bytesToWeights (copy + finiteness check)',
  ms: time(() => bytesToWeights(bytes, PARAMS)),
});
// What the engine runs: the copy, then the aggregator's add checks the values once.
steps.push({
  step: 'decodeWeights (the copy alone, as the engine decodes)',
  ms: time(() => decodeWeights(bytes, PARAMS)),
});
steps.push({
  step: 'finiteness check (firstNonFinite, in the aggregator)',
  ms: time(() => firstNonFinite(weights)),
});
steps.push({
  step: 'sha256 of the update bytes',
  ms: time(() => createHash('sha256').update(bytes).digest()),
});
{
  // What the coordinator's loop pays for a hash now: the call only (WebCrypto copies the bytes
  // on the loop and hashes them on libuv's pool). Each hash is awaited before the next call,
  // as updates arriving apart would be; the pool's thread shares the machine's cores.
  const samples: number[] = [];
  for (let r = 0; r < REPEATS + 2; r++) {
    const start = process.hrtime.bigint();
    const digest = sha256Hex(bytes);
    if (r >= 2) samples.push(Number(process.hrtime.bigint() - start) / 1e6);
    await digest;
  }
  steps.push({
    step: 'sha256 as the coordinator hashes: loop time (sha256Hex)',
    ms: median(samples),
  });
}
steps.push({ step: 'FedAvg fold (float64 weighted sum)', ms: time(() => sum.add(weights, 600)) });

// --- Event-loop lag while a real coordinator receives updates --------------------------------

const clientCli = fileURLToPath(new URL('../apps/node-client/dist/main.js', import.meta.url));

interface LagFigures {
  p50: number;
  p99: number;
  max: number;
}

function figures(histogram: ReturnType<typeof monitorEventLoopDelay>): LagFigures {
  return {
    p50: histogram.percentile(50) / 1e6,
    p99: histogram.percentile(99) / 1e6,
    max: histogram.max / 1e6,
  };
}

async function receiveUpdates(): Promise<{
  updates: number;
  seconds: number;
  lagMs: LagFigures;
  /** From the first commit on: without the run's start (strategy and model built once). */
  laterRoundsLagMs: LagFigures;
}> {
  const dataDir = mkdtempSync(join(tmpdir(), 'tessera-bench-'));
  const db = await openDatabase(
    args['database-url'] ? { url: args['database-url'] } : { dataDir: join(dataDir, 'pglite') },
  );
  const coordinator = await Coordinator.start({
    centralEvaluation: false,
    db,
    logger: createLogger('warn', () => {}),
    port: 0,
  });
  const api = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const response = await fetch(`${coordinator.url}/api${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    if (!response.ok)
      throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  };
  const children: ReturnType<typeof spawn>[] = [];
  try {
    const federation = await api<{ id: string }>('POST', '/federations', {
      name: `bench ${new Date().toISOString()}`,
    });
    for (let k = 0; k < CLIENTS; k++) {
      const issued = await api<{ token: string }>('POST', `/federations/${federation.id}/clients`, {
        organisation: `org-${k}`,
      });
      const child = spawn(
        process.execPath,
        [
          clientCli,
          '--coordinator',
          coordinator.url,
          '--token',
          issued.token,
          '--progress',
          'none',
          '--mnist',
          `${k}/${CLIENTS}`,
          '--max-examples',
          '100',
        ],
        { stdio: ['ignore', 'ignore', 'inherit'] },
      );
      children.push(child);
    }
    while (coordinator.registry.list().length < CLIENTS) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const run = await api<{ id: string }>('POST', '/runs', {
      federationId: federation.id,
      model: 'fedavg-cnn',
      rounds: ROUNDS,
      minClients: CLIENTS,
      roundDeadlineMs: 600_000,
      localEpochs: 1,
      batchSize: 50,
      learningRate: 0.05,
      seed: 7,
    });
    let updates = 0;
    const later = monitorEventLoopDelay({ resolution: 10 });
    const done = new Promise<void>((resolve) => {
      coordinator.on('round-committed', (event) => {
        if (event.round === 1) later.enable();
        updates += event.record.participantClientIds.length;
        if (event.round === ROUNDS) resolve();
      });
    });
    const lag = monitorEventLoopDelay({ resolution: 10 });
    const start = process.hrtime.bigint();
    lag.enable();
    await api('POST', `/runs/${run.id}/start`);
    await done;
    lag.disable();
    later.disable();
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    return {
      updates,
      seconds,
      lagMs: figures(lag),
      laterRoundsLagMs: figures(later),
    };
  } finally {
    for (const child of children) child.kill('SIGKILL');
    await coordinator.close();
    await db.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const lag = await receiveUpdates();

// --- Report ---------------------------------------------------------------------------------

const machine = `${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, node ${process.version}`;
console.log(
  `coordinator per-update steps: fedavg-cnn, ${PARAMS.toLocaleString('en')} parameters (${(bytes.byteLength / 1e6).toFixed(2)} MB, frame ${(frame.byteLength / 1e6).toFixed(2)} MB), median of ${REPEATS}`,
);
console.log(
  `${machine}; ws bufferutil: ${bufferutil ? 'loaded' : 'absent (JavaScript fallback)'}\n`,
);
console.log(`${'step'.padEnd(50)}${'ms'.padStart(10)}${'x memcpy'.padStart(12)}`);
for (const { step, ms } of steps) {
  console.log(
    `${step.padEnd(50)}${ms.toFixed(2).padStart(10)}${(ms / memcpyMs).toFixed(1).padStart(12)}`,
  );
}
console.log(
  `\nevent-loop lag while the coordinator received ${lag.updates} updates from ${CLIENTS} client processes over ${ROUNDS} rounds (${lag.seconds.toFixed(1)} s, monitorEventLoopDelay resolution 10 ms): p50 ${lag.lagMs.p50.toFixed(1)} ms, p99 ${lag.lagMs.p99.toFixed(1)} ms, max ${lag.lagMs.max.toFixed(1)} ms; after round 1's commit: p50 ${lag.laterRoundsLagMs.p50.toFixed(1)} ms, p99 ${lag.laterRoundsLagMs.p99.toFixed(1)} ms, max ${lag.laterRoundsLagMs.max.toFixed(1)} ms`,
);

mkdirSync(new URL('results/', import.meta.url), { recursive: true });
writeFileSync(
  new URL('results/coordinator.json', import.meta.url),
  `${JSON.stringify(
    {
      date: new Date().toISOString(),
      machine,
      params: PARAMS,
      updateBytes: bytes.byteLength,
      frameBytes: frame.byteLength,
      repeats: REPEATS,
      bufferutil: bufferutil !== null,
      steps: steps.map(({ step, ms }) => ({ step, ms, xMemcpy: ms / memcpyMs })),
      eventLoopLag: { clients: CLIENTS, rounds: ROUNDS, ...lag },
    },
    null,
    2,
  )}\n`,
);
