import {
  type Ack,
  type ClientToServerEvents,
  createMsgpackParser,
  type ServerToClientEvents,
  type Welcome,
  type WireError,
} from '@tessera/protocol';
import { io, type Socket } from 'socket.io-client';

/**
 * A raw Socket.IO client, as one written from docs/protocol.md alone would connect: the
 * MessagePack parser, WebSocket only, no reconnection. The tests that play a hostile or a
 * minimal client use it; `closeRawSockets` in an afterEach closes whatever they opened.
 */
export type ClientSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

const opened: ClientSocket[] = [];

export function openRawSocket(url: string, auth: Record<string, unknown>): ClientSocket {
  const socket: ClientSocket = io(url, {
    parser: createMsgpackParser(),
    auth,
    transports: ['websocket'],
    reconnection: false,
  });
  opened.push(socket);
  return socket;
}

/** Connects and reports how the handshake ended: the welcome, or the refusal's wire error. */
export function connectRaw(
  url: string,
  auth: Record<string, unknown>,
): Promise<{ socket: ClientSocket; welcome?: Welcome; error?: WireError }> {
  const socket = openRawSocket(url, auth);
  return new Promise((resolve) => {
    socket.on('welcome', (welcome) => resolve({ socket, welcome }));
    socket.on('connect_error', (error: Error & { data?: WireError }) =>
      resolve({ socket, ...(error.data ? { error: error.data } : {}) }),
    );
  });
}

export function closeRawSockets(): void {
  for (const socket of opened.splice(0)) socket.disconnect();
}

/** The handshake's `client` object of a raw test client (a non-tfjs runtime). */
export function rawClientInfo(overrides: Record<string, unknown> = {}) {
  return {
    name: 'rogue',
    version: '0',
    runtime: 'other',
    backend: 'none',
    numExamples: 1,
    ...overrides,
  } as const;
}

/** Sends a reply event and waits for its ack (a timeout rejects: the coordinator never hangs). */
export function sendWithAck(
  socket: ClientSocket,
  event: 'update' | 'evaluation' | 'statistics',
  frame: unknown,
  timeoutMs = 10_000,
): Promise<Ack> {
  return socket.timeout(timeoutMs).emitWithAck(event, frame as never) as Promise<Ack>;
}

/** 'ok', or the refusal's error code. */
export const ackCode = (ack: Ack): string => (ack.ok ? 'ok' : ack.error.code);
