import { EventEmitter } from 'node:events';
import type { Hello } from '@tessera/protocol';

/** What a client is doing for the coordinator right now. */
export interface ClientTask {
  runId: string;
  round: number;
  /** `statistics`: the run's federated statistics round, before round 1 (round 0). */
  phase: 'train' | 'evaluate' | 'statistics';
}

export interface ClientSession {
  clientId: string;
  federationId: string;
  organisation: string;
  /** The transport's address for this connection (a Socket.IO socket id). */
  connectionId: string;
  info: Hello['client'];
  connectedAt: Date;
  lastSeenAt: Date;
  task: ClientTask | null;
  progress: {
    epoch: number;
    epochs: number;
    batch: number;
    batches: number;
    loss: number | null;
  } | null;
}

/**
 * How long a client that let a deadline pass without a word is left out of sampling: `baseMs`
 * after its first timeout, doubling with each further one in a row, at most `maxMs`. Any frame
 * from it (an update, an evaluation reply, progress) ends the back-off at once.
 */
export interface TimeoutBackoff {
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_TIMEOUT_BACKOFF: TimeoutBackoff = { baseMs: 60_000, maxMs: 3_600_000 };

export interface RegistryOptions {
  timeoutBackoff?: TimeoutBackoff;
  /** The clock back-offs are measured on (ms); tests pass their own. */
  now?: () => number;
}

export interface RegistryEvents {
  /** A client connected, left, or became idle: round engines waiting for clients look again. */
  change: [];
  disconnected: [session: ClientSession];
}

/**
 * The connected clients and what each is busy with: what the round engine, the socket edge and
 * the console feed need. One client (token) has at most one session: a new connection replaces
 * the old one. LocalClientRegistry holds one process's clients; ClusterClientRegistry
 * (cluster-registry.ts) every coordinator's, shared through Redis. Every method is synchronous:
 * the engine samples and assigns inside one turn of the event loop.
 */
export interface ClientRegistry extends EventEmitter<RegistryEvents> {
  add(session: ClientSession): ClientSession | undefined;
  remove(clientId: string, connectionId: string): ClientSession | undefined;
  revoke(clientId: string): ClientSession | undefined;
  get(clientId: string): ClientSession | undefined;
  /** Every connected client (in cluster mode, those of every process). */
  list(): ClientSession[];
  /** The clients whose connection this process holds (/metrics and /healthz are per process). */
  connectedHere(): ClientSession[];
  idle(federationId: string): string[];
  eligible(federationId: string): string[];
  timedOut(clientId: string): void;
  backoffUntil(clientId: string): number | null;
  /**
   * Gives the clients a task. They are busy here at once, before anything is awaited, so no
   * other run of this process samples them; the promise resolves with the clients whose task
   * holds, the ones the caller's round may send work to. In a cluster another process may
   * have given some of them a task of its own in the same few milliseconds (both saw them
   * idle): one claim per client wins, in Redis, and the losers are released here.
   */
  claim(clientIds: readonly string[], task: ClientTask): Promise<string[]>;
  release(clientId: string, runId: string): void;
  touch(clientId: string): void;
}

/** The connected clients of this coordinator process (one process, no cluster). */
export class LocalClientRegistry extends EventEmitter<RegistryEvents> implements ClientRegistry {
  protected readonly sessions = new Map<string, ClientSession>();
  /**
   * Back-offs by client id, not by session: a silent client that reconnects is still silent.
   * `timeouts` counts deadlines missed in a row.
   */
  protected readonly backoffs = new Map<string, { timeouts: number; until: number }>();
  protected readonly timeoutBackoff: TimeoutBackoff;
  protected readonly now: () => number;

  constructor(options: RegistryOptions = {}) {
    super();
    this.timeoutBackoff = options.timeoutBackoff ?? DEFAULT_TIMEOUT_BACKOFF;
    this.now = options.now ?? Date.now;
  }

  add(session: ClientSession): ClientSession | undefined {
    const previous = this.sessions.get(session.clientId);
    this.sessions.set(session.clientId, session);
    // The replaced connection's work is lost with it: engines drop it from its round.
    if (previous) this.emit('disconnected', previous);
    this.emit('change');
    return previous;
  }

  /** Removes the session if it is still the one on this connection (a replaced one is not). */
  remove(clientId: string, connectionId: string): ClientSession | undefined {
    const session = this.sessions.get(clientId);
    if (!session || session.connectionId !== connectionId) return undefined;
    this.sessions.delete(clientId);
    this.emit('disconnected', session);
    this.emit('change');
    return session;
  }

  /**
   * Takes a revoked client out at once: its session is removed and engines drop it from any
   * open round ('disconnected'), so nothing it sends from now on reaches a round. Returns the
   * session so the caller can close its connection; the socket's own disconnect that follows
   * finds nothing left to remove.
   */
  revoke(clientId: string): ClientSession | undefined {
    const session = this.sessions.get(clientId);
    if (!session) return undefined;
    return this.remove(clientId, session.connectionId);
  }

  get(clientId: string): ClientSession | undefined {
    return this.sessions.get(clientId);
  }

  list(): ClientSession[] {
    return [...this.sessions.values()];
  }

  connectedHere(): ClientSession[] {
    return this.list();
  }

  /** Connected clients of the federation that are not in any round. */
  idle(federationId: string): string[] {
    return this.list()
      .filter((s) => s.federationId === federationId && s.task === null)
      .map((s) => s.clientId);
  }

  /** Idle clients that may be sampled now: those backing off after a timeout are left out. */
  eligible(federationId: string): string[] {
    const now = this.now();
    return this.idle(federationId).filter((id) => (this.backoffs.get(id)?.until ?? 0) <= now);
  }

  /** A client was still pending when a phase's deadline passed: it backs off (see TimeoutBackoff). */
  timedOut(clientId: string): void {
    const timeouts = (this.backoffs.get(clientId)?.timeouts ?? 0) + 1;
    const { baseMs, maxMs } = this.timeoutBackoff;
    const delay = Math.min(maxMs, baseMs * 2 ** Math.min(timeouts - 1, 52));
    this.backoffs.set(clientId, { timeouts, until: this.now() + delay });
  }

  /** When the client's back-off ends (ms on the registry's clock), or null if it has none. */
  backoffUntil(clientId: string): number | null {
    const until = this.backoffs.get(clientId)?.until;
    return until === undefined || until <= this.now() ? null : until;
  }

  /** One process alone: every connected client's claim holds. */
  claim(clientIds: readonly string[], task: ClientTask): Promise<string[]> {
    this.assign(clientIds, task);
    return Promise.resolve(clientIds.filter((id) => this.sessions.has(id)));
  }

  /** Sets the clients' task here, asking no one (a claim, or another process's news of one). */
  assign(clientIds: readonly string[], task: ClientTask): void {
    for (const id of clientIds) {
      const session = this.sessions.get(id);
      if (session) {
        session.task = task;
        session.progress = null;
      }
    }
  }

  /** Frees a client from the given run's work (and only that: a newer task is kept). */
  release(clientId: string, runId: string): void {
    const session = this.sessions.get(clientId);
    if (session?.task?.runId !== runId) return;
    session.task = null;
    session.progress = null;
    this.emit('change');
  }

  /** The edge heard a frame from the client: it is alive, so any timeout back-off ends. */
  touch(clientId: string): void {
    const session = this.sessions.get(clientId);
    if (session) session.lastSeenAt = new Date();
    if (this.backoffs.delete(clientId)) this.emit('change');
  }
}
