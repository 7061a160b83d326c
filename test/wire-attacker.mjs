// A hostile peer for test/wire-limits.test.ts, in its own process so that building and sending
// its frames costs the coordinator's event loop nothing: what the test measures is the
// coordinator's own work. Usage: node wire-attacker.mjs <url> <entries> [token]
// Without a token it sends, right after the Engine.IO open, an EVENT-less map of <entries> short
// keys; with one it authenticates first and sends an `update` whose metrics map has <entries>
// keys. Prints one JSON line per outcome: {"closed": code} or {"rejected": message}.
import { PROTOCOL_VERSION } from '@tessera/protocol';
import { Packr } from 'msgpackr';
import WebSocket from 'ws';

const [url, entriesArg, token] = process.argv.slice(2);
const entries = Number(entriesArg);
const packr = new Packr({ useRecords: false, variableMapSize: true });
const say = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);

function shortKeyMap(count) {
  const out = new Uint8Array(5 + count * 8);
  out[0] = 0xdf;
  new DataView(out.buffer).setUint32(1, count);
  let at = 5;
  for (let k = 0; k < count; k++) {
    const key = k.toString(36).padStart(6, '0');
    out[at++] = 0xa6;
    for (let i = 0; i < 6; i++) out[at++] = key.charCodeAt(i);
    out[at++] = 0x00;
  }
  return out;
}

function updateWithMetrics(count) {
  // `data` last, so the payload map ends the frame; its fixmap header (5 entries) becomes 6
  // and `metrics: <map>` is appended.
  const head = packr.pack({
    type: 2,
    nsp: '/',
    id: 9,
    data: ['update', { status: 'ok', runId: 'r', round: 1, numExamples: 1, durationMs: 1 }],
  });
  const header = head.lastIndexOf(0x85);
  const tail = new Uint8Array([0xa7, ...new TextEncoder().encode('metrics')]);
  const body = shortKeyMap(count);
  const out = new Uint8Array(head.byteLength + tail.byteLength + body.byteLength);
  out.set(head);
  out[header] = 0x86;
  out.set(tail, head.byteLength);
  out.set(body, head.byteLength + tail.byteLength);
  return out;
}

const frame = token === undefined ? shortKeyMap(entries) : updateWithMetrics(entries);
say({ bytes: frame.byteLength });
const ws = new WebSocket(`${url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`);
ws.on('close', (code) => {
  say({ closed: code });
  process.exit(0);
});
ws.on('error', () => {});
ws.on('message', (data, isBinary) => {
  if (!isBinary) {
    const text = String(data);
    if (text === '2') ws.send('3');
    else if (text.startsWith('0')) {
      if (token === undefined) ws.send(frame);
      else {
        const auth = {
          token,
          protocolVersion: PROTOCOL_VERSION,
          client: {
            name: 'attacker',
            version: '0',
            runtime: 'other',
            backend: 'none',
            numExamples: 1,
          },
        };
        ws.send(packr.pack({ type: 0, nsp: '/', data: auth }));
      }
    }
    return;
  }
  const packet = packr.unpack(data);
  if (packet.type === 2 && packet.data[0] === 'welcome') ws.send(frame);
  if (packet.type === 2 && packet.data[0] === 'rejected') {
    say({ rejected: packet.data[1].message, code: packet.data[1].code });
    ws.close();
  }
});
