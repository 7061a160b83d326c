/**
 * The round engine's test bench, shared by engine.test.ts, round-rules.test.ts and
 * engine-statistics.test.ts: a real PGlite database in a temporary folder, a real
 * ClientRegistry on a clock the test moves, the in-memory Transport, and fake clients that
 * answer through the calls the Socket.IO edge makes (registry.touch, then
 * engine.handleUpdate / handleEvaluation). Client k answers train with weights of k+1 and
 * 10(k+1) examples, so that weighting by examples shows in every aggregate.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Database, openDatabase, type RunConfigInput, type RunRecord } from '@tessera/db';
import {
  type EvaluateReply,
  TesseraError,
  type TrainReply,
  weightsToBytes,
} from '@tessera/protocol';
import { afterAll, beforeAll } from 'vitest';
import {
  type CentralEvaluator,
  type RemotePartials,
  type RoundSummary,
  RunEngine,
} from '../engine.js';
import { createLogger, type LogLevel } from '../logger.js';
import {
  type ClientRegistry,
  type ClientSession,
  LocalClientRegistry,
  type TimeoutBackoff,
} from '../registry.js';
import { InMemoryTransport, type SentMessage } from './memory-transport.js';

export { waitFor } from './wait-for.js';

/** The fedavg-2nn every engine test trains (fake clients never run it). */
export const MODEL = 'fedavg-2nn';
export const PARAMS = 199_210;

/** A PGlite database in a temporary folder, opened before the file's tests and removed after. */
export function useTestDatabase(prefix: string): { readonly db: Database } {
  let db: Database | undefined;
  let dataDir: string | undefined;
  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), `tessera-${prefix}-`));
    db = await openDatabase({ dataDir: join(dataDir, 'pglite') });
  });
  afterAll(async () => {
    await db?.close();
    if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
  });
  return {
    get db(): Database {
      if (db === undefined) throw new Error('the test database opens in beforeAll');
      return db;
    },
  };
}

type TrainReplyOk = Extract<TrainReply, { status: 'ok' }>;
type EvaluateReplyOk = Extract<EvaluateReply, { status: 'ok' }>;

export interface ClientContext {
  clientId: string;
  /** The engine, for a client that answers through another process (acceptRemoteUpdate). */
  engine: RunEngine;
  /** Replies to the instruction as the edge would pass it on; returns the ack's code. */
  update(reply: Partial<Omit<TrainReplyOk, 'status'>> | 'failed'): string;
  evaluation(reply: Partial<Omit<EvaluateReplyOk, 'status'>> | 'failed'): string;
}

/** What a fake client does with each message the engine sends it. */
export type Behaviour = (message: SentMessage, ctx: ClientContext) => void;

/** Trains and evaluates, always at once. */
export const honest: Behaviour = (message, ctx) => {
  if (message.event === 'train') ctx.update({});
  if (message.event === 'evaluate') ctx.evaluation({});
};
/** Never answers anything. */
export const silent: Behaviour = () => {};

export interface Ack {
  clientId: string;
  event: 'update' | 'evaluation';
  round: number;
  code: string;
}

export interface Federation {
  federationId: string;
  clientIds: string[];
  registry: ClientRegistry;
  transport: InMemoryTransport;
  clock: { now: number };
  /** Every reply's ack, in order. */
  acks: Ack[];
  /** The engine's log lines, where the test asked for them (`logLevel`). */
  logs: string[];
}

/** A federation of `count` clients with tokens; none is connected yet. */
export async function createFederation(
  db: Database,
  count: number,
  options: { name: string; backoff?: TimeoutBackoff | undefined; clockStart?: number },
): Promise<Federation> {
  const federation = await db.federations.create({ name: options.name });
  const clientIds: string[] = [];
  for (let k = 0; k < count; k++) {
    const { client } = await db.clients.issueToken({
      federationId: federation.id,
      organisation: `org-${k}`,
    });
    clientIds.push(client.id);
  }
  const clock = { now: options.clockStart ?? 1_000_000 };
  return {
    federationId: federation.id,
    clientIds,
    registry: new LocalClientRegistry({
      timeoutBackoff: options.backoff ?? { baseMs: 60_000, maxMs: 3_600_000 },
      now: () => clock.now,
    }),
    transport: new InMemoryTransport(),
    clock,
    acks: [],
    logs: [],
  };
}

/** The registry's session of a fake client, as the edge builds it at the handshake. */
export function fakeSession(
  federationId: string,
  clientId: string,
  options: { numHoldout?: number | undefined; numExamples?: number } = {},
): ClientSession {
  const now = new Date();
  return {
    clientId,
    federationId,
    organisation: clientId,
    connectionId: `memory-${clientId}`,
    info: {
      name: 'fake',
      version: '0',
      runtime: 'other',
      backend: 'none',
      numExamples: options.numExamples ?? 10,
      ...(options.numHoldout === undefined ? {} : { numHoldout: options.numHoldout }),
    },
    connectedAt: now,
    lastSeenAt: now,
    task: null,
    progress: null,
  };
}

/** Connects a fake client of the federation to its registry. */
export function connect(fed: Federation, clientId: string, numHoldout?: number): void {
  fed.registry.add(fakeSession(fed.federationId, clientId, { numHoldout }));
}

export const baseConfig: RunConfigInput = {
  model: MODEL,
  strategy: 'fedavg',
  strategyOptions: {},
  rounds: 1,
  clientsPerRound: null,
  fractionFit: null,
  minClients: 1,
  roundDeadlineMs: 600_000,
  localEpochs: 1,
  batchSize: 10,
  learningRate: 0.05,
  seed: 7,
  data: {},
};

export interface Started {
  fed: Federation;
  run: RunRecord;
  engine: RunEngine;
  done: Promise<void>;
  started: { round: number; attempt: number; selected: string[] }[];
  committed: RoundSummary[];
  evaluated: RoundSummary[];
  finished: { status: string; error?: string }[];
}

export interface StartOptions {
  config?: Partial<RunConfigInput>;
  /** By client index; honest where none is given. */
  behaviours?: Record<number, Behaviour>;
  maxRoundAttempts?: number;
  centralEvaluator?: CentralEvaluator | null;
  /** Resume an existing run (a new engine on it) instead of creating one. */
  runId?: string;
  /** The engine's log lines go to `fed.logs` at this level. */
  logLevel?: LogLevel;
  /** The examples client k's evaluation reply counts (default 10(k+1)). */
  evaluationExamples?: (index: number) => number;
  onCommitted?: (round: number, engine: RunEngine) => void;
  onEvaluated?: (round: number, engine: RunEngine) => void;
  /** Cluster mode's partial sums of updates folded by other processes (EngineDeps). */
  remotePartials?: RemotePartials;
  /** When a database or evaluation wait is logged as still running (EngineDeps). */
  slowStepMs?: number;
}

/**
 * Starts an engine on a new (or the given) run of the federation, whose clients the test has
 * connected to the registry (or not) itself; every client's transport end answers per its
 * behaviour.
 */
export async function startEngine(
  db: Database,
  fed: Federation,
  options: StartOptions = {},
): Promise<Started> {
  const created =
    options.runId === undefined
      ? await db.runs.create({
          federationId: fed.federationId,
          config: { ...baseConfig, ...options.config },
        })
      : await db.runs.get(options.runId);
  const run = await db.runs.setStatus(created.id, 'running');
  const engine = new RunEngine(
    {
      db,
      registry: fed.registry,
      transport: fed.transport,
      logger: createLogger(options.logLevel ?? 'error', (line) => fed.logs.push(line)),
      centralEvaluator: options.centralEvaluator ?? null,
      ...(options.maxRoundAttempts === undefined
        ? {}
        : { maxRoundAttempts: options.maxRoundAttempts }),
      ...(options.remotePartials === undefined ? {} : { remotePartials: options.remotePartials }),
      ...(options.slowStepMs === undefined ? {} : { slowStepMs: options.slowStepMs }),
    },
    run,
  );
  const s: Started = {
    fed,
    run,
    engine,
    done: Promise.resolve(),
    started: [],
    committed: [],
    evaluated: [],
    finished: [],
  };
  engine.on('round-started', ({ round, attempt, selected }) =>
    s.started.push({ round, attempt, selected }),
  );
  engine.on('round-committed', (summary) => {
    s.committed.push(summary);
    options.onCommitted?.(summary.round, engine);
  });
  engine.on('round-evaluated', (summary) => {
    s.evaluated.push(summary);
    options.onEvaluated?.(summary.round, engine);
  });
  engine.on('run-finished', ({ status, error }) =>
    s.finished.push({ status, ...(error === undefined ? {} : { error }) }),
  );
  const evaluationExamples = options.evaluationExamples ?? ((index: number) => 10 * (index + 1));
  for (const [index, clientId] of fed.clientIds.entries()) {
    const behaviour = options.behaviours?.[index] ?? honest;
    fed.transport.connect(clientId, (message) =>
      behaviour(message, contextFor(fed, engine, clientId, index, message, evaluationExamples)),
    );
  }
  s.done = engine.execute();
  return s;
}

/** Answers as the Socket.IO edge would deliver it: touch the registry, then the engine. */
export function contextFor(
  fed: Federation,
  engine: RunEngine,
  clientId: string,
  index: number,
  message: SentMessage,
  evaluationExamples: (index: number) => number = (k) => 10 * (k + 1),
): ClientContext {
  const { runId } = message.payload;
  // The statistics round has no round number (it comes before round 1).
  const round = 'round' in message.payload ? message.payload.round : 0;
  const answer = (event: Ack['event'], work: () => void): string => {
    fed.registry.touch(clientId);
    let code = 'ok';
    try {
      work();
    } catch (error) {
      if (!(error instanceof TesseraError)) throw error;
      code = error.code;
    }
    fed.acks.push({ clientId, event, round, code });
    return code;
  };
  return {
    clientId,
    engine,
    update: (reply) =>
      answer('update', () =>
        engine.handleUpdate(
          clientId,
          reply === 'failed'
            ? { status: 'failed', runId, round, error: { message: 'local training failed' } }
            : {
                status: 'ok',
                runId,
                round,
                weights: constantWeights(index + 1),
                numExamples: 10 * (index + 1),
                durationMs: 5,
                metrics: { loss: index + 1 },
                ...reply,
              },
        ),
      ),
    evaluation: (reply) =>
      answer('evaluation', () =>
        engine.handleEvaluation(
          clientId,
          reply === 'failed'
            ? { status: 'failed', runId, round, error: { message: 'no held-out data' } }
            : {
                status: 'ok',
                runId,
                round,
                numExamples: evaluationExamples(index),
                loss: 0.5,
                accuracy: 0.75,
                ...reply,
              },
        ),
      ),
  };
}

/** The model's bytes with every weight `value`. */
export const constantWeights = (value: number): Uint8Array<ArrayBuffer> =>
  new Uint8Array(weightsToBytes(new Float32Array(PARAMS).fill(value)));

/** An independent copy of the sampling rule: partial Fisher-Yates over the sorted ids. */
export function referenceSample(
  ids: readonly string[],
  size: number,
  random: () => number,
): string[] {
  const pool = [...ids].sort();
  for (let i = 0; i < size; i++) {
    const j = i + Math.floor(random() * (pool.length - i));
    [pool[i], pool[j]] = [pool[j] as string, pool[i] as string];
  }
  return pool.slice(0, size).sort();
}
