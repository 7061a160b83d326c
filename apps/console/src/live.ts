import { createMsgpackParser } from '@tessera/protocol';
import { useEffect, useSyncExternalStore } from 'react';
import { io, type Socket } from 'socket.io-client';
import { notifyUnauthorized, type Round, type Run } from './api.js';
import { applyClientsDelta, type ClientsDelta } from './clients-delta.js';

/** A connected client as the `/admin` namespace pushes it. */
export interface LiveClient {
  clientId: string;
  federationId: string;
  organisation: string;
  info: { name: string; version: string; runtime: string; backend: string; numExamples: number };
  connectedAt: string;
  lastSeenAt: string;
  task: { runId: string; round: number; phase: 'train' | 'evaluate' | 'statistics' } | null;
  progress: {
    epoch: number;
    epochs: number;
    batch: number;
    batches: number;
    loss: number | null;
  } | null;
}

export interface OpenRound {
  runId: string;
  round: number;
  attempt: number;
  selected: string[];
  replied: number;
  startedAt: string;
  deadlineAt: string;
}

interface LiveState {
  connected: boolean;
  clients: LiveClient[];
  openRounds: Record<string, OpenRound>;
}

export interface RoundEvent {
  runId: string;
  round: number;
  record: Round;
}

interface LiveEvents {
  'round-committed': RoundEvent;
  'round-evaluated': RoundEvent;
  'run-status': Run;
}

let state: LiveState = { connected: false, clients: [], openRounds: {} };
const listeners = new Set<() => void>();
const eventListeners = new Map<keyof LiveEvents, Set<(payload: never) => void>>();
let socket: Socket | null = null;

function update(change: Partial<LiveState>): void {
  state = { ...state, ...change };
  for (const listener of listeners) listener();
}

function dispatch<E extends keyof LiveEvents>(event: E, payload: LiveEvents[E]): void {
  for (const listener of eventListeners.get(event) ?? []) {
    (listener as (value: LiveEvents[E]) => void)(payload);
  }
}

/**
 * Opens the console's live feed: Socket.IO namespace `/admin` on this origin, authenticated
 * by the session cookie the browser sends with the handshake. The coordinator's Socket.IO
 * server speaks MessagePack (its parser is per server), so this end uses the same parser.
 */
export function connectLive(): void {
  if (socket) return;
  socket = io('/admin', {
    parser: createMsgpackParser(),
    transports: ['websocket'],
    withCredentials: true,
  });
  socket.on('connect', () => update({ connected: true }));
  socket.on('disconnect', (reason) => {
    update({ connected: false });
    // The server closes the feed when the session ends; Socket.IO does not reconnect by
    // itself then. Try once: a live session gets its feed back, an ended one a refusal.
    if (reason === 'io server disconnect') socket?.connect();
  });
  socket.on('connect_error', (error: Error & { data?: { code?: string } }) => {
    if (error.data?.code === 'UNAUTHORIZED') notifyUnauthorized();
  });
  socket.on('snapshot', (snapshot: { clients: LiveClient[]; openRounds: OpenRound[] }) => {
    update({
      clients: snapshot.clients,
      openRounds: Object.fromEntries(snapshot.openRounds.map((round) => [round.runId, round])),
    });
  });
  // The list comes whole once (snapshot), then as throttled deltas by client id.
  socket.on('clients-delta', (delta: ClientsDelta<LiveClient>) =>
    update({ clients: applyClientsDelta(state.clients, delta) }),
  );
  const openRound = (round: OpenRound) =>
    update({ openRounds: { ...state.openRounds, [round.runId]: round } });
  socket.on('round-started', openRound);
  socket.on('round-progress', openRound);
  socket.on('round-committed', (event: RoundEvent) => {
    const { [event.runId]: _closed, ...rest } = state.openRounds;
    update({ openRounds: rest });
    dispatch('round-committed', event);
  });
  socket.on('round-evaluated', (event: RoundEvent) => dispatch('round-evaluated', event));
  socket.on('run-status', (run: Run) => {
    if (run.status !== 'running') {
      const { [run.id]: _closed, ...rest } = state.openRounds;
      update({ openRounds: rest });
    }
    dispatch('run-status', run);
  });
}

export function disconnectLive(): void {
  socket?.disconnect();
  socket = null;
  update({ connected: false, clients: [], openRounds: {} });
}

export function useLive(): LiveState {
  return useSyncExternalStore(
    (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    () => state,
  );
}

/** Runs `handler` for each live event of that name while the component is mounted. */
export function useLiveEvent<E extends keyof LiveEvents>(
  event: E,
  handler: (payload: LiveEvents[E]) => void,
): void {
  useEffect(() => {
    const set = eventListeners.get(event) ?? new Set();
    eventListeners.set(event, set);
    const listener = handler as (payload: never) => void;
    set.add(listener);
    return () => {
      set.delete(listener);
    };
  }, [event, handler]);
}
