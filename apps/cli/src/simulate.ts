import { type ChildProcess, spawn } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Coordinator, checkRunConfig, type Logger } from '@tessera/coordinator';
import type { Database, RoundRecord, RunConfigInput, RunRecord } from '@tessera/db';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { SimHostSpec } from './sim-host.js';

// The host runs as built JavaScript: from dist/ when this module is dist/simulate.js, and
// also when it is loaded from its TypeScript source (tests), next door in ../dist/.
const hostScript = fileURLToPath(
  new URL(
    import.meta.url.endsWith('.ts') ? '../dist/sim-host.js' : './sim-host.js',
    import.meta.url,
  ),
);

export interface SimulationOptions {
  db: Database;
  logger: Logger;
  /** Virtual clients (organisations) in the federation. */
  clients: number;
  /** Processes the virtual clients are spread over (round-robin). */
  processes: number;
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
  onRound?: (round: RoundRecord) => void;
}

export interface SimulationResult {
  run: RunRecord;
  rounds: RoundRecord[];
  /** The first round whose central accuracy reached the target, or null. */
  roundsToTarget: number | null;
  wallMs: number;
}

function startHost(spec: SimHostSpec, logger: Logger): Promise<ChildProcess> {
  const child = spawn(process.execPath, [hostScript], { stdio: ['pipe', 'pipe', 'pipe'] });
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
    child.stdout?.on('data', (chunk: Buffer) => {
      if (chunk.toString('utf8').startsWith('ready')) resolve(child);
    });
  });
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
    hosts.push(...(await Promise.all(specs.map((spec) => startHost(spec, logger)))));
    logger.info('simulation ready', {
      runId: run.id,
      clients: coordinator.registry.list().length,
      processes,
    });

    let roundsToTarget: number | null = null;
    const finished = new Promise<void>((resolve) => {
      coordinator.on('run-finished', (event) => {
        if (event.runId === run.id) resolve();
      });
    });
    coordinator.on('round-evaluated', ({ runId, record }) => {
      if (runId !== run.id) return;
      options.onRound?.(record);
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
    };
  } finally {
    for (const host of hosts) host.kill('SIGTERM');
    await coordinator.close();
  }
}
