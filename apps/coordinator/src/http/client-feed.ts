import type { ClientRegistry, ClientSession } from '../registry.js';

/** A connected client as the console gets it: no connection id, dates as ISO strings. */
export type ClientRow = Omit<ClientSession, 'connectionId' | 'connectedAt' | 'lastSeenAt'> & {
  connectedAt: string;
  lastSeenAt: string;
};

/**
 * What changed in the connected-client list since the last frame, by client id. `added` and
 * `changed` both carry whole rows and are applied as upserts, `removed` ids that are absent are
 * ignored: a console that already has a newer snapshot can apply a delta without harm.
 */
export interface ClientsDelta {
  added: ClientRow[];
  changed: ClientRow[];
  removed: string[];
}

export interface LiveClientListOptions {
  registry: ClientRegistry;
  /** How many consoles listen now: with none, changes cost nothing. */
  listeners(): number;
  /** Sends one non-empty delta to every listener. */
  send(delta: ClientsDelta): void;
  /** Runs after each throttled flush while someone listens (the feed's round progress). */
  afterFlush?(): void;
  /** At most one flush per this many milliseconds. */
  intervalMs: number;
}

function rowOf({ connectionId: _c, ...session }: ClientSession): string {
  return JSON.stringify(session);
}

/**
 * The console's connected-client list, sent as throttled deltas. A registry change only marks
 * the list dirty and arms one timer; when it fires, the list is diffed against what was last
 * sent (one pass over the sessions) and one delta frame goes out. With N clients and a change
 * per client, a round costs O(N) per frame and a bounded number of frames, instead of a full
 * list per change (O(N²)). With no console connected, a change does nothing at all.
 */
export class LiveClientList {
  /** Last sent row of each client, as JSON: what the consoles have now. */
  private readonly sent = new Map<string, string>();
  private timer: NodeJS.Timeout | null = null;
  /** How many times the list was built (diffed or snapshotted): for tests and profiling. */
  builds = 0;
  /** How many delta frames were sent. */
  frames = 0;

  constructor(private readonly options: LiveClientListOptions) {
    options.registry.on('change', () => this.changed());
  }

  /** Something in the list may have changed (also progress and tasks, which emit no event). */
  changed(): void {
    if (this.timer !== null || this.options.listeners() === 0) return;
    this.timer = setTimeout(() => this.flush(), this.options.intervalMs);
    this.timer.unref();
  }

  /**
   * A console subscribed: the full list for it, and the delta that brings the others (if any)
   * up to the same list, so that from now on every console has what `sent` holds.
   */
  subscribe(othersListening: boolean): { rows: ClientRow[]; delta: ClientsDelta | null } {
    this.cancel();
    if (!othersListening) this.sent.clear();
    const delta = this.diff();
    const rows = [...this.sent.values()].map((text) => JSON.parse(text) as ClientRow);
    return { rows, delta: othersListening && !isEmpty(delta) ? delta : null };
  }

  /** Sends what changed since the last frame, now. */
  flush(): void {
    this.cancel();
    if (this.options.listeners() === 0) {
      // Nobody to keep in step: the next subscriber gets a snapshot and a fresh baseline.
      this.sent.clear();
      return;
    }
    const delta = this.diff();
    if (!isEmpty(delta)) {
      this.frames++;
      this.options.send(delta);
    }
    this.options.afterFlush?.();
  }

  close(): void {
    this.cancel();
    this.sent.clear();
  }

  private cancel(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** One pass over the sessions: rows that are new or differ from the sent ones, and the gone. */
  private diff(): ClientsDelta {
    this.builds++;
    const delta: ClientsDelta = { added: [], changed: [], removed: [] };
    const seen = new Set<string>();
    for (const session of this.options.registry.list()) {
      seen.add(session.clientId);
      const text = rowOf(session);
      const before = this.sent.get(session.clientId);
      if (before === text) continue;
      this.sent.set(session.clientId, text);
      (before === undefined ? delta.added : delta.changed).push(JSON.parse(text) as ClientRow);
    }
    for (const clientId of this.sent.keys()) {
      if (seen.has(clientId)) continue;
      this.sent.delete(clientId);
      delta.removed.push(clientId);
    }
    return delta;
  }
}

function isEmpty(delta: ClientsDelta): boolean {
  return delta.added.length === 0 && delta.changed.length === 0 && delta.removed.length === 0;
}
