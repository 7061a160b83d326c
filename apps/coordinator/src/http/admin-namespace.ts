import type { RunRecord } from '@tessera/db';
import { ErrorCode, TesseraError, type WireError } from '@tessera/protocol';
import type { Namespace, Server, Socket } from 'socket.io';
import { z } from 'zod';
import type { Coordinator } from '../coordinator.js';
import type { ClientSession } from '../registry.js';
import { type AuthOptions, type Principal, requireAdmin, resolvePrincipal } from './auth.js';
import { type ClientRow, type ClientsDelta, LiveClientList } from './client-feed.js';
import type { RunControl } from './run-control.js';

/** A connected client as the console shows it (no connection ids). */
export type ClientView = Omit<ClientSession, 'connectionId'>;
export type { ClientRow, ClientsDelta } from './client-feed.js';

export interface OpenRoundView {
  runId: string;
  round: number;
  attempt: number;
  selected: string[];
  /** Selected clients that answered (or dropped out): no longer busy with this round. */
  replied: number;
  startedAt: string;
  deadlineAt: string;
}

/** What the coordinator pushes to the console on the `/admin` namespace. */
export interface AdminServerEvents {
  snapshot: (state: { clients: ClientRow[]; openRounds: OpenRoundView[] }) => void;
  /** What changed in the client list since the last frame (at most one per CLIENTS_INTERVAL_MS). */
  'clients-delta': (delta: ClientsDelta) => void;
  'round-started': (round: OpenRoundView) => void;
  'round-progress': (round: OpenRoundView) => void;
  'round-committed': (event: { runId: string; round: number; record: unknown }) => void;
  'round-evaluated': (event: { runId: string; round: number; record: unknown }) => void;
  'run-status': (run: unknown) => void;
}

export type AdminAck = (
  answer: { ok: true; run: unknown } | { ok: false; error: WireError },
) => void;

export interface AdminClientEvents {
  /** Start (or resume), pause (after the open round) or stop a run: admins only. */
  'run-control': (request: unknown, ack: AdminAck) => void;
}

interface AdminSocketData {
  principal: Principal;
}

type AdminNamespace = Namespace<
  AdminClientEvents,
  AdminServerEvents,
  Record<string, never>,
  AdminSocketData
>;
type AdminSocket = Socket<
  AdminClientEvents,
  AdminServerEvents,
  Record<string, never>,
  AdminSocketData
>;

const runControlSchema = z.object({
  runId: z.string().min(1),
  action: z.enum(['start', 'pause', 'stop']),
});

/** Dates as ISO strings, like the REST API: the console gets one shape from both. */
function plain<T>(value: T): unknown {
  return JSON.parse(JSON.stringify(value));
}

/** How often per-client training progress is looked at while a round is open. */
const PROGRESS_INTERVAL_MS = 1000;
/** At most one client-list delta (and round-progress push) per this many milliseconds. */
export const CLIENTS_INTERVAL_MS = 250;
/** How often the feeds' sessions are checked for expiry. */
const SESSION_CHECK_MS = 60_000;

/**
 * The console's live feed: Socket.IO namespace `/admin`, behind the same session cookie (or
 * bearer admin token) as the REST API. It pushes connected clients, round progress and round
 * results as they happen, so the console never polls. The only client event, `run-control`,
 * is refused to researchers (FORBIDDEN) and to ended sessions (UNAUTHORIZED).
 */
export class AdminFeed {
  private readonly nsp: AdminNamespace;
  private readonly openRounds = new Map<string, Omit<OpenRoundView, 'replied'>>();
  /** The last round-progress sent per run, as JSON: unchanged progress is not sent again. */
  private readonly sentProgress = new Map<string, string>();
  private readonly timer: NodeJS.Timeout;
  /** The connected-client list, as throttled deltas: nothing is built while nobody listens. */
  readonly clientList: LiveClientList;

  constructor(
    io: Server,
    private readonly coordinator: Coordinator,
    private readonly auth: AuthOptions,
    private readonly control: RunControl,
  ) {
    control.onStarted((run) => this.runChanged(run));
    this.nsp = io.of('/admin') as unknown as AdminNamespace;
    this.nsp.use(async (socket, next) => {
      try {
        const { headers } = socket.handshake;
        const bearer =
          typeof socket.handshake.auth['adminToken'] === 'string'
            ? `Bearer ${socket.handshake.auth['adminToken']}`
            : headers.authorization;
        // A page on another site must not ride on the console's cookie (cross-site WebSocket
        // hijacking): with a session, the Origin must be this host.
        const principal = await resolvePrincipal(auth, {
          authorization: bearer,
          cookie: headers.cookie,
        });
        if (principal.kind === 'user' && headers.origin !== undefined) {
          const originHost = URL.canParse(headers.origin) ? new URL(headers.origin).host : '';
          if (originHost !== headers.host) {
            throw new TesseraError(ErrorCode.FORBIDDEN, 'cross-origin console connection refused');
          }
        }
        socket.data.principal = principal;
        next();
      } catch (cause) {
        const error = TesseraError.from(cause);
        const refusal = new Error(error.message) as Error & { data: unknown };
        refusal.data = error.toWire();
        next(refusal);
      }
    });
    this.nsp.on('connection', (socket) => this.onConnection(socket));

    this.clientList = new LiveClientList({
      registry: coordinator.registry,
      intervalMs: CLIENTS_INTERVAL_MS,
      listeners: () => this.nsp.sockets.size,
      send: (delta) => this.nsp.emit('clients-delta', delta),
      afterFlush: () => {
        for (const runId of this.openRounds.keys()) this.pushProgress(runId);
      },
    });
    coordinator.on('round-started', async (event) => {
      const startedAt = new Date();
      // The selected clients just got their tasks (no registry event): a round is rare, so
      // the consoles see the tasks now, even when the round ends within one frame interval.
      if (this.nsp.sockets.size > 0) this.clientList.flush();
      // Runs resumed at start-up never went through runChanged: read their config once.
      let run = this.runConfigs.get(event.runId);
      if (!run) {
        run = (await coordinator.db.runs.get(event.runId).catch(() => null)) ?? undefined;
        if (run) this.runConfigs.set(run.id, run);
      }
      const deadlineMs = run?.config.roundDeadlineMs ?? 0;
      this.openRounds.set(event.runId, {
        runId: event.runId,
        round: event.round,
        attempt: event.attempt,
        selected: event.selected,
        startedAt: startedAt.toISOString(),
        deadlineAt: new Date(startedAt.getTime() + deadlineMs).toISOString(),
      });
      if (this.nsp.sockets.size === 0) return;
      const view = this.roundView(event.runId);
      if (view) {
        this.sentProgress.set(event.runId, JSON.stringify(view));
        this.nsp.emit('round-started', view);
      }
      this.clientList.changed();
    });
    coordinator.on('round-committed', (event) => {
      this.openRounds.delete(event.runId);
      this.sentProgress.delete(event.runId);
      this.nsp.emit(
        'round-committed',
        plain(event) as Parameters<AdminServerEvents['round-committed']>[0],
      );
    });
    coordinator.on('round-evaluated', (event) => {
      this.nsp.emit(
        'round-evaluated',
        plain(event) as Parameters<AdminServerEvents['round-evaluated']>[0],
      );
    });
    coordinator.on('run-finished', (event) => {
      this.openRounds.delete(event.runId);
      this.sentProgress.delete(event.runId);
      void this.runChanged(event.runId);
    });
    // Training progress changes without registry events: look at it while rounds are open.
    this.timer = setInterval(() => {
      if (this.openRounds.size > 0) this.clientList.changed();
    }, PROGRESS_INTERVAL_MS);
    this.timer.unref();
    // Sessions end without a logout too (expiry, a disabled account): close their feeds.
    const sessionCheck = setInterval(() => void this.dropEndedSessions(), SESSION_CHECK_MS);
    sessionCheck.unref();
    io.httpServer?.once('close', () => {
      clearInterval(this.timer);
      clearInterval(sessionCheck);
      this.clientList.close();
    });
  }

  /** Run configs of running runs (for deadlines), refreshed when a run starts. */
  private readonly runConfigs = new Map<string, RunRecord>();

  /** Tells the console a run's status changed (started, stopped, finished). */
  async runChanged(runIdOrRun: string | RunRecord): Promise<void> {
    const run =
      typeof runIdOrRun === 'string'
        ? await this.coordinator.db.runs.get(runIdOrRun).catch(() => null)
        : runIdOrRun;
    if (!run) return;
    if (run.status === 'running') this.runConfigs.set(run.id, run);
    else this.runConfigs.delete(run.id);
    this.nsp.emit('run-status', plain(run));
  }

  private async dropEndedSessions(): Promise<void> {
    for (const socket of this.nsp.sockets.values()) {
      const { principal } = socket.data;
      if (principal.kind !== 'user') continue;
      try {
        if (!(await this.auth.db.accounts.findSession(principal.token))) socket.disconnect(true);
      } catch {
        // The database is unreachable for a moment: keep the feed, look again next time.
      }
    }
  }

  /** Closes the live connections of a session that just logged out. */
  endSession(sessionId: string): void {
    for (const socket of this.nsp.sockets.values()) {
      const { principal } = socket.data;
      if (principal.kind === 'user' && principal.session.id === sessionId) socket.disconnect(true);
    }
  }

  private roundView(runId: string): OpenRoundView | undefined {
    const open = this.openRounds.get(runId);
    if (!open) return undefined;
    const { registry } = this.coordinator;
    const busy = open.selected.filter((id) => {
      const task = registry.get(id)?.task;
      return task?.runId === runId && task.round === open.round && task.phase === 'train';
    }).length;
    return { ...open, replied: open.selected.length - busy };
  }

  private pushProgress(runId: string): void {
    const view = this.roundView(runId);
    if (!view) return;
    const text = JSON.stringify(view);
    if (this.sentProgress.get(runId) === text) return;
    this.sentProgress.set(runId, text);
    this.nsp.emit('round-progress', view);
  }

  private onConnection(socket: AdminSocket): void {
    // The others first get what changed up to now, so that all consoles share one baseline.
    const { rows, delta } = this.clientList.subscribe(this.nsp.sockets.size > 1);
    if (delta) this.nsp.except(socket.id).emit('clients-delta', delta);
    socket.emit('snapshot', {
      clients: rows,
      openRounds: [...this.openRounds.keys()].flatMap((runId) => {
        const view = this.roundView(runId);
        return view ? [view] : [];
      }),
    });
    socket.on('run-control', async (request, ack) => {
      const answer = typeof ack === 'function' ? ack : () => {};
      try {
        const principal = await this.recheck(socket);
        requireAdmin(principal, 'start, pause or stop runs');
        const parsed = runControlSchema.safeParse(request);
        if (!parsed.success) {
          const issue = parsed.error.issues[0];
          const field = issue?.path.join('.') || '(body)';
          throw new TesseraError(ErrorCode.INVALID_ARGUMENT, `${field}: ${issue?.message}`, {
            field,
          });
        }
        const { runId, action } = parsed.data;
        const run =
          action === 'start'
            ? await this.control.start(runId)
            : action === 'pause'
              ? await this.control.pause(runId)
              : await this.control.stop(runId);
        answer({ ok: true, run: plain(run) });
      } catch (cause) {
        answer({ ok: false, error: TesseraError.from(cause).toWire() });
      }
    });
  }

  /** A session can end (logout, expiry, disabled account) while its socket stays open. */
  private async recheck(socket: AdminSocket): Promise<Principal> {
    const { principal } = socket.data;
    if (principal.kind !== 'user') return principal;
    const found = await this.auth.db.accounts.findSession(principal.token);
    if (!found) {
      socket.disconnect(true);
      throw new TesseraError(ErrorCode.UNAUTHORIZED, 'session ended: log in again');
    }
    const current: Principal = { ...principal, role: found.user.role, user: found.user };
    socket.data.principal = current;
    return current;
  }
}
