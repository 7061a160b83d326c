import { EventEmitter } from 'node:events';
import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type Database,
  DatabaseHealth,
  type DatabaseHealthSnapshot,
  isTransientDatabaseError,
  type LeaseFence,
  type RetryingDatabase,
  type RetryPolicy,
  type RunRecord,
  type RunStatus,
  withRetries,
} from '@tessera/db';
import { initBackend } from '@tessera/ml';
import {
  DEFAULT_MAX_FRAME_BYTES,
  ErrorCode,
  type RateLimit,
  TesseraError,
  type TrainReply,
} from '@tessera/protocol';
import { createApi } from './api.js';
import { storeBuiltinTasks } from './builtin-tasks.js';
import { WorkerCentralEvaluator } from './central-eval.js';
import { type DeliveredFrame, FrameDelivery } from './cluster/frame-delivery.js';
import { type ClusterOptions, connectRedis, type RedisConnections } from './cluster/redis.js';
import { ClusterClientRegistry } from './cluster/registry.js';
import { type ForwardedFrame, ReplyRelay } from './cluster/relay.js';
import { RemoteFold } from './cluster/remote-fold.js';
import { type RoundSummary, RunEngine } from './engine.js';
import { createLogger, type Logger } from './logger.js';
import { CoordinatorMetrics, packetBytes } from './metrics.js';
import { type ClientRegistry, LocalClientRegistry } from './registry.js';
import { checkRunConfig } from './run-config.js';
import { DEFAULT_LEASE_MS, processOwnerId, RunLeases } from './run-leases.js';
import { attachSocketServer } from './socket-server.js';
import type { Transport } from './transport.js';

/** How long an idle HTTP keep-alive connection stays open (see Coordinator.start). */
const KEEP_ALIVE_TIMEOUT_MS = 65_000;
export interface CoordinatorOptions {
  db: Database;
  port?: number;
  host?: string;
  logger?: Logger;
  /** When set, the REST API requires `Authorization: Bearer <adminToken>`. */
  adminToken?: string | null;
  maxFrameBytes?: number;
  /**
   * Evaluate each new global model centrally: the built-in MNIST tasks on the MNIST test set,
   * other tasks on the held-out set uploaded for them (none: no central evaluation). Default true.
   */
  centralEvaluation?: boolean;
  /**
   * Behind a TLS-terminating reverse proxy: trust its X-Forwarded-* headers, so console
   * session cookies get `Secure` and login rate limits see the real client address.
   */
  trustProxy?: boolean;
  /**
   * Resume runs left `running` by a previous process, at start and by a takeover scan every
   * leaseMs/2 (runs whose owner's lease expired: a dead or partitioned coordinator). Default true.
   */
  resume?: boolean;
  /**
   * How long a run's lease lasts without renewal (renewed every leaseMs/3): a run whose
   * coordinator died passes to another process within about this. Default 15 s.
   */
  leaseMs?: number;
  /** This process's name as a lease owner. Default host:pid:random (processOwnerId). */
  leaseOwner?: string;
  /**
   * How the round engine and the socket edge retry database calls that fail for a transient
   * reason (connection refused, reset, timed out): `retryForMs` is how long an outage may last
   * before a run is marked failed (default 180 s). See @tessera/db's RetryPolicy.
   */
  databaseRetry?: Partial<RetryPolicy>;
  /** The most parameters a task's model may have (`--max-task-params`). Default 50 M. */
  maxTaskParams?: number;
  /** The largest held-out set upload in bytes (`--max-holdout-mb`). Default 64 MiB. */
  maxHoldoutBytes?: number;
  /** A bearer token that may read /metrics (Prometheus) and nothing else. */
  metricsToken?: string;
  /** Handshake rate limits per remote address and per token (default HANDSHAKE_RATE_LIMITS). */
  handshakeRateLimits?: { perAddress: RateLimit; perToken: RateLimit };
  /**
   * Cluster mode (`--redis URL`): share clients with every coordinator on the same Redis and
   * prefix (Socket.IO's Redis adapter, a shared client registry, replies and SecAgg messages
   * relayed to their run's owner). Absent: one process, nothing in Redis.
   */
  redis?: ClusterOptions;
  /**
   * Bytes of client replies queued for handling past which this process stops reading its
   * client connections until half are handled (back-pressure, sliced-work.ts). Default 256 MiB.
   */
  maxQueuedReplyBytes?: number;
  /** How often the database is probed (`SELECT 1`) for /healthz while nothing else uses it. Default 5 s. */
  databaseProbeIntervalMs?: number;
}

/** The statuses a run may be started (or resumed) from. */
const STARTABLE_STATUSES: readonly RunStatus[] = ['created', 'paused'];

/** What /healthz and /readyz report. */
export interface CoordinatorHealth {
  /** `degraded`: something the coordinator needs is down; it keeps running and retrying. */
  status: 'ok' | 'degraded';
  database: DatabaseHealthSnapshot;
}

const PROBE_TIMEOUT_MS = 5_000;

/** What cluster mode adds to a coordinator: closed with it. */
interface Cluster {
  connections: RedisConnections;
  registry: ClusterClientRegistry;
  relay: ReplyRelay;
  /** Updates folded where they arrive, partial sums collected by the run's owner. */
  fold: RemoteFold;
  /** Frames for clients another process holds, sent out paced by that process. */
  frames: FrameDelivery;
  /** The socket edge's entry for replies and SecAgg messages relayed from other processes. */
  receive: (forwarded: ForwardedFrame) => void | Promise<void>;
}

interface CoordinatorEvents {
  'round-started': [{ runId: string; round: number; attempt: number; selected: string[] }];
  'round-committed': [RoundSummary];
  'round-evaluated': [RoundSummary];
  'run-finished': [{ runId: string; status: RunRecord['status']; error?: string }];
}

/** The coordinator process: HTTP (REST) and Socket.IO on one port, and a round engine per running run. */
export class Coordinator extends EventEmitter<CoordinatorEvents> {
  private readonly engines = new Map<string, { engine: RunEngine; done: Promise<void> }>();
  /** Runs whose start is in progress in this process (between the checks and the launch). */
  private readonly starting = new Set<string>();
  private readonly transport: Transport;
  private readonly centralEvaluator: WorkerCentralEvaluator | null;
  private closed = false;
  /**
   * The database as the round engines and the socket edge use it: every call retried through
   * an outage (REST handlers use `db` itself, and fail fast with the database's error).
   */
  private readonly resilientDb: RetryingDatabase;
  private probeTimer: NodeJS.Timeout | null = null;
  private takeoverTimer: NodeJS.Timeout | null = null;
  private scanning = false;
  /** The task-size limit, also for the tasks statistics rounds resolve (EngineDeps). */
  private maxTaskParams: number | undefined;
  private cluster: Cluster | null = null;

  private constructor(
    readonly db: Database,
    readonly logger: Logger,
    readonly registry: ClientRegistry,
    private readonly http: HttpServer,
    private readonly io: ReturnType<typeof attachSocketServer>['io'],
    transport: Transport,
    centralEvaluation: boolean,
    resilientDb: RetryingDatabase,
    /** The leases on the runs this process drives: one owner per run among the processes. */
    readonly leases: RunLeases,
    /** This process's Prometheus metrics (`GET /metrics`). */
    readonly metrics: CoordinatorMetrics,
  ) {
    super();
    this.resilientDb = resilientDb;
    this.transport = transport;
    // Central evaluation reads held-out sets through the retrying database, as the engine does.
    this.centralEvaluator = centralEvaluation
      ? new WorkerCentralEvaluator(resilientDb, logger)
      : null;
    // Each engine listens to the registry itself: a client that disconnects, is replaced or
    // is revoked drops out of its open round.
  }

  static async start(options: CoordinatorOptions): Promise<Coordinator> {
    const logger = options.logger ?? createLogger('info');
    // Initial weights and central evaluation run tfjs here: pick the fastest backend first.
    const backend = await initBackend();
    logger.info('coordinator tfjs backend', { backend: backend.name });
    const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    // Idle keep-alive connections stay open longer than clients and proxies keep theirs
    // (undici 4 s, nginx 60 s), so that the server never closes one a client is just reusing:
    // at Node's default of 5 s a request sent at that moment failed with ECONNRESET.
    // Headers of a request on a kept-alive connection are awaited a little past it, as Node's
    // docs advise.
    const http = createServer({
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      headersTimeout: KEEP_ALIVE_TIMEOUT_MS + 1_000,
    });
    const leaseOwner = options.leaseOwner ?? processOwnerId();
    const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    const leases = new RunLeases(options.db.leases, leaseOwner, leaseMs, logger);
    let cluster: Omit<Cluster, 'receive' | 'fold' | 'frames'> | null = null;
    let registry: ClientRegistry;
    if (options.redis) {
      const connections = await connectRedis(options.redis);
      const shared = { ...connections, processId: leaseOwner };
      const onError = (error: Error) =>
        logger.warn('redis call failed; retrying', { message: error.message });
      // A dead process's clients leave the others' registries within about one lease, as
      // its runs pass to another owner.
      const clusterRegistry = await ClusterClientRegistry.start({
        ...shared,
        heartbeatMs: leaseMs,
        onError,
      });
      const relay = await ReplyRelay.start(shared);
      cluster = { connections, registry: clusterRegistry, relay };
      registry = clusterRegistry;
      logger.info('cluster mode: clients shared through redis', { prefix: connections.prefix });
    } else {
      registry = new LocalClientRegistry();
    }
    const metrics = new CoordinatorMetrics({ registry, leases });
    let deliverLocal: ((frame: DeliveredFrame) => void) | undefined;
    const clustered: Omit<Cluster, 'receive'> | null = cluster && {
      ...cluster,
      fold: await RemoteFold.start({
        ...cluster.connections,
        processId: leaseOwner,
        onFolded: () => metrics.recordFoldedRemote(),
        onCollected: (received) => metrics.recordPartialCollected(received),
      }),
      // Frames published to this process are delivered once the socket edge exists (below):
      // none can be for a connection of this process before it accepts any.
      frames: await FrameDelivery.start(
        { ...cluster.connections, processId: leaseOwner },
        (frame) => {
          metrics.recordFrameDelivered('received');
          deliverLocal?.(frame);
        },
      ),
    };
    const health = new DatabaseHealth();
    const resilientDb = withRetries(options.db, {
      health,
      observe: (call, seconds, ok) => metrics.recordDatabaseCall(call, seconds, ok),
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
    const socketEdge = attachSocketServer(http, {
      db: resilientDb,
      registry,
      logger,
      engineFor: (runId) => coordinator?.engines.get(runId)?.engine,
      maxFrameBytes,
      ...(clustered
        ? {
            adapter: clustered.connections.adapter,
            frames: {
              homeOf: (clientId: string) => clustered.registry.homeOf(clientId),
              send: (processId: string, frame: DeliveredFrame) => {
                metrics.recordFrameDelivered('sent');
                return clustered.frames.send(processId, frame);
              },
            },
            // An update of a run that folds where updates arrive stays here (its claim goes
            // to the owner); anything else travels whole to the owner.
            forward: async (forwarded: ForwardedFrame) => {
              const { runId, clientId, event, frame } = forwarded;
              if (
                event === 'update' &&
                (await clustered.fold.tryFold(runId, clientId, frame as TrainReply))
              )
                return;
              await clustered.relay.forward(forwarded);
            },
          }
        : {}),
      ...(options.handshakeRateLimits ? { rateLimits: options.handshakeRateLimits } : {}),
      ...(options.maxQueuedReplyBytes === undefined
        ? {}
        : { maxQueuedReplyBytes: options.maxQueuedReplyBytes }),
      observer: {
        reply: (event, code) => metrics.recordReply(event, code),
        connectionRefused: (code) => metrics.recordConnectionRefused(code),
        readsPaused: (paused) => metrics.recordReadsPaused(paused),
      },
    });
    const { io, transport, receive } = socketEdge;
    deliverLocal = socketEdge.deliverLocal;
    // Bytes on the wire, counted where Engine.IO reads and writes packets (every namespace).
    io.engine.on('connection', (socket: import('node:events').EventEmitter) => {
      socket.on('packet', (packet: { data?: unknown }) =>
        metrics.recordSocketBytes('in', packetBytes(packet.data)),
      );
      socket.on('packetCreate', (packet: { data?: unknown }) =>
        metrics.recordSocketBytes('out', packetBytes(packet.data)),
      );
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
      leases,
      metrics,
    );
    coordinator.maxTaskParams = options.maxTaskParams;
    coordinator.cluster = clustered ? { ...clustered, receive } : null;
    coordinator.startProbing(options.databaseProbeIntervalMs ?? 5_000);
    await storeBuiltinTasks(options.db);
    http.on(
      'request',
      createApi(coordinator, {
        adminToken: options.adminToken ?? null,
        io,
        trustProxy: options.trustProxy ?? false,
        ...(options.maxTaskParams === undefined ? {} : { maxTaskParams: options.maxTaskParams }),
        ...(options.maxHoldoutBytes === undefined
          ? {}
          : { maxHoldoutBytes: options.maxHoldoutBytes }),
        metricsToken: options.metricsToken ?? null,
      }),
    );
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
    });
    logger.info('coordinator lease owner', {
      owner: coordinator.leases.owner,
      leaseMs: coordinator.leases.ttlMs,
    });
    if (options.resume ?? true) {
      await coordinator.resumeRuns();
      coordinator.startTakeoverScan();
    }
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

  /**
   * Starts a created run, or resumes a stopped or paused one: builds its engine (strategy and
   * model: what a bad config makes fail) first, then marks it running with a conditional
   * transition, then launches the loop. Concurrent starts of one run (here or in another
   * coordinator on the same database) get CONFLICT, all but one; a run that cannot be built is
   * refused and stays as it was.
   */
  async startRun(runId: string): Promise<RunRecord> {
    // Reserved before anything awaits: a second start in this process is refused at once.
    if (this.engines.has(runId) || this.starting.has(runId))
      throw new TesseraError(ErrorCode.CONFLICT, `run ${runId} is already running`);
    this.starting.add(runId);
    try {
      const run = await this.db.runs.get(runId);
      if (!STARTABLE_STATUSES.includes(run.status)) {
        throw new TesseraError(
          ErrorCode.CONFLICT,
          run.status === 'running'
            ? `run ${runId} is already running`
            : `run ${runId} is ${run.status}; create a new run`,
          { runId, status: run.status },
        );
      }
      // The lease first, then `running`: a run is never running without an owner, so no other
      // process's takeover scan can claim it in between.
      const fence = await this.leases.acquire(runId);
      if (fence === null) {
        throw new TesseraError(ErrorCode.CONFLICT, `run ${runId} is held by another coordinator`, {
          runId,
          lease: 'held',
        });
      }
      let running: RunRecord;
      let engine: RunEngine;
      try {
        engine = this.createEngine(run, fence);
        running = await this.db.runs.transition(runId, 'running', STARTABLE_STATUSES);
      } catch (error) {
        await this.leases.release(runId, fence);
        throw error;
      }
      this.launch(engine, fence);
      return running;
    } finally {
      this.starting.delete(runId);
    }
  }

  /**
   * Revokes a client's token and takes it out at once: its live connection (if any) is told
   * `rejected` UNAUTHORIZED "token revoked" and disconnected, and every engine drops it from
   * its open round (it counts as dropped; nothing it sends afterwards is aggregated).
   */
  async revokeClient(clientId: string): Promise<void> {
    await this.db.clients.revoke(clientId);
    const session = this.registry.revoke(clientId);
    if (!session) return;
    // Through the adapter: the connection may be held by another coordinator process.
    this.io
      .to(session.connectionId)
      .emit('rejected', { code: ErrorCode.UNAUTHORIZED, message: 'token revoked' });
    this.io.in(session.connectionId).disconnectSockets(true);
    this.logger.warn('client token revoked; its connection was closed', { clientId });
  }

  async stopRun(runId: string): Promise<void> {
    const entry = this.engines.get(runId);
    if (!entry) throw new TesseraError(ErrorCode.CONFLICT, `run ${runId} is not running`);
    entry.engine.stop('stopped');
    await entry.done;
  }

  /**
   * Ends a running run as completed at once: for runs that stop at a goal, such as a target
   * accuracy (on 'round-evaluated', which arrives while the next round trains), before their
   * round cap. The round still open is abandoned, as with stopRun.
   */
  finishRun(runId: string): void {
    this.runningEngine(runId).stop('completed');
  }

  /**
   * Pauses a running run once its open round is over (committed and evaluated): status
   * `paused`, and startRun resumes it with the next round. A run waiting for clients pauses
   * after the first round it can run.
   */
  pauseRun(runId: string): void {
    this.runningEngine(runId).endAfterRound('paused');
  }

  private runningEngine(runId: string): RunEngine {
    const entry = this.engines.get(runId);
    if (!entry) throw new TesseraError(ErrorCode.CONFLICT, `run ${runId} is not running`);
    return entry.engine;
  }

  /** Resolves when the run's loop ends in this process. */
  async waitForRun(runId: string): Promise<void> {
    await this.engines.get(runId)?.done;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.probeTimer) clearInterval(this.probeTimer);
    if (this.takeoverTimer) clearInterval(this.takeoverTimer);
    // A takeover scan in flight sees `closed` and launches nothing more (resumeRuns).
    while (this.scanning) await new Promise((resolve) => setTimeout(resolve, 10));
    for (const { engine } of this.engines.values()) engine.stop('shutdown');
    // A run waiting out an outage must not hold the shutdown: its calls give up now, and the
    // run stays `running` for the next process to resume. Each engine's end releases its
    // lease, so another process takes the run over at once instead of after the lease time.
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
    if (this.cluster) {
      await this.cluster.relay.close();
      await this.cluster.fold.close();
      await this.cluster.frames.close();
      await this.cluster.registry.close();
      await this.cluster.connections.close();
    }
  }

  /**
   * Takes over the runs left `running` with no live owner: a previous process that ended, or
   * another coordinator whose lease expired (dead, or cut off from the database). Each run on
   * its own: its lease first (null: another process was quicker, leave it), then its engine,
   * which resumes from the last committed round. One that cannot be built any more (a config
   * this version refuses) is marked failed with the reason and logged, and the coordinator
   * goes on all the same.
   */
  private async resumeRuns(): Promise<void> {
    if (this.scanning || this.closed) return;
    this.scanning = true;
    try {
      for (const runId of await this.db.leases.orphanedRunningRuns()) {
        if (this.closed) return;
        if (this.engines.has(runId) || this.starting.has(runId)) continue;
        const fence = await this.leases.acquire(runId);
        if (fence === null) continue;
        const run = await this.db.runs.get(runId);
        if (this.closed) {
          await this.leases.release(runId, fence);
          return;
        }
        let engine: RunEngine;
        try {
          engine = this.createEngine(run, fence);
        } catch (cause) {
          await this.failUnresumable(run, cause);
          await this.leases.release(runId, fence);
          continue;
        }
        this.logger.info('resuming run', {
          runId,
          committedRounds: run.currentRound,
          leaseToken: fence.token,
        });
        this.launch(engine, fence);
      }
    } finally {
      this.scanning = false;
    }
  }

  /** Every leaseMs/2: a run whose owner stopped renewing is taken within about one lease. */
  private startTakeoverScan(): void {
    this.takeoverTimer = setInterval(
      () =>
        void this.resumeRuns().catch((cause) =>
          this.logger.warn('takeover scan failed; trying again', {
            message: TesseraError.from(cause).message,
          }),
        ),
      Math.max(1, Math.floor(this.leases.ttlMs / 2)),
    );
    this.takeoverTimer.unref();
  }

  private async failUnresumable(run: RunRecord, cause: unknown): Promise<void> {
    const error = TesseraError.from(cause);
    const reason = `cannot be resumed: ${error.message}`;
    this.logger.error('run cannot be resumed; marked failed', {
      runId: run.id,
      code: error.code,
      message: error.message,
    });
    await this.db.runs.setStatus(run.id, 'failed', { error: reason }).catch((failure) => {
      this.logger.error('could not mark the run failed', {
        runId: run.id,
        message: (failure as Error).message,
      });
    });
  }

  /**
   * Everything about a run that can fail before its loop starts: its stored config against
   * what this coordinator can run (the same schema as at creation), then strategy and model.
   */
  private createEngine(stored: RunRecord, fence: LeaseFence): RunEngine {
    // The stored task reference stays as resolved at creation; the rest is checked again.
    const run = {
      ...stored,
      config: { ...checkRunConfig(stored.config), task: stored.config.task },
    };
    return new RunEngine(
      {
        db: this.resilientDb,
        registry: this.registry,
        transport: this.transport,
        logger: this.logger,
        centralEvaluator: this.centralEvaluator,
        fence,
        ...(this.maxTaskParams === undefined ? {} : { maxTaskParams: this.maxTaskParams }),
        ...(this.cluster ? { remotePartials: this.cluster.fold } : {}),
      },
      run,
    );
  }

  private launch(engine: RunEngine, fence: LeaseFence): void {
    const { runId } = engine;
    // Lost to another process (a renewal saw it taken over): stop at once, leave the status.
    this.leases.hold(runId, fence, () => {
      this.metrics.recordLeaseLost();
      engine.stop('lease-lost');
    });
    this.metrics.observeEngine(engine);
    engine.on('round-started', (e) => this.emit('round-started', e));
    engine.on('round-committed', (e) => this.emit('round-committed', e));
    engine.on('round-evaluated', (e) => this.emit('round-evaluated', e));
    engine.on('run-finished', (e) => this.emit('run-finished', e));
    const { cluster } = this;
    // In cluster mode the run's replies that reach other processes come here while it runs.
    const serving = cluster
      ? Promise.all([
          cluster.relay.serve(runId, cluster.receive),
          cluster.fold.serve(runId, (from, claim) => engine.acceptRemoteUpdate(from, claim)),
        ]).catch((error: Error) =>
          // Redis down: the run goes on with the clients of this process.
          this.logger.warn('cannot relay replies from other coordinators', {
            runId,
            message: error.message,
          }),
        )
      : Promise.resolve();
    const done = serving
      .then(() => engine.execute())
      .finally(async () => {
        this.engines.delete(runId);
        await cluster?.relay.unserve(runId);
        await cluster?.fold.unserve(runId);
        await this.leases.release(runId, fence);
      });
    this.engines.set(runId, { engine, done });
  }
}
