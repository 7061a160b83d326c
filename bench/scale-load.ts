/**
 * A load process for bench/scale.ts: holds one authenticated Socket.IO connection per token
 * (the real protocol: MessagePack parser, WebSocket, the hello handshake) to one coordinator,
 * and answers every `train` at once with an update (the global weights sent back: the right
 * size and finite), so a round's time is the coordinator's, not training's. Says on stdout
 * `{"connected":N}` once every connection was welcomed, then `{"updates":N}` per round.
 *
 *   node --import tsx --conditions=@tessera/source bench/scale-load.ts URL TOKENS_JSON_FILE
 */
import { readFileSync } from 'node:fs';
import {
  type ClientToServerEvents,
  createMsgpackParser,
  PROTOCOL_VERSION,
  type ServerToClientEvents,
} from '@tessera/protocol';
import { io, type Socket } from 'socket.io-client';

const [url, tokensFile] = process.argv.slice(2);
if (!url || !tokensFile) throw new Error('usage: scale-load.ts URL TOKENS_JSON_FILE');
const tokens = JSON.parse(readFileSync(tokensFile, 'utf8')) as string[];
const parser = createMsgpackParser();
const sockets: Array<Socket<ServerToClientEvents, ClientToServerEvents>> = [];
let welcomed = 0;
let updates = 0;
const say = (message: object) => process.stdout.write(`${JSON.stringify(message)}\n`);

for (const token of tokens) {
  const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io(url, {
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
  socket.on('welcome', () => {
    welcomed += 1;
    if (welcomed === tokens.length) say({ connected: welcomed });
  });
  socket.on('connect_error', (error) => say({ error: error.message }));
  socket.on('train', (instruction) => {
    socket.emit(
      'update',
      {
        status: 'ok',
        runId: instruction.runId,
        round: instruction.round,
        weights: instruction.weights,
        numExamples: 10,
        durationMs: 1,
        metrics: {},
      },
      () => {
        updates += 1;
        if (updates % tokens.length === 0) say({ updates });
      },
    );
  });
  sockets.push(socket);
}
process.on('SIGTERM', () => {
  for (const socket of sockets) socket.disconnect();
  process.exit(0);
});
