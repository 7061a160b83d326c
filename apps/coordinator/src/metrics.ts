import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { RunEngine } from './engine.js';
import type { ClientRegistry } from './registry.js';
import type { RunLeases } from './run-leases.js';

/**
 * The coordinator's Prometheus metrics (`GET /metrics`): what a round costs and where it goes
 * wrong, per process. Every label takes values from a set fixed here or by the server (error
 * codes, strategies, statuses), never a string a client chose: a client that names its backend
 * `x${n}` must not create a time series per connection. Ids (runs, clients) are in the logs,
 * not in labels.
 */
export class CoordinatorMetrics {
  readonly registry = new Registry();
  private readonly roundAttempts: Counter<'strategy'>;
  private readonly roundsCommitted: Counter<'strategy'>;
  private readonly roundPhaseSeconds: Histogram<'phase'>;
  private readonly runsFinished: Counter<'status'>;
  private readonly replies: Counter<'event' | 'outcome' | 'code'>;
  private readonly connectionsRefused: Counter<'code'>;
  private readonly socketBytes: Counter<'direction'>;
  private readonly databaseCalls: Histogram<'call' | 'outcome'>;
  private readonly leasesLost: Counter;
  private readonly foldedRemote: Counter;
  private readonly partialsCollected: Counter<'outcome'>;
  private readonly framesDelivered: Counter<'direction'>;
  private readonly readPauses: Counter;
  /** When each open round's first attempt started, and each committed round was committed. */
  private readonly phaseStarts = new Map<string, number>();

  constructor(
    options: {
      registry: ClientRegistry;
      leases: RunLeases;
      /** Labels on every series of this process (its lease owner id, say). */
      labels?: Record<string, string>;
    },
    private readonly now: () => number = () => performance.now(),
  ) {
    const register = this.registry;
    if (options.labels) register.setDefaultLabels(options.labels);
    // Process CPU, memory, file descriptors, GC and event-loop lag (the scale bench reads it).
    collectDefaultMetrics({ register, prefix: 'tessera_process_' });

    this.roundAttempts = new Counter({
      name: 'tessera_round_attempts_total',
      help: 'Training attempts started (a round retried for too few updates counts again)',
      labelNames: ['strategy'],
      registers: [register],
    });
    this.roundsCommitted = new Counter({
      name: 'tessera_rounds_committed_total',
      help: 'Rounds committed: a new global model and its round record',
      labelNames: ['strategy'],
      registers: [register],
    });
    this.roundPhaseSeconds = new Histogram({
      name: 'tessera_round_phase_seconds',
      help: 'Wall time of round phases: training (first attempt started to commit, retries included) and evaluation (commit to evaluation recorded)',
      labelNames: ['phase'],
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
      registers: [register],
    });
    this.runsFinished = new Counter({
      name: 'tessera_runs_finished_total',
      help: 'Runs that ended in this process, by final status',
      labelNames: ['status'],
      registers: [register],
    });
    this.replies = new Counter({
      name: 'tessera_client_replies_total',
      help: 'Client replies (update, evaluation, ...): accepted, or refused with the error code sent back',
      labelNames: ['event', 'outcome', 'code'],
      registers: [register],
    });
    this.connectionsRefused = new Counter({
      name: 'tessera_connections_refused_total',
      help: 'Socket.IO handshakes refused, by error code',
      labelNames: ['code'],
      registers: [register],
    });
    this.socketBytes = new Counter({
      name: 'tessera_socket_bytes_total',
      help: 'Engine.IO packet payload bytes received (in) and sent (out) on client and console sockets',
      labelNames: ['direction'],
      registers: [register],
    });
    this.databaseCalls = new Histogram({
      name: 'tessera_database_call_seconds',
      help: 'Database calls of the round engines and the socket edge, retries included, by repository call',
      labelNames: ['call', 'outcome'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
      registers: [register],
    });
    this.foldedRemote = new Counter({
      name: 'tessera_updates_folded_remote_total',
      help: 'Updates this process folded into a partial sum for a run another process owns (aggregation where the updates arrive)',
      registers: [register],
    });
    this.framesDelivered = new Counter({
      name: 'tessera_frames_delivered_total',
      help: 'Frames for clients another coordinator process holds: published by this process to the one that holds them (sent), or published to this process and sent out paced to its own connections (received)',
      labelNames: ['direction'],
      registers: [register],
    });
    this.readPauses = new Counter({
      name: 'tessera_client_read_pauses_total',
      help: 'Times this process stopped reading its client connections because more replies were queued for handling than its bound (back-pressure; reads resume at half the bound)',
      registers: [register],
    });
    this.partialsCollected = new Counter({
      name: 'tessera_partials_collected_total',
      help: 'Partial sums this process, owning the run, asked other processes for at the end of a round: received, or lost (the process gone or too late; its clients dropped)',
      labelNames: ['outcome'],
      registers: [register],
    });
    this.leasesLost = new Counter({
      name: 'tessera_run_leases_lost_total',
      help: 'Run leases this process lost to another coordinator (or could not renew in time)',
      registers: [register],
    });

    const { registry, leases } = options;
    new Gauge({
      name: 'tessera_connected_clients',
      help: 'Clients connected to this process, by runtime and (known) backend',
      labelNames: ['runtime', 'backend'],
      registers: [register],
      collect() {
        this.reset();
        for (const session of registry.connectedHere()) {
          this.inc({
            runtime: session.info.runtime,
            backend: knownBackend(session.info.backend),
          });
        }
      },
    });
    new Gauge({
      name: 'tessera_busy_clients',
      help: 'Connected clients training or evaluating for a round now',
      registers: [register],
      collect() {
        this.set(registry.connectedHere().filter((session) => session.task !== null).length);
      },
    });
    new Gauge({
      name: 'tessera_run_leases_held',
      help: 'Runs whose lease this process holds (the runs it drives)',
      registers: [register],
      collect() {
        this.set(leases.heldCount);
      },
    });
  }

  /** Follows one engine's rounds until its run finishes. */
  observeEngine(engine: RunEngine): void {
    const strategy = engine.run.config.strategy;
    const key = (round: number) => `${engine.runId}:${round}`;
    engine.on('round-started', ({ round, attempt }) => {
      this.roundAttempts.inc({ strategy });
      if (attempt === 1 || !this.phaseStarts.has(key(round))) {
        this.phaseStarts.set(key(round), this.now());
      }
    });
    engine.on('round-committed', ({ round }) => {
      this.roundsCommitted.inc({ strategy });
      this.endPhase(key(round), 'training');
      this.phaseStarts.set(`${key(round)}:evaluation`, this.now());
    });
    engine.on('round-evaluated', ({ round }) => {
      this.endPhase(`${key(round)}:evaluation`, 'evaluation');
    });
    engine.on('run-finished', ({ status }) => {
      this.runsFinished.inc({ status });
      for (const open of this.phaseStarts.keys()) {
        if (open.startsWith(`${engine.runId}:`)) this.phaseStarts.delete(open);
      }
    });
  }

  private endPhase(key: string, phase: 'training' | 'evaluation'): void {
    const started = this.phaseStarts.get(key);
    if (started === undefined) return;
    this.phaseStarts.delete(key);
    this.roundPhaseSeconds.observe({ phase }, (this.now() - started) / 1000);
  }

  /** A client frame the socket edge handled: `code` is the coded refusal sent back, if any. */
  recordReply(event: string, code: string | null): void {
    this.replies.inc({
      event: KNOWN_EVENTS.has(event) ? event : 'other',
      outcome: code === null ? 'accepted' : 'refused',
      code: code ?? '',
    });
  }

  recordConnectionRefused(code: string): void {
    this.connectionsRefused.inc({ code });
  }

  recordSocketBytes(direction: 'in' | 'out', bytes: number): void {
    this.socketBytes.inc({ direction }, bytes);
  }

  recordDatabaseCall(call: string, seconds: number, ok: boolean): void {
    this.databaseCalls.observe({ call, outcome: ok ? 'ok' : 'error' }, seconds);
  }

  recordLeaseLost(): void {
    this.leasesLost.inc();
  }

  recordFoldedRemote(): void {
    this.foldedRemote.inc();
  }

  recordFrameDelivered(direction: 'sent' | 'received'): void {
    this.framesDelivered.inc({ direction });
  }

  recordReadsPaused(paused: boolean): void {
    if (paused) this.readPauses.inc();
  }

  recordPartialCollected(received: boolean): void {
    this.partialsCollected.inc({ outcome: received ? 'received' : 'lost' });
  }

  /** The text exposition format, and its content type. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

const KNOWN_EVENTS = new Set(['update', 'evaluation', 'progress', 'task', 'statistics', 'secagg']);

/**
 * The backends Tessera's own clients report (and common ones of other clients'); anything else
 * is `other`, so client-chosen text never becomes a label value.
 */
const KNOWN_BACKENDS = new Set([
  'cpu',
  'wasm',
  'webgl',
  'webgpu',
  'tensorflow',
  'tensorflow-gpu',
  'openblas',
  'numpy',
  'pytorch',
  'jax',
]);

export function knownBackend(backend: string): string {
  return KNOWN_BACKENDS.has(backend) ? backend : 'other';
}

/** The payload size of an Engine.IO packet (text or binary). */
export function packetBytes(data: unknown): number {
  if (typeof data === 'string') return Buffer.byteLength(data);
  if (data instanceof ArrayBuffer) return data.byteLength;
  if (ArrayBuffer.isView(data)) return data.byteLength;
  return 0;
}
