import type { Server as HttpServer } from 'node:http';
import type { ClientRecord, Database } from '@tessera/db';
import {
  type Ack,
  type ClientToServerEvents,
  createMsgpackParser,
  ErrorCode,
  evaluateReplySchema,
  type Hello,
  helloSchema,
  PROTOCOL_VERSION,
  parseFrame,
  progressSchema,
  REJECTED_FRAME_EVENT,
  type RejectedFrame,
  type ServerToClientEvents,
  TesseraError,
  trainReplySchema,
} from '@tessera/protocol';
import { Server, type Socket } from 'socket.io';
import type { RunEngine } from './engine.js';
import type { Logger } from './logger.js';
import type { ClientRegistry } from './registry.js';
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
  /** Application frame limit; larger frames get PAYLOAD_TOO_LARGE. */
  maxFrameBytes: number;
}

/**
 * The Socket.IO edge of the coordinator: authenticates clients at the handshake, validates every
 * frame before handing it to a run engine, answers refusals with a coded error (through the ack,
 * or a `rejected` event when there is none) and a log line, and implements `Transport`.
 */
export function attachSocketServer(
  httpServer: HttpServer,
  options: SocketServerOptions,
): { io: TesseraServer; transport: Transport } {
  const { db, registry, logger, engineFor, maxFrameBytes } = options;
  const io: TesseraServer = new Server(httpServer, {
    parser: createMsgpackParser({ maxFrameBytes }),
    // The transport's hard cap sits above the application limit, so an oversized frame still
    // reaches the parser and its sender learns PAYLOAD_TOO_LARGE instead of a dropped socket.
    maxHttpBufferSize: maxFrameBytes * 2,
    serveClient: false,
    cors: { origin: true },
  });

  io.use(async (socket, next) => {
    try {
      const hello = parseFrame(helloSchema, socket.handshake.auth, 'handshake');
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
      const old = io.sockets.sockets.get(previous.connectionId);
      old?.emit('rejected', {
        code: ErrorCode.CONFLICT,
        message: 'replaced by a newer connection with the same token',
      });
      old?.disconnect(true);
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
      logger.warn('frame refused', { clientId, event, code: error.code, message: error.message });
      if (typeof ack === 'function')
        (ack as (a: Ack) => void)({ ok: false, error: error.toWire() });
      else socket.emit('rejected', error.toWire());
    };
    const handle = (event: string, ack: unknown, work: () => void) => {
      registry.touch(clientId);
      try {
        work();
        if (typeof ack === 'function') (ack as (a: Ack) => void)({ ok: true });
      } catch (error) {
        refuse(event, error, ack);
      }
    };
    const engineOf = (runId: string): RunEngine => {
      const engine = engineFor(runId);
      if (!engine)
        throw new TesseraError(
          ErrorCode.WRONG_RUN,
          `run ${runId} is not running on this coordinator`,
        );
      return engine;
    };

    socket.on('update', (frame, ack) =>
      handle('update', ack, () => {
        const reply = parseFrame(trainReplySchema, frame, 'update');
        engineOf(reply.runId).handleUpdate(clientId, reply);
      }),
    );
    socket.on('evaluation', (frame, ack) =>
      handle('evaluation', ack, () => {
        const reply = parseFrame(evaluateReplySchema, frame, 'evaluation');
        engineOf(reply.runId).handleEvaluation(clientId, reply);
      }),
    );
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

  const socketsOf = (clientIds: readonly string[]): string[] =>
    clientIds.flatMap((id) => {
      const session = registry.get(id);
      return session ? [session.connectionId] : [];
    });

  // io.to([...]).emit encodes the packet once for all recipients: the weights are packed once.
  // An empty room list would mean "everyone" to Socket.IO, hence the guard.
  const to = (clientIds: readonly string[]) => {
    const sockets = socketsOf(clientIds);
    return sockets.length > 0 ? io.to(sockets) : null;
  };
  const transport: Transport = {
    sendTrain: (clientIds, instruction) => to(clientIds)?.emit('train', instruction),
    sendEvaluate: (clientIds, instruction) => to(clientIds)?.emit('evaluate', instruction),
    sendRoundClosed: (clientIds, notice) => to(clientIds)?.emit('round-closed', notice),
  };
  return { io, transport };
}
