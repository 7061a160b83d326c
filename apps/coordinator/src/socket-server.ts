import type { Server as HttpServer } from 'node:http';
import type { ClientRecord, Database } from '@tessera/db';
import {
  type Ack,
  AUTH_DEADLINE_MS,
  CLIENT_FRAME_LIMITS,
  type ClientToServerEvents,
  createMsgpackParser,
  ErrorCode,
  evaluateReplySchema,
  HANDSHAKE_RATE_LIMITS,
  type Hello,
  helloSchema,
  type MsgpackParser,
  PRE_AUTH_MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
  parseFrame,
  progressSchema,
  type RateLimit,
  REJECTED_FRAME_EVENT,
  type RejectedFrame,
  type ServerToClientEvents,
  secAggClientFrameSchema,
  statisticsReplySchema,
  TASK_REQUEST_RATE_LIMIT,
  type TaskAck,
  TesseraError,
  TRANSPORT_MARGIN_BYTES,
  taskRequestSchema,
  trainReplySchema,
} from '@tessera/protocol';
import { Server, type ServerOptions, type Socket } from 'socket.io';
import type { DeliveredFrame } from './cluster/frame-delivery.js';
import type { ForwardedFrame } from './cluster/relay.js';
import { isLoopback, RateLimiter } from './connection-rate-limit.js';
import type { RunEngine } from './engine.js';
import type { Logger } from './logger.js';
import { createPacedSender } from './paced-sends.js';
import type { ClientRegistry } from './registry.js';
import { createSlicedWork } from './sliced-work.js';
import type { Transport } from './transport.js';

interface SocketData {
  clientId: string;
  hello: Hello;
  client: ClientRecord;
}

type TesseraServer = Server<
  ClientToServerEvents,
  ServerToClientEvents,
  Record<string, never>,
  SocketData
>;
type TesseraSocket = Socket<
  ClientToServerEvents,
  ServerToClientEvents,
  Record<string, never>,
  SocketData
>;

export interface SocketServerOptions {
  db: Database;
  registry: ClientRegistry;
  logger: Logger;
  /** Finds the engine of a running run, or undefined. */
  engineFor: (runId: string) => RunEngine | undefined;
  /** Application frame limit of an authenticated client; larger frames get PAYLOAD_TOO_LARGE. */
  maxFrameBytes: number;
  /** Handshake rate limits (default HANDSHAKE_RATE_LIMITS). */
  rateLimits?: { perAddress: RateLimit; perToken: RateLimit };
  /** Apply the per-address limit to loopback peers too (default false; tests set it). */
  rateLimitLoopback?: boolean;
  /** Time to complete the handshake (default AUTH_DEADLINE_MS). */
  authDeadlineMs?: number;
  /** Cluster mode: Socket.IO's Redis adapter, so io.to(socketId) reaches every process. */
  adapter?: ServerOptions['adapter'];
  /**
   * Cluster mode: gives a schema-checked reply or SecAgg message for a run this process does
   * not drive to the run's owner; resolves when the owner accepted it, rejects with its coded
   * refusal.
   */
  forward?: (forwarded: ForwardedFrame) => Promise<void>;
  /**
   * Cluster mode: frames for connections another process holds go to that process, which
   * sends them out paced (cluster/frame-delivery.ts), instead of one adapter broadcast.
   */
  frames?: {
    /** The process that holds the client's connection (undefined: not known here). */
    homeOf(clientId: string): string | undefined;
    /** Publishes the frame to that process; false when no process listens there. */
    send(processId: string, frame: DeliveredFrame): Promise<boolean>;
  };
  /** Bytes of client replies queued for handling past which reads pause (default 256 MiB). */
  maxQueuedReplyBytes?: number;
  /** Told of every client frame handled (`code`: the refusal sent back, or null) and every refused handshake (metrics). */
  observer?: SocketObserver;
}

export interface SocketObserver {
  reply(event: string, code: string | null): void;
  connectionRefused(code: string): void;
  /** Reading client connections stopped (true) or resumed (false): replies queued past the bound. */
  readsPaused?(paused: boolean): void;
}

/**
 * Pauses or resumes reading a client's connection. Engine.IO keeps the `ws` socket of a
 * WebSocket transport in `transport.socket` without a public accessor (engine.io 6.6); `ws`'s
 * own `pause()`/`resume()` stop and restart reading its TCP socket, so unread frames wait in
 * the kernel's buffers and TCP slows the sender. Only WebSocket transports are served here.
 */
function setReading(socket: TesseraSocket, reading: boolean): void {
  const ws = (socket.conn as unknown as { transport?: { socket?: unknown } }).transport?.socket as
    | { pause?: () => void; resume?: () => void }
    | undefined;
  if (reading) ws?.resume?.();
  else ws?.pause?.();
}

/**
 * Lifts the pre-authentication frame limit of the socket's connection. Socket.IO's `Client`
 * makes one Decoder per Engine.IO connection and keeps it in a private field, with no public
 * seam to reach it (socket.io 4.8); this is the one place that reads it, and it checks that
 * what it found is this parser's decoder before calling it.
 */
function authenticateConnection(
  socket: TesseraSocket,
  parser: MsgpackParser,
  maxFrameBytes: number,
): boolean {
  const decoder: unknown = (socket.client as unknown as { decoder?: unknown }).decoder;
  if (!parser.isDecoder(decoder)) return false;
  decoder.authenticate(maxFrameBytes);
  return true;
}

const rateLimited = (what: string, retryAfterSeconds: number) =>
  new TesseraError(
    ErrorCode.RATE_LIMITED,
    `too many connection attempts from this ${what}; retry after ${retryAfterSeconds} s`,
    { retryAfterSeconds },
  );

/**
 * The Socket.IO edge of the coordinator: authenticates clients at the handshake, validates every
 * frame before handing it to a run engine, answers refusals with a coded error (through the ack,
 * or a `rejected` event when there is none) and a log line, and implements `Transport`.
 */
export function attachSocketServer(
  httpServer: HttpServer,
  options: SocketServerOptions,
): {
  io: TesseraServer;
  transport: Transport;
  receive: (forwarded: ForwardedFrame) => void | Promise<void>;
  /** Sends a frame another process delivered (cluster/frame-delivery.ts) to its connections here. */
  deliverLocal: (frame: DeliveredFrame) => void;
} {
  const { db, registry, logger, engineFor, maxFrameBytes } = options;
  // Until a connection's handshake is accepted its frames may be a few KiB only and are never
  // decoded beyond that; every frame passes the structural pre-scan before it is decoded.
  const parser = createMsgpackParser({
    maxFrameBytes,
    preAuthMaxFrameBytes: PRE_AUTH_MAX_FRAME_BYTES,
    scanLimits: CLIENT_FRAME_LIMITS,
  });
  const io: TesseraServer = new Server(httpServer, {
    parser,
    // The transport's hard cap sits a little above the application limit, so a frame slightly
    // too large still reaches the parser and its sender learns PAYLOAD_TOO_LARGE.
    maxHttpBufferSize: maxFrameBytes + TRANSPORT_MARGIN_BYTES,
    // WebSocket only (every Tessera client and the console use it): no polling sessions.
    transports: ['websocket'],
    // A bad EIO is refused before the WebSocket upgrade (engine.io checks it only after).
    allowRequest: (request, answer) => {
      const eio = new URL(request.url ?? '/', 'http://coordinator').searchParams.get('EIO');
      if (eio === '4') answer(null, true);
      else answer('Unsupported protocol version', false);
    },
    connectTimeout: options.authDeadlineMs ?? AUTH_DEADLINE_MS,
    serveClient: false,
    cors: { origin: true },
    ...(options.adapter ? { adapter: options.adapter } : {}),
  });

  // Back-pressure past the queue's bound: stop reading every client connection of this
  // process (not the console's), and read them again once half the bound is left.
  const replies = createSlicedWork({
    ...(options.maxQueuedReplyBytes === undefined
      ? {}
      : { maxQueuedBytes: options.maxQueuedReplyBytes }),
    onPressure: (pressured) => {
      for (const socket of io.of('/').sockets.values()) setReading(socket, !pressured);
      options.observer?.readsPaused?.(pressured);
      logger.info(
        pressured ? 'client reads paused: replies queued past the bound' : 'client reads resumed',
        {
          queued: replies.queued,
        },
      );
    },
    onError: (error) =>
      logger.error('handling a reply failed', { message: TesseraError.from(error).message }),
  });

  const limits = options.rateLimits ?? HANDSHAKE_RATE_LIMITS;
  const perAddress = new RateLimiter(limits.perAddress);
  const perToken = new RateLimiter(limits.perToken);
  const taskRequests = new RateLimiter(TASK_REQUEST_RATE_LIMIT);
  const rateLimitLoopback = options.rateLimitLoopback ?? false;

  io.use(async (socket, next) => {
    try {
      const address = socket.handshake.address;
      if (rateLimitLoopback || !isLoopback(address)) {
        const wait = perAddress.take(address);
        if (wait > 0) throw rateLimited('address', wait);
      }
      const hello = parseFrame(helloSchema, socket.handshake.auth, 'handshake');
      const wait = perToken.take(hello.token);
      if (wait > 0) throw rateLimited('token', wait);
      if (hello.protocolVersion !== PROTOCOL_VERSION) {
        throw new TesseraError(
          ErrorCode.PROTOCOL_VERSION_MISMATCH,
          `client speaks protocol ${hello.protocolVersion}; this coordinator speaks ${PROTOCOL_VERSION}`,
          { serverVersion: PROTOCOL_VERSION },
        );
      }
      const client = await db.clients.authenticate(hello.token);
      if (!client)
        throw new TesseraError(ErrorCode.UNAUTHORIZED, 'unknown or revoked client token');
      socket.data.clientId = client.id;
      socket.data.hello = hello;
      socket.data.client = client;
      await db.clients.touch(client.id).catch(() => {});
      next();
    } catch (cause) {
      const error = TesseraError.from(cause);
      options.observer?.connectionRefused(error.code);
      logger.warn('connection refused', {
        address: socket.handshake.address,
        code: error.code,
        message: error.message,
      });
      const refusal = new Error(error.message) as Error & { data: unknown };
      refusal.data = error.toWire();
      next(refusal);
    }
  });

  io.on('connection', (socket: TesseraSocket) => {
    const { clientId, hello, client } = socket.data;
    if (!authenticateConnection(socket, parser, maxFrameBytes)) {
      // Only if socket.io changed its internals: refuse rather than run with a 4 KiB limit.
      logger.error('cannot reach the connection decoder; closing', { clientId });
      socket.disconnect(true);
      return;
    }
    // Registered only now, once the socket has joined its own room: a round that samples this
    // client from here on can reach it.
    const now = new Date();
    const session = {
      clientId,
      federationId: client.federationId,
      organisation: client.organisation,
      connectionId: socket.id,
      info: hello.client,
      connectedAt: now,
      lastSeenAt: now,
      task: null,
      progress: null,
    };
    const previous = registry.add(session);
    if (previous) {
      // One live connection per token: the newest wins (a restarted client reclaims its slot).
      logger.warn('client reconnected; closing its previous connection', { clientId });
      // Through the adapter: the previous connection may be held by another process.
      io.to(previous.connectionId).emit('rejected', {
        code: ErrorCode.CONFLICT,
        message: 'replaced by a newer connection with the same token',
      });
      io.in(previous.connectionId).disconnectSockets(true);
    }
    logger.info('client connected', {
      clientId,
      organisation: session.organisation,
      backend: session.info.backend,
      runtime: session.info.runtime,
    });
    socket.emit('welcome', {
      clientId,
      federationId: session.federationId,
      organisation: session.organisation,
      protocolVersion: PROTOCOL_VERSION,
      maxFrameBytes,
    });

    const refuse = (event: string, cause: unknown, ack: unknown) => {
      const error = TesseraError.from(cause);
      options.observer?.reply(event, error.code);
      logger.warn('frame refused', { clientId, event, code: error.code, message: error.message });
      if (typeof ack === 'function')
        (ack as (a: Ack) => void)({ ok: false, error: error.toWire() });
      else socket.emit('rejected', error.toWire());
    };
    // A reply is answered when its engine took it: at once here, or when the owner answered.
    const handle = (event: string, ack: unknown, work: () => undefined | Promise<void>) => {
      registry.touch(clientId);
      const accepted = () => {
        options.observer?.reply(event, null);
        if (typeof ack === 'function') (ack as (a: Ack) => void)({ ok: true });
      };
      try {
        const forwarded = work();
        if (forwarded) forwarded.then(accepted, (error: unknown) => refuse(event, error, ack));
        else accepted();
      } catch (error) {
        refuse(event, error, ack);
      }
    };
    for (const event of REPLY_EVENTS) {
      // Handled in slices (sliced-work.ts), not inside the read callback that decoded it.
      socket.on(event, (frame: unknown, ack: unknown) => {
        replies.run(
          () =>
            handle(event, ack, () => {
              // Checked here, wherever the run is driven: a bad frame never travels further.
              const parsed = parseReply(event, frame);
              const { runId } = parsed.reply;
              if (engineFor(runId) || !options.forward) {
                deliver(clientId, parsed);
                return undefined;
              }
              return options.forward({ runId, event, clientId, frame: parsed.reply });
            }),
          frameBytes(frame),
        );
        // A connection that joined while reads were paused stops here too.
        if (replies.pressured) setReading(socket, false);
      });
    }
    // Asynchronous (the SecAgg server checks keys and hashes what it accepts): acked when done.
    // Checked here like a reply; a message of a run another coordinator drives is relayed to
    // that owner (masked vectors as raw bytes) and acked with its verdict.
    socket.on('secagg', (frame, ack) => {
      registry.touch(clientId);
      const answer = async () => {
        const parsed = parseFrame(secAggClientFrameSchema, frame, 'secagg');
        const { runId } = parsed;
        if (engineFor(runId) || !options.forward)
          await localEngine(runId).handleSecAgg(clientId, parsed);
        else await options.forward({ runId, event: 'secagg', clientId, frame: parsed });
      };
      answer().then(
        () => {
          options.observer?.reply('secagg', null);
          if (typeof ack === 'function') ack({ ok: true });
        },
        (error: unknown) => refuse('secagg', error, ack),
      );
    });
    socket.on('progress', (frame) => {
      const parsed = progressSchema.safeParse(frame);
      const current = registry.get(clientId);
      if (!parsed.success || !current || current.connectionId !== socket.id) return;
      if (current.task?.runId === parsed.data.runId && current.task.round === parsed.data.round) {
        const { epoch, epochs, batch, batches, loss } = parsed.data;
        current.progress = { epoch, epochs, batch, batches, loss };
      }
      registry.touch(clientId);
    });
    // A task's definition, for a client that is to train or evaluate it. Only tasks that a run
    // of the client's own federation trains: other federations' tasks are not its business.
    socket.on('task', (frame, ack) => {
      registry.touch(clientId);
      const answer = async (): Promise<TaskAck> => {
        const { sha256 } = parseFrame(taskRequestSchema, frame, 'task');
        const wait = taskRequests.take(socket.id);
        if (wait > 0) {
          throw new TesseraError(
            ErrorCode.RATE_LIMITED,
            `too many task requests; a client keeps each task it fetched; retry after ${wait} s`,
            { retryAfterSeconds: wait },
          );
        }
        if (!(await db.runs.federationTrains(session.federationId, sha256))) {
          throw new TesseraError(
            ErrorCode.NOT_FOUND,
            `no run of this federation trains a task with sha256 ${sha256}`,
            { field: 'sha256' },
          );
        }
        // A run's task as created, or as its statistics round resolved it.
        return { ok: true, task: await db.tasks.definition(sha256) };
      };
      answer().then(
        (reply) => {
          if (typeof ack === 'function') ack(reply);
        },
        (error: unknown) => refuse('task', error, ack),
      );
    });
    socket.on(REJECTED_FRAME_EVENT, (info, ack) => {
      const rejected = info as RejectedFrame;
      refuse(
        rejected.event ?? '(unreadable)',
        new TesseraError(rejected.code, rejected.reason, { bytes: rejected.bytes }),
        ack,
      );
    });
    socket.on('disconnect', (reason) => {
      if (registry.remove(clientId, socket.id))
        logger.info('client disconnected', { clientId, reason });
    });
  });

  /** Hands a checked reply to its run's engine in this process. */
  /** The engine of a run this process drives; WRONG_RUN for any other. */
  const localEngine = (runId: string): RunEngine => {
    const engine = engineFor(runId);
    if (!engine)
      throw new TesseraError(
        ErrorCode.WRONG_RUN,
        `run ${runId} is not running on this coordinator`,
      );
    return engine;
  };
  const deliver = (clientId: string, parsed: ParsedReply) => {
    const engine = localEngine(parsed.reply.runId);
    if (parsed.event === 'update') engine.handleUpdate(clientId, parsed.reply);
    else if (parsed.event === 'evaluation') engine.handleEvaluation(clientId, parsed.reply);
    else engine.handleStatistics(clientId, parsed.reply);
  };
  // A reply or SecAgg message forwarded by another process: parsed again (it crossed Redis),
  // then delivered; a SecAgg message's promise settles when its engine took or refused it.
  const receive = ({ event, clientId, frame }: ForwardedFrame): void | Promise<void> => {
    if (event !== 'secagg') return deliver(clientId, parseReply(event, frame));
    const parsed = parseFrame(secAggClientFrameSchema, frame, 'secagg');
    return localEngine(parsed.runId).handleSecAgg(clientId, parsed);
  };

  // Connections this process holds get their frames paced (paced-sends.ts), each chunk one
  // io.local.to([...]).emit: one encoding for the chunk, nothing published to the adapter.
  // Those another process holds: in cluster mode the frame is published once to each such
  // process, which paces it out to its own (deliverLocal); a connection whose process is not
  // known, or whose process no longer listens, gets one io.to([...]).emit through the adapter.
  // An empty room list would mean "everyone" to Socket.IO, hence the guards.
  const paced = createPacedSender({
    onError: (error) =>
      logger.error('sending a frame failed', { message: TesseraError.from(error).message }),
  });
  const localSockets = io.of('/').sockets;
  const { frames } = options;
  const sendHere = (connections: readonly string[], event: string, args: unknown[]) =>
    paced.send(connections, (chunk) =>
      (io.local.to(chunk).emit as (event: string, ...args: unknown[]) => boolean)(event, ...args),
    );
  const broadcast = (connections: string[], event: string, args: unknown[]) => {
    if (connections.length > 0)
      (io.to(connections).emit as (event: string, ...args: unknown[]) => boolean)(event, ...args);
  };
  const send = <E extends keyof ServerToClientEvents>(
    clientIds: readonly string[],
    event: E,
    ...payload: Parameters<ServerToClientEvents[E]>
  ) => {
    const here: string[] = [];
    const elsewhere: string[] = [];
    const byProcess = new Map<string, string[]>();
    for (const clientId of clientIds) {
      const socketId = registry.get(clientId)?.connectionId;
      if (socketId === undefined) continue;
      if (localSockets.has(socketId)) {
        here.push(socketId);
        continue;
      }
      const home = frames?.homeOf(clientId);
      if (home === undefined) {
        elsewhere.push(socketId);
        continue;
      }
      const theirs = byProcess.get(home);
      if (theirs) theirs.push(socketId);
      else byProcess.set(home, [socketId]);
    }
    broadcast(elsewhere, event, payload);
    for (const [home, connections] of byProcess) {
      // A home was found only through `frames`, so it is there.
      (frames as NonNullable<typeof frames>).send(home, { event, args: payload, connections }).then(
        (heard) => {
          if (!heard) broadcast(connections, event, payload);
        },
        (error: unknown) => {
          logger.warn('could not publish a frame to another coordinator; using the adapter', {
            event,
            process: home,
            message: TesseraError.from(error).message,
          });
          broadcast(connections, event, payload);
        },
      );
    }
    sendHere(here, event, payload);
  };
  const deliverLocal = ({ event, args, connections }: DeliveredFrame) =>
    sendHere(
      connections.filter((id) => localSockets.has(id)),
      event,
      args,
    );
  const transport: Transport = {
    sendTrain: (clientIds, instruction) => send(clientIds, 'train', instruction),
    sendEvaluate: (clientIds, instruction) => send(clientIds, 'evaluate', instruction),
    sendStatistics: (clientIds, instruction) => send(clientIds, 'statistics', instruction),
    sendRoundClosed: (clientIds, notice) => send(clientIds, 'round-closed', notice),
    sendSecAgg: (clientIds, frame) => send(clientIds, 'secagg', frame),
  };
  return { io, transport, receive, deliverLocal };
}

const REPLY_EVENTS = ['update', 'evaluation', 'statistics'] as const;

/** What a reply frame holds in memory, for the queue's bound: its model-sized byte fields. */
function frameBytes(frame: unknown): number {
  if (typeof frame !== 'object' || frame === null) return 0;
  let bytes = 0;
  for (const value of Object.values(frame))
    if (value instanceof Uint8Array) bytes += value.byteLength;
  return bytes;
}
type ReplyEvent = (typeof REPLY_EVENTS)[number];
type ParsedReply = ReturnType<typeof parseReply>;

function parseReply(event: ReplyEvent, frame: unknown) {
  switch (event) {
    case 'update':
      return { event, reply: parseFrame(trainReplySchema, frame, 'update') } as const;
    case 'evaluation':
      return { event, reply: parseFrame(evaluateReplySchema, frame, 'evaluation') } as const;
    case 'statistics':
      return { event, reply: parseFrame(statisticsReplySchema, frame, 'statistics') } as const;
  }
}
