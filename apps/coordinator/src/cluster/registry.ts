import {
  type ClientSession,
  type ClientTask,
  LocalClientRegistry,
  type RegistryOptions,
} from '../registry.js';
import type { RedisClient } from './redis.js';

/** A session as it travels between processes (dates as ISO strings). */
type WireSession = Omit<ClientSession, 'connectedAt' | 'lastSeenAt'> & {
  connectedAt: string;
  lastSeenAt: string;
};

/** What one process tells the others, on the registry channel. `from`: the process id. */
type RegistryMessage = { from: string } & (
  | { op: 'add'; session: WireSession }
  | { op: 'remove'; clientId: string; connectionId: string }
  | { op: 'assign'; clientIds: string[]; task: ClientTask }
  | { op: 'release'; clientId: string; runId: string }
  | { op: 'backoff'; clientId: string; timeouts: number; until: number }
  | { op: 'touch'; clientId: string }
);

export interface ClusterRegistryOptions extends RegistryOptions {
  commands: RedisClient;
  subscriber: RedisClient;
  prefix: string;
  /** This process's id (its lease owner name). */
  processId: string;
  /**
   * A process that has not renewed its liveness key for this long is dead: its clients leave
   * every other process's registry, and tasks it assigned are freed. Renewed every third.
   */
  heartbeatMs: number;
  /** Told when a heartbeat or a reconciliation fails (Redis down); it retries. */
  onError?: (error: Error) => void;
}

/** A busy client's task in the shared task table: who assigned it, and when (ms). */
interface StoredTask {
  task: ClientTask;
  assigner: string;
  at: number;
}

const toWire = (session: ClientSession): WireSession => ({
  ...session,
  connectedAt: session.connectedAt.toISOString(),
  lastSeenAt: session.lastSeenAt.toISOString(),
});

const fromWire = (session: WireSession): ClientSession => ({
  ...session,
  connectedAt: new Date(session.connectedAt),
  lastSeenAt: new Date(session.lastSeenAt),
});

/**
 * The clients of every coordinator process that shares the Redis prefix. Each process keeps a
 * full copy (the interface is synchronous: the engine samples and assigns within one turn) and
 * tells the others of each change on one pub/sub channel; Redis delivers one publisher's
 * messages in order. Each process also keeps its own clients in a hash with an expiry that its
 * heartbeat renews, next to a liveness key: a process that starts reads them, and when a
 * process dies (SIGKILL: it says nothing) its liveness key expires, and every other process
 * drops its clients ('disconnected': engines take them out of open rounds) and frees the
 * tasks it had assigned, so a new owner of its runs can sample them again. The tasks are also
 * kept in one shared hash (client → task, assigner, time) while they last, so a process that
 * starts while rounds are open knows which clients are busy, not only those assigned later.
 *
 * Not shared: training progress (each process shows its own clients' progress).
 */
export class ClusterClientRegistry extends LocalClientRegistry {
  /** Which process holds each client's connection. */
  private readonly homes = new Map<string, string>();
  /** Which process assigned each busy client's task. */
  private readonly assigners = new Map<string, string>();
  private timer: NodeJS.Timeout | null = null;
  private readonly channel: string;
  private readonly ownHash: string;
  private readonly tasksHash: string;
  private readonly onMessage = (message: string) => {
    const parsed = JSON.parse(message) as RegistryMessage;
    if (parsed.from !== this.options.processId) this.apply(parsed);
  };

  private constructor(private readonly options: ClusterRegistryOptions) {
    super(options);
    this.channel = `${options.prefix}registry`;
    this.ownHash = this.sessionsKey(options.processId);
    this.tasksHash = `${options.prefix}tasks`;
  }

  static async start(options: ClusterRegistryOptions): Promise<ClusterClientRegistry> {
    const registry = new ClusterClientRegistry(options);
    // Subscribed before the snapshot is read: nothing said in between is missed.
    await options.subscriber.subscribe(registry.channel, registry.onMessage);
    await registry.heartbeat();
    await registry.loadSnapshot();
    registry.timer = setInterval(
      () => {
        registry
          .heartbeat()
          .then(() => registry.reconcile())
          .catch((error: Error) => options.onError?.(error));
      },
      Math.max(100, Math.floor(options.heartbeatMs / 3)),
    );
    registry.timer.unref();
    return registry;
  }

  /** Which process holds the client's connection (undefined: not connected anywhere). */
  homeOf(clientId: string): string | undefined {
    return this.homes.get(clientId);
  }

  override connectedHere(): ClientSession[] {
    return this.list().filter((s) => this.homes.get(s.clientId) === this.options.processId);
  }

  override add(session: ClientSession): ClientSession | undefined {
    const previous = super.add(session);
    this.homes.set(session.clientId, this.options.processId);
    this.assigners.delete(session.clientId);
    this.publish({ op: 'add', session: toWire(session) });
    void this.options.commands
      .hSet(this.ownHash, session.clientId, JSON.stringify(toWire(session)))
      .catch(this.reportError);
    return previous;
  }

  override remove(clientId: string, connectionId: string): ClientSession | undefined {
    const wasHome = this.homes.get(clientId) === this.options.processId;
    const removed = this.forget(clientId, connectionId);
    if (!removed) return undefined;
    this.publish({ op: 'remove', clientId, connectionId });
    if (wasHome) void this.options.commands.hDel(this.ownHash, clientId).catch(this.reportError);
    return removed;
  }

  override assign(clientIds: readonly string[], task: ClientTask): void {
    super.assign(clientIds, task);
    for (const id of clientIds) this.assigners.set(id, this.options.processId);
    if (clientIds.length === 0) return;
    this.publish({ op: 'assign', clientIds: [...clientIds], task });
    const stored: StoredTask = { task, assigner: this.options.processId, at: Date.now() };
    const value = JSON.stringify(stored);
    void this.options.commands
      .hSet(this.tasksHash, Object.fromEntries(clientIds.map((id) => [id, value])))
      .catch(this.reportError);
  }

  override release(clientId: string, runId: string): void {
    if (this.sessions.get(clientId)?.task?.runId !== runId) return;
    super.release(clientId, runId);
    this.assigners.delete(clientId);
    this.publish({ op: 'release', clientId, runId });
    void this.options.commands.hDel(this.tasksHash, clientId).catch(this.reportError);
  }

  override timedOut(clientId: string): void {
    super.timedOut(clientId);
    const backoff = this.backoffs.get(clientId);
    if (backoff) this.publish({ op: 'backoff', clientId, ...backoff });
  }

  override touch(clientId: string): void {
    const backingOff = this.backoffs.has(clientId);
    super.touch(clientId);
    // Only an ended back-off is news to the others (progress frames are frequent).
    if (backingOff) this.publish({ op: 'touch', clientId });
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    // Redis unreachable: the others drop this process's clients when its keys expire.
    if (!this.options.commands.isReady || !this.options.subscriber.isReady) return;
    await this.options.subscriber.unsubscribe(this.channel, this.onMessage).catch(() => {});
    // A clean stop: the others drop this process's clients at once rather than at expiry.
    for (const session of this.list()) {
      if (this.homes.get(session.clientId) === this.options.processId)
        this.publish({
          op: 'remove',
          clientId: session.clientId,
          connectionId: session.connectionId,
        });
    }
    await this.options.commands
      .del([this.ownHash, this.aliveKey(this.options.processId)])
      .catch(() => {});
  }

  private sessionsKey(processId: string): string {
    return `${this.options.prefix}sessions:${processId}`;
  }

  private aliveKey(processId: string): string {
    return `${this.options.prefix}alive:${processId}`;
  }

  private readonly reportError = (error: unknown) => this.options.onError?.(error as Error);

  private publish(message: RegistryMessage extends infer M ? DistributiveOmit<M, 'from'> : never) {
    void this.options.commands
      .publish(this.channel, JSON.stringify({ ...message, from: this.options.processId }))
      .catch(this.reportError);
  }

  /** Removes a session without telling anyone (the base class's remove, and its events). */
  private forget(clientId: string, connectionId: string): ClientSession | undefined {
    const removed = super.remove(clientId, connectionId);
    if (removed) {
      this.homes.delete(clientId);
      this.assigners.delete(clientId);
    }
    return removed;
  }

  private apply(message: RegistryMessage): void {
    switch (message.op) {
      case 'add': {
        const session = fromWire(message.session);
        // A newer connection elsewhere replaces ours: its process closes our socket.
        if (this.homes.get(session.clientId) === this.options.processId)
          void this.options.commands.hDel(this.ownHash, session.clientId).catch(this.reportError);
        super.add(session);
        this.homes.set(session.clientId, message.from);
        this.assigners.delete(session.clientId);
        return;
      }
      case 'remove':
        if (this.homes.get(message.clientId) === this.options.processId) {
          // Revoked elsewhere: our socket is closed by the adapter; its record goes now.
          void this.options.commands.hDel(this.ownHash, message.clientId).catch(this.reportError);
        }
        this.forget(message.clientId, message.connectionId);
        return;
      case 'assign':
        super.assign(message.clientIds, message.task);
        for (const id of message.clientIds) this.assigners.set(id, message.from);
        return;
      case 'release':
        super.release(message.clientId, message.runId);
        this.assigners.delete(message.clientId);
        return;
      case 'backoff':
        this.backoffs.set(message.clientId, { timeouts: message.timeouts, until: message.until });
        return;
      case 'touch':
        super.touch(message.clientId);
        return;
    }
  }

  private async heartbeat(): Promise<void> {
    const ttl = this.options.heartbeatMs;
    await Promise.all([
      this.options.commands.set(this.aliveKey(this.options.processId), '1', { PX: ttl }),
      this.options.commands.pExpire(this.ownHash, ttl),
    ]);
  }

  /**
   * The sessions of the processes alive now, and the tasks of their busy clients (read once,
   * at start; changes from then on arrive on the channel, subscribed to before this read).
   */
  private async loadSnapshot(): Promise<void> {
    const keys: string[] = [];
    for await (const batch of this.options.commands.scanIterator({
      MATCH: `${this.options.prefix}sessions:*`,
      COUNT: 100,
    }))
      keys.push(...batch);
    for (const key of keys) {
      const processId = key.slice(`${this.options.prefix}sessions:`.length);
      if (processId === this.options.processId) continue;
      if (!(await this.options.commands.exists(this.aliveKey(processId)))) continue;
      const entries = await this.options.commands.hGetAll(key);
      for (const raw of Object.values(entries)) {
        const session = fromWire(JSON.parse(raw) as WireSession);
        const known = this.sessions.get(session.clientId);
        if (known && known.connectedAt >= session.connectedAt) continue;
        super.add(session);
        this.homes.set(session.clientId, processId);
      }
    }
    const tasks = await this.options.commands.hGetAll(this.tasksHash);
    const alive = new Map<string, boolean>();
    for (const [clientId, raw] of Object.entries(tasks)) {
      const stored = JSON.parse(raw) as StoredTask;
      const session = this.sessions.get(clientId);
      // A task older than the client's connection belongs to a connection that is gone; one
      // the channel already brought (assigned since the subscription) is newer than this read.
      if (!session || session.task !== null || stored.at < session.connectedAt.getTime()) continue;
      if (!alive.has(stored.assigner))
        alive.set(
          stored.assigner,
          (await this.options.commands.exists(this.aliveKey(stored.assigner))) === 1,
        );
      if (!alive.get(stored.assigner)) continue;
      super.assign([clientId], stored.task);
      this.assigners.set(clientId, stored.assigner);
    }
  }

  /** Drops the clients of processes whose liveness key expired, and frees their tasks. */
  private async reconcile(): Promise<void> {
    const others = new Set<string>();
    for (const home of this.homes.values()) if (home !== this.options.processId) others.add(home);
    for (const home of this.assigners.values())
      if (home !== this.options.processId) others.add(home);
    for (const processId of others) {
      if (await this.options.commands.exists(this.aliveKey(processId))) continue;
      for (const session of this.list()) {
        if (this.homes.get(session.clientId) === processId)
          this.forget(session.clientId, session.connectionId);
      }
      for (const [clientId, assigner] of this.assigners) {
        if (assigner !== processId) continue;
        const task = this.sessions.get(clientId)?.task;
        if (task) super.release(clientId, task.runId);
        this.assigners.delete(clientId);
        // Every survivor frees them; deleting the same field twice is harmless.
        void this.options.commands.hDel(this.tasksHash, clientId).catch(this.reportError);
      }
    }
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
