import { ErrorCode, TesseraError } from '@tessera/protocol';
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

  /**
   * Busy here at once (the base class's assign); then one script in Redis gives each client
   * to the first claim of its task-table field, so of two processes that sampled the same
   * idle client in the same few milliseconds exactly one keeps it. Only the winners are told
   * to the others; a loser is released here unless the winner's news already replaced its
   * task. Redis unreachable: no claim holds, and the round is refused UNAVAILABLE.
   */
  override async claim(clientIds: readonly string[], task: ClientTask): Promise<string[]> {
    const here = clientIds.filter((id) => this.sessions.has(id));
    // What a lost claim gives back (null for a client drawn idle, as the engine draws them).
    const before = new Map(here.map((id) => [id, this.sessions.get(id)?.task ?? null]));
    this.assign(here, task);
    if (here.length === 0) return [];
    const stored: StoredTask = { task, assigner: this.options.processId, at: Date.now() };
    let won: string[];
    try {
      won = (await this.options.commands.eval(CLAIM_SCRIPT, {
        keys: [this.tasksHash],
        arguments: [
          JSON.stringify(stored),
          `${this.options.prefix}alive:`,
          ...here.flatMap((id) => [id, String(this.sessions.get(id)?.connectedAt.getTime() ?? 0)]),
        ],
      })) as string[];
    } catch (cause) {
      for (const id of here) this.unassign(id, task, before.get(id) ?? null);
      throw new TesseraError(
        ErrorCode.UNAVAILABLE,
        `could not claim clients in Redis: ${(cause as Error).message}`,
      );
    }
    const winners = new Set(won);
    for (const id of here) {
      if (!winners.has(id)) this.unassign(id, task, before.get(id) ?? null);
      else this.assigners.set(id, this.options.processId);
    }
    if (won.length > 0) this.publish({ op: 'assign', clientIds: won, task });
    return here.filter((id) => winners.has(id));
  }

  override release(clientId: string, runId: string): void {
    if (this.sessions.get(clientId)?.task?.runId !== runId) return;
    super.release(clientId, runId);
    this.assigners.delete(clientId);
    // The field goes before the news: a process told of the release finds the client free.
    void this.options.commands.hDel(this.tasksHash, clientId).catch(this.reportError);
    this.publish({ op: 'release', clientId, runId });
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

  /**
   * Takes back this claim's task (a lost claim), unless another's has replaced it since: the
   * client has the task it had before, as far as this process knows.
   */
  private unassign(clientId: string, task: ClientTask, previous: ClientTask | null): void {
    const session = this.sessions.get(clientId);
    if (session?.task !== task) return;
    session.task = previous;
    if (previous === null) this.emit('change');
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

/**
 * A claim of clients' task-table fields: KEYS[1] the table; ARGV[1] the stored task, ARGV[2]
 * the liveness keys' prefix, then (client id, connected-at ms) pairs. A field is free when it
 * is absent, older than the client's connection (a task of a connection that is gone), or
 * set by a process whose liveness key expired. Returns the ids claimed. One script: Redis
 * runs it whole, so two claims of one client cannot both find it free.
 */
const CLAIM_SCRIPT = `
local won = {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local existing = redis.call('HGET', KEYS[1], id)
  local free = not existing
  if existing then
    local stored = cjson.decode(existing)
    free = stored.at < tonumber(ARGV[i + 1])
      or redis.call('EXISTS', ARGV[2] .. stored.assigner) == 0
  end
  if free then
    redis.call('HSET', KEYS[1], id, ARGV[1])
    won[#won + 1] = id
  end
end
return won
`;

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
