/**
 * How long it takes to put one fedavg-cnn update (1,663,370 parameters) on the wire and take it
 * off again: Tessera's codec (a MessagePack Socket.IO packet with raw little-endian float32 bytes)
 * next to JSON (the weights as a number array). Prints a table and writes bench/results/codec.json.
 *
 *   npm run bench:codec
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import {
  bytesToWeights,
  createMsgpackParser,
  encodePacket,
  type Packet,
  PacketType,
  weightsToBytes,
} from '@tessera/protocol';

const PARAMS = 1_663_370;
const REPEATS = 7;

const weights = new Float32Array(PARAMS);
for (let i = 0; i < PARAMS; i++) weights[i] = Math.sin(i) * 0.05;
const meta = {
  status: 'ok',
  runId: 'run',
  round: 1,
  numExamples: 600,
  durationMs: 1000,
  metrics: { loss: 0.1 },
};

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

function time(fn: () => void): number {
  fn(); // warm-up
  const samples: number[] = [];
  for (let r = 0; r < REPEATS; r++) {
    const start = process.hrtime.bigint();
    fn();
    samples.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  return median(samples);
}

const parser = createMsgpackParser({ maxFrameBytes: 1 << 30 });
let frame: Uint8Array = new Uint8Array();
const msgpackEncode = time(() => {
  frame = encodePacket({
    type: PacketType.EVENT,
    nsp: '/',
    id: 1,
    data: ['update', { ...meta, weights: weightsToBytes(weights) }],
  });
});
const msgpackDecode = time(() => {
  const decoder = new parser.Decoder();
  decoder.on('decoded', (packet: Packet) => {
    const reply = (packet.data as [string, { weights: Uint8Array }])[1];
    bytesToWeights(reply.weights, PARAMS);
  });
  decoder.add(frame);
});

let json = '';
const jsonEncode = time(() => {
  json = JSON.stringify(['update', { ...meta, weights: Array.from(weights) }]);
});
const jsonDecode = time(() => {
  const parsed = JSON.parse(json) as [string, { weights: number[] }];
  Float32Array.from(parsed[1].weights);
});

const rows = [
  {
    codec: 'Tessera (msgpack + float32 bytes)',
    bytes: frame.byteLength,
    encodeMs: msgpackEncode,
    decodeMs: msgpackDecode,
  },
  {
    codec: 'JSON number array',
    bytes: Buffer.byteLength(json),
    encodeMs: jsonEncode,
    decodeMs: jsonDecode,
  },
];
console.log(
  `fedavg-cnn update, ${PARAMS.toLocaleString('en')} parameters, median of ${REPEATS} (node ${process.version})\n`,
);
console.log(
  `${'codec'.padEnd(36)}${'size'.padStart(12)}${'encode'.padStart(12)}${'decode'.padStart(12)}`,
);
for (const row of rows) {
  console.log(
    `${row.codec.padEnd(36)}${`${(row.bytes / 1e6).toFixed(2)} MB`.padStart(12)}` +
      `${`${row.encodeMs.toFixed(1)} ms`.padStart(12)}${`${row.decodeMs.toFixed(1)} ms`.padStart(12)}`,
  );
}
const [ours, theirs] = rows as [(typeof rows)[0], (typeof rows)[0]];
console.log(
  `\nJSON / Tessera: size ${(theirs.bytes / ours.bytes).toFixed(1)}x, encode ${(theirs.encodeMs / ours.encodeMs).toFixed(0)}x, decode ${(theirs.decodeMs / ours.decodeMs).toFixed(0)}x`,
);
mkdirSync(new URL('results/', import.meta.url), { recursive: true });
writeFileSync(
  new URL('results/codec.json', import.meta.url),
  `${JSON.stringify({ params: PARAMS, date: new Date().toISOString(), rows }, null, 2)}\n`,
);
