/**
 * A load process for bench/scale.ts: holds one authenticated Socket.IO connection per token
 * (the real protocol: MessagePack parser, WebSocket, the hello handshake) to one coordinator,
 * and answers every `train` at once with an update (the global weights sent back: the right
 * size and finite), so a round's time is the coordinator's, not training's. Says on stdout
 * `{"connected":N}` once every connection was welcomed, then `{"updates":N}` per round.
 *
 * At most CONNECTING handshakes are open at once (a process of 5,000 clients that opened all
 * of them in one go would have the coordinator authenticate thousands of tokens within one
 * handshake deadline), and at most IN_FLIGHT updates wait for their ack: the others wait
 * here, so that a load process holds one copy of the round's model (the weights are the same
 * for every client), not one per client (10,000 × 800 KB for the 2NN).
 *
 *   node --import tsx --conditions=@tessera/source bench/scale-load.ts URL TOKENS_JSON_FILE [CONNECTING] [IN_FLIGHT]
 */
import { readFileSync } from 'node:fs';
import {
  type ClientToServerEvents,
  createMsgpackParser,
  PROTOCOL_VERSION,
  type ServerToClientEvents,
  type TrainInstruction,
} from '@tessera/protocol';
import { io, type Socket } from 'socket.io-client';

const [url, tokensFile, connectingText, inFlightText] = process.argv.slice(2);
if (!url || !tokensFile)
  throw new Error('usage: scale-load.ts URL TOKENS_JSON_FILE [CONNECTING] [IN_FLIGHT]');
const CONNECTING = Number(connectingText ?? 200);
const IN_FLIGHT = Number(inFlightText ?? 64);
const tokens = JSON.parse(readFileSync(tokensFile, 'utf8')) as string[];
const parser = createMsgpackParser();
const sockets: Array<Socket<ServerToClientEvents, ClientToServerEvents>> = [];
let welcomed = 0;
let updates = 0;
const say = (message: object) => process.stdout.write(`${JSON.stringify(message)}\n`);

/** The round's weights, kept once: what every client of this process sends back. */
let model: { key: string; weights: Uint8Array } | null = null;
const waiting: Array<{
  socket: Socket<ServerToClientEvents, ClientToServerEvents>;
  runId: string;
  round: number;
}> = [];
let inFlight = 0;

function answerNext(): void {
  while (inFlight < IN_FLIGHT && waiting.length > 0) {
    const { socket, runId, round } = waiting.shift() as (typeof waiting)[number];
    if (model === null || model.key !== `${runId}/${round}`) continue;
    inFlight += 1;
    socket.emit(
      'update',
      {
        status: 'ok',
        runId,
        round,
        weights: model.weights,
        numExamples: 10,
        durationMs: 1,
        metrics: {},
      },
      () => {
        inFlight -= 1;
        updates += 1;
        if (updates % tokens.length === 0) say({ updates });
        answerNext();
      },
    );
  }
}

function onTrain(
  socket: Socket<ServerToClientEvents, ClientToServerEvents>,
  instruction: TrainInstruction,
): void {
  const key = `${instruction.runId}/${instruction.round}`;
  // A copy: the instruction's weights are a view of the received frame, which would be kept.
  if (model?.key !== key) model = { key, weights: Uint8Array.from(instruction.weights) };
  waiting.push({ socket, runId: instruction.runId, round: instruction.round });
  answerNext();
}

let next = 0;
let connecting = 0;
function connectMore(): void {
  while (connecting < CONNECTING && next < tokens.length) {
    const token = tokens[next++] as string;
    connecting += 1;
    const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io(url as string, {
      parser,
      transports: ['websocket'],
      reconnection: false,
      auth: {
        token,
        protocolVersion: PROTOCOL_VERSION,
        // numHoldout 0: no federated evaluation, so a round is train + commit only.
        client: {
          name: 'scale-load',
          version: '0',
          runtime: 'node',
          backend: 'none',
          numExamples: 10,
          numHoldout: 0,
        },
      },
    });
    socket.once('welcome', () => {
      connecting -= 1;
      welcomed += 1;
      if (welcomed === tokens.length) say({ connected: welcomed });
      connectMore();
    });
    socket.on('connect_error', (error) => say({ error: error.message }));
    socket.on('disconnect', (reason) => {
      if (reason !== 'io client disconnect') say({ disconnected: reason });
    });
    socket.on('train', (instruction) => onTrain(socket, instruction));
    sockets.push(socket);
  }
}
connectMore();
process.on('SIGTERM', () => {
  for (const socket of sockets) socket.disconnect();
  process.exit(0);
});
