import { EventEmitter } from 'node:events';
import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type Database,
  DatabaseHealth,
  type DatabaseHealthSnapshot,
  isTransientDatabaseError,
  type RetryingDatabase,
  type RetryPolicy,
  type RunRecord,
  withRetries,
} from '@tessera/db';
import { initBackend } from '@tessera/ml';
import { DEFAULT_MAX_FRAME_BYTES, ErrorCode, TesseraError } from '@tessera/protocol';
import { createApi } from './api.js';
import { WorkerCentralEvaluator } from './central-eval.js';
import { type RoundSummary, RunEngine } from './engine.js';
import { createLogger, type Logger } from './logger.js';
import { ClientRegistry } from './registry.js';
import { attachSocketServer } from './socket-server.js';
import type { Transport } from './transport.js';

export interface CoordinatorOptions {
  db: Database;
  port?: number;
  host?: string;
  logger?: Logger;
  /** When set, the REST API requires `Authorization: Bearer <adminToken>`. */
  adminToken?: string | null;
  maxFrameBytes?: number;
  /** Evaluate each new global model on the MNIST test set (for runs on MNIST). Default true. */
  centralEvaluation?: boolean;
  /**
   * Behind a TLS-terminating reverse proxy: trust its X-Forwarded-* headers, so console
   * session cookies get `Secure` and login rate limits see the real client address.
   */
  trustProxy?: boolean;
  /** Resume runs left `running` by a previous process. Default true. */
  resume?: boolean;
  /**
   * How the round engine and the socket edge retry database calls that fail for a transient
   * reason (connection refused, reset, timed out): `retryForMs` is how long an outage may last
   * before a run is marked failed (default 180 s). See @tessera/db's RetryPolicy.
   */
  databaseRetry?: Partial<RetryPolicy>;
  /** How often the database is probed (`SELECT 1`) for /healthz while nothing else uses it. Default 5 s. */
  databaseProbeIntervalMs?: number;
}

/** What /healthz and /readyz report. */
export interface CoordinatorHealth {
  /** `degraded`: something the coordinator needs is down; it keeps running and retrying. */
  status: 'ok' | 'degraded';
  database: DatabaseHealthSnapshot;
}

const PROBE_TIMEOUT_MS = 5_000;

interface CoordinatorEvents {
  'round-started': [{ runId: string; round: number; attempt: number; selected: string[] }];
  'round-committed': [RoundSummary];
  'round-evaluated': [RoundSummary];
  'run-finished': [{ runId: string; status: RunRecord['status']; error?: string }];
}

/** The coordinator process: HTTP (REST) and Socket.IO on one port, and a round engine per running run. */
export class Coordinator extends EventEmitter<CoordinatorEvents> {
  private readonly engines = new Map<string, { engine: RunEngine; done: Promise<void> }>();
  private readonly transport: Transport;
  private readonly centralEvaluator: WorkerCentralEvaluator | null;
  private closed = false;
  /**
   * The database as the round engines and the socket edge use it: every call retried through
   * an outage (REST handlers use `db` itself, and fail fast with the database's error).
   */
  private readonly resilientDb: RetryingDatabase;
  private probeTimer: NodeJS.Timeout | null = null;

  private constructor(
    readonly db: Database,
    readonly logger: Logger,
    readonly registry: ClientRegistry,
    private readonly http: HttpServer,
    private readonly io: ReturnType<typeof attachSocketServer>['io'],
    transport: Transport,
    centralEvaluation: boolean,
    resilientDb: RetryingDatabase,
  ) {
    super();
    this.resilientDb = resilientDb;
    this.transport = transport;
    this.centralEvaluator = centralEvaluation ? new WorkerCentralEvaluator() : null;
    this.registry.on('disconnected', (session) => {
      for (const { engine } of this.engines.values()) engine.handleDisconnect(session.clientId);
    });
  }

  static async start(options: CoordinatorOptions): Promise<Coordinator> {
    const logger = options.logger ?? createLogger('info');
    // Initial weights and central evaluation run tfjs here: pick the fastest backend first.
    const backend = await initBackend();
    logger.info('coordinator tfjs backend', { backend: backend.name });
    const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    const http = createServer();
    const registry = new ClientRegistry();
    const health = new DatabaseHealth();
    const resilientDb = withRetries(options.db, {
      health,
      ...(options.databaseRetry ? { policy: options.databaseRetry } : {}),
    });
    health.on('unavailable', (snapshot) =>
      logger.warn('database unavailable; retrying', {
        since: snapshot.since?.toISOString(),
        error: snapshot.lastError,
        retryForSeconds: resilientDb.retryPolicy.retryForMs / 1000,
      }),
    );
    health.on('restored', (snapshot) =>
      logger.info('database back', { downForMs: snapshot.downForMs }),
    );
    let coordinator: Coordinator | undefined;
    const { io, transport } = attachSocketServer(http, {
      db: resilientDb,
      registry,
      logger,
      engineFor: (runId) => coordinator?.engines.get(runId)?.engine,
      maxFrameBytes,
    });
    coordinator = new Coordinator(
      options.db,
      logger,
      registry,
      http,
      io,
      transport,
      options.centralEvaluation ?? true,
      resilientDb,
    );
    coordinator.startProbing(options.databaseProbeIntervalMs ?? 5_000);
    http.on(
      'request',
      createApi(coordinator, {
        adminToken: options.adminToken ?? null,
        io,
        trustProxy: options.trustProxy ?? false,
      }),
    );
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
    });
    if (options.resume ?? true) await coordinator.resumeRuns();
    return coordinator;
  }

  get port(): number {
    return (this.http.address() as AddressInfo).port;
  }

  get url(): string {
    const address = this.http.address() as AddressInfo;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return `http://${host}:${address.port}`;
  }

  /** What is up and what is down (`/healthz`): the database, as the last call or probe saw it. */
  health(): CoordinatorHealth {
    const database = this.resilientDb.health.snapshot();
    return { status: database.status === 'ok' ? 'ok' : 'degraded', database };
  }

  /** Asks the database now (`SELECT 1`, 5 s at most) and records the answer: readiness. */
  async probeDatabase(): Promise<boolean> {
    const { health } = this.resilientDb;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.db.prisma.$queryRaw`SELECT 1`,
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new TesseraError(ErrorCode.UNAVAILABLE, 'database probe timed out')),
            PROBE_TIMEOUT_MS,
          );
        }),
      ]);
      health.reportSuccess();
      return true;
    } catch (error) {
      if (isTransientDatabaseError(error)) health.reportFailure(error);
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  private startProbing(intervalMs: number): void {
    if (intervalMs <= 0) return;
    let probing = false;
    this.probeTimer = setInterval(() => {
      if (probing) return;
      probing = true;
      void this.probeDatabase().finally(() => {
        probing = false;
      });
    }, intervalMs);
    this.probeTimer.unref();
  }

  isRunning(runId: string): boolean {
    return this.engines.has(runId);
  }

  /** Marks a created (or stopped) run running and launches its round loop. */
  async startRun(runId: string): Promise<RunRecord> {
    const run = await this.db.runs.get(runId);
    if (this.engines.has(runId))
      throw new TesseraError(ErrorCode.CONFLICT, `run ${runId} is already running`);
    if (run.status === 'completed' || run.status === 'failed') {
      throw new TesseraError(ErrorCode.CONFLICT, `run ${runId} is ${run.status}; create a new run`);
    }
    const running = await this.db.runs.setStatus(runId, 'running');
    this.launch(running);
    return running;
  }

  async stopRun(runId: string): Promise<void> {
    const entry = this.engines.get(runId);
    if (!entry) throw new TesseraError(ErrorCode.CONFLICT, `run ${runId} is not running`);
    entry.engine.stop('stopped');
    await entry.done;
  }

  /**
   * Ends a running run as completed: for runs that stop at a goal, such as a target accuracy,
   * before their round cap. Call it between rounds (on 'round-evaluated'); a round still open
   * is abandoned, as with stopRun.
   */
  finishRun(runId: string): void {
    this.endBetweenRounds(runId, 'completed');
  }

  /** Pauses a running run (status `paused`; startRun resumes it). Call it between rounds. */
  pauseRun(runId: string): void {
    this.endBetweenRounds(runId, 'paused');
  }

  private endBetweenRounds(runId: string, reason: 'completed' | 'paused'): void {
    const entry = this.engines.get(runId);
    if (!entry) throw new TesseraError(ErrorCode.CONFLICT, `run ${runId} is not running`);
    entry.engine.stop(reason);
  }

  /** Resolves when the run's loop ends in this process. */
  async waitForRun(runId: string): Promise<void> {
    await this.engines.get(runId)?.done;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.probeTimer) clearInterval(this.probeTimer);
    for (const { engine } of this.engines.values()) engine.stop('shutdown');
    // A run waiting out an outage must not hold the shutdown: its calls give up now, and the
    // run stays `running` for the next process to resume.
    this.resilientDb.cancelRetries();
    await Promise.all([...this.engines.values()].map(({ done }) => done));
    // Drop the connections at the transport level first: clients see a lost connection and keep
    // reconnecting (to this coordinator's successor), instead of an orderly "server disconnect".
    this.io.engine.close();
    // io.close() also closes the HTTP server, which waits for idle keep-alive sockets: drop them.
    const closed = new Promise<void>((resolve) => this.io.close(() => resolve()));
    this.http.closeAllConnections();
    await closed;
    await this.centralEvaluator?.close();
  }

  private async resumeRuns(): Promise<void> {
    for (const run of await this.db.runs.listByStatus('running')) {
      this.logger.info('resuming run', { runId: run.id, committedRounds: run.currentRound });
      this.launch(run);
    }
  }

  private launch(run: RunRecord): void {
    const engine = new RunEngine(
      {
        db: this.resilientDb,
        registry: this.registry,
        transport: this.transport,
        logger: this.logger,
        centralEvaluator: this.centralEvaluator,
      },
      run,
    );
    engine.on('round-started', (e) => this.emit('round-started', e));
    engine.on('round-committed', (e) => this.emit('round-committed', e));
    engine.on('round-evaluated', (e) => this.emit('round-evaluated', e));
    engine.on('run-finished', (e) => this.emit('run-finished', e));
    const done = engine.execute().finally(() => this.engines.delete(run.id));
    this.engines.set(run.id, { engine, done });
  }
}
