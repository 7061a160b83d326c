import { EventEmitter } from 'node:events';
import type { Hello } from '@tessera/protocol';

/** What a client is doing for the coordinator right now. */
export interface ClientTask {
  runId: string;
  round: number;
  phase: 'train' | 'evaluate';
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

interface RegistryEvents {
  /** A client connected, left, or became idle: round engines waiting for clients look again. */
  change: [];
  disconnected: [session: ClientSession];
}

/**
 * The connected clients of this coordinator process and what each is busy with. One client
 * (token) has at most one session: a new connection replaces the old one.
 */
export class ClientRegistry extends EventEmitter<RegistryEvents> {
  private readonly sessions = new Map<string, ClientSession>();

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

  get(clientId: string): ClientSession | undefined {
    return this.sessions.get(clientId);
  }

  list(): ClientSession[] {
    return [...this.sessions.values()];
  }

  /** Connected clients of the federation that are not in any round. */
  idle(federationId: string): string[] {
    return this.list()
      .filter((s) => s.federationId === federationId && s.task === null)
      .map((s) => s.clientId);
  }

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

  touch(clientId: string): void {
    const session = this.sessions.get(clientId);
    if (session) session.lastSeenAt = new Date();
  }
}
