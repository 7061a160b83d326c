import { type ChildProcess, spawn } from 'node:child_process';
import os from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Coordinator, checkRunConfig, type Logger } from '@tessera/coordinator';
import type { Database, RoundRecord, RunConfigInput, RunRecord } from '@tessera/db';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { SimHostSpec } from './sim-host.js';

// The host runs as built JavaScript: from dist/ when this module is dist/simulate.js, and
// also when it is loaded from its TypeScript source (tests), next door in ../dist/.
const builtScript = (name: string) =>
  fileURLToPath(
    new URL(import.meta.url.endsWith('.ts') ? `../dist/${name}` : `./${name}`, import.meta.url),
  );
const hostScript = builtScript('sim-host.js');
const probeScript = builtScript('healthz-probe.js');

/** How often the coordinator's /healthz is asked during a simulation. */
export const HEALTHZ_PROBE_INTERVAL_MS = 20;

/** The niceness of the client host processes unless told otherwise (SimulationOptions). */
export const CLIENT_NICENESS = 10;

/** What the simulation measured of a round besides what the round record holds. */
export interface RoundTiming {
  /**
   * The clients' pure training time: each host process trains its clients one at a time and
   * times each; this is the largest sum over the hosts (they train side by side, each on its
   * share of the cores). Null when no host reported a training for the round.
   */
  trainingMs: number | null;
  /** Trainings reported for the round (all hosts). */
  trained: number;
  /** /healthz latency during the round (from the previous round's evaluation to this one's). */
  healthz: { samples: number; p50Ms: number; p99Ms: number; maxMs: number } | null;
}

export interface SimulationOptions {
  db: Database;
  logger: Logger;
  /** Virtual clients (organisations) in the federation. */
  clients: number;
  /** Processes the virtual clients are spread over (round-robin). */
  processes: number;
  /**
   * The niceness the client host processes run at (default CLIENT_NICENESS; 0: the
   * coordinator's own). In a federation the clients train on their own machines; here they
   * share the coordinator's cores, and at the same priority a thousand of them training took
   * the CPU from the loop whose answers the simulation measures (`/healthz` p99 134–449 ms
   * against 26–33 ms with the hosts at 10: README, "A thousand clients a round"). The
   * hosts still get every cycle the coordinator leaves, and their training is timed as before.
   */
  clientNiceness?: number;
  /** MNIST split over the clients: iid, shards[:k], dirichlet:alpha. */
  partition: string;
  partitionSeed: number;
  /** Fraction of each client's examples kept for federated evaluation (0: central only). */
  holdoutFraction: number;
  /** The run, checked at once against what the coordinator can run; keepUpdates defaults to true here. */
  run: Omit<RunConfigInput, 'data'>;
  name?: string;
  /**
   * Central evaluation of every round on the MNIST test set (default true); false leaves the
   * coordinator's cores to the clients (a baseline of their training time).
   */
  centralEvaluation?: boolean;
  /** Stop (as completed) after the first round whose central test accuracy reaches this. */
  targetAccuracy?: number;
  onRound?: (round: RoundRecord, timing: RoundTiming) => void;
}

export interface SimulationResult {
  run: RunRecord;
  rounds: RoundRecord[];
  /** The first round whose central accuracy reached the target, or null. */
  roundsToTarget: number | null;
  wallMs: number;
  /** Per round, in the order of `rounds`' evaluated rounds. */
  timings: RoundTiming[];
  /** The niceness the client host processes ran at. */
  clientNiceness: number;
}

function startHost(
  spec: SimHostSpec,
  logger: Logger,
  niceness: number,
  onTrained: (runId: string, round: number, ms: number) => void,
): Promise<ChildProcess> {
  const child = spawn(process.execPath, [hostScript], { stdio: ['pipe', 'pipe', 'pipe'] });
  if (niceness > 0 && child.pid !== undefined) {
    try {
      // Before it loads anything: the threads it starts (OpenBLAS, oneDNN) inherit it.
      os.setPriority(child.pid, niceness);
    } catch (cause) {
      logger.warn("could not lower a simulation host's priority", {
        pid: child.pid,
        message: (cause as Error).message,
      });
    }
  }
  child.stdin?.end(JSON.stringify(spec));
  child.stderr?.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').trim().split('\n')) {
      if (line) logger.warn(`sim-host ${child.pid}: ${line}`);
    }
  });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) =>
      reject(
        new TesseraError(
          ErrorCode.INTERNAL,
          `simulation host exited with ${code} before it was ready`,
        ),
      ),
    );
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      if (line.startsWith('ready')) resolve(child);
      const [word, runId, round, ms] = line.split(' ');
      if (word === 'trained' && runId !== undefined) onTrained(runId, Number(round), Number(ms));
    });
  });
}

/** Latency quantile q (0..1) of sorted samples: the nearest rank. */
function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? Number.NaN;
}

/** /healthz answers, asked from a process of their own (healthz-probe.ts says why). */
function startProbe(url: string): { child: ChildProcess; take: () => RoundTiming['healthz'] } {
  const child = spawn(process.execPath, [probeScript, url, String(HEALTHZ_PROBE_INTERVAL_MS)], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  let latencies: number[] = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    const ms = Number(line.split(' ')[1]);
    if (Number.isFinite(ms)) latencies.push(ms);
  });
  return {
    child,
    // The answers since the last take: a request still waiting now counts in the next window.
    take: () => {
      const sorted = latencies.sort((a, b) => a - b);
      latencies = [];
      if (sorted.length === 0) return null;
      return {
        samples: sorted.length,
        p50Ms: quantile(sorted, 0.5),
        p99Ms: quantile(sorted, 0.99),
        maxMs: sorted.at(-1) as number,
      };
    },
  };
}

/**
 * A federated run with many virtual clients on one machine, through the same coordinator,
 * protocol, strategy and database as a real deployment: an in-process coordinator on a local
 * port, a federation with one issued token per virtual client, and a few host processes that
 * each connect their share of the clients. The run is recorded like any other (origin
 * `simulation`), so it can be exported and replayed.
 */
export async function simulate(options: SimulationOptions): Promise<SimulationResult> {
  const { db, logger } = options;
  const niceness = options.clientNiceness ?? CLIENT_NICENESS;
  if (!(Number.isInteger(niceness) && niceness >= 0 && niceness <= 19)) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `client niceness must be an integer from 0 to 19, got ${niceness}`,
    );
  }
  if (!(options.clients >= 1 && options.processes >= 1)) {
    throw new TesseraError(ErrorCode.INVALID_ARGUMENT, 'clients and processes must be at least 1');
  }
  // The simulation's edge: a config the coordinator cannot run is refused, naming the field,
  // before a coordinator, a federation or a token exists.
  const config = checkRunConfig({
    keepUpdates: true,
    ...options.run,
    data: {
      dataset: 'mnist',
      partition: options.partition,
      partitionSeed: options.partitionSeed,
      numClients: options.clients,
      holdoutFraction: options.holdoutFraction,
    },
  });
  const started = Date.now();
  // resume: false, as other runs in this database are not this simulation's to drive.
  const coordinator = await Coordinator.start({
    db,
    logger,
    port: 0,
    centralEvaluation: options.centralEvaluation ?? true,
    resume: false,
  });
  const hosts: ChildProcess[] = [];
  try {
    const federation = await db.federations.create({
      name: `${options.name ?? 'simulation'} ${new Date().toISOString()}`,
      description: `${options.clients} virtual clients, MNIST ${options.partition}`,
    });
    const tokens: string[] = [];
    for (let index = 0; index < options.clients; index++) {
      const issued = await db.clients.issueToken({
        federationId: federation.id,
        organisation: `virtual client ${index}`,
      });
      tokens.push(issued.token);
    }
    const run = await db.runs.create({
      federationId: federation.id,
      ...(options.name ? { name: options.name } : {}),
      origin: 'simulation',
      config,
    });

    const processes = Math.min(options.processes, options.clients);
    // The cores shared out between the hosts, so that OpenBLAS in one host does not wait
    // on threads the others have descheduled.
    const threads = Math.max(1, Math.floor(os.availableParallelism() / processes));
    const specs: SimHostSpec[] = Array.from({ length: processes }, () => ({
      coordinatorUrl: coordinator.url,
      numClients: options.clients,
      partition: options.partition,
      partitionSeed: options.partitionSeed,
      holdoutFraction: options.holdoutFraction,
      threads,
      clients: [],
    }));
    tokens.forEach((token, index) => {
      specs[index % processes]?.clients.push({ token, index });
    });
    // Per round of this run: each host's summed training time, and how many trainings.
    const trainedMs = new Map<number, number[]>();
    const trainedCount = new Map<number, number>();
    const onTrained = (host: number) => (runId: string, round: number, ms: number) => {
      if (runId !== run.id) return;
      const sums = trainedMs.get(round) ?? new Array<number>(processes).fill(0);
      sums[host] = (sums[host] ?? 0) + ms;
      trainedMs.set(round, sums);
      trainedCount.set(round, (trainedCount.get(round) ?? 0) + 1);
    };
    hosts.push(
      ...(await Promise.all(
        specs.map((spec, host) => startHost(spec, logger, niceness, onTrained(host))),
      )),
    );
    logger.info('simulation ready', {
      runId: run.id,
      clients: coordinator.registry.list().length,
      processes,
    });

    const probe = startProbe(coordinator.url);
    hosts.push(probe.child);
    const timings: RoundTiming[] = [];
    let roundsToTarget: number | null = null;
    const finished = new Promise<void>((resolve) => {
      coordinator.on('run-finished', (event) => {
        if (event.runId === run.id) resolve();
      });
    });
    coordinator.on('round-evaluated', ({ runId, record }) => {
      if (runId !== run.id) return;
      const sums = trainedMs.get(record.number);
      const timing: RoundTiming = {
        trainingMs: sums === undefined ? null : Math.max(...sums),
        trained: trainedCount.get(record.number) ?? 0,
        healthz: probe.take(),
      };
      // Every attempt's trainings count (a retried round keeps its number): all took its time.
      trainedMs.delete(record.number);
      trainedCount.delete(record.number);
      timings.push(timing);
      options.onRound?.(record, timing);
      const target = options.targetAccuracy;
      if (
        target !== undefined &&
        roundsToTarget === null &&
        (record.centralAccuracy ?? 0) >= target
      ) {
        roundsToTarget = record.number;
        coordinator.finishRun(run.id);
      }
    });
    await coordinator.startRun(run.id);
    await finished;
    return {
      run: await db.runs.get(run.id),
      rounds: await db.rounds.list(run.id),
      roundsToTarget,
      wallMs: Date.now() - started,
      timings,
      clientNiceness: niceness,
    };
  } finally {
    for (const host of hosts) host.kill('SIGTERM');
    await coordinator.close();
  }
}
