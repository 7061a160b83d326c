import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { ErrorCode, TesseraError } from './errors.js';
import { REJECTED_FRAME_EVENT } from './events.js';
import { CLIENT_FRAME_LIMITS, PRE_AUTH_MAX_FRAME_BYTES } from './limits.js';
import {
  evaluateReplySchema,
  helloSchema,
  parseFrame,
  progressSchema,
  trainReplySchema,
} from './messages.js';
import { createMsgpackParser, encodePacket, type Packet, PacketType } from './parser.js';

/**
 * Property-based fuzz of the coordinator's decoder and frame schemas: whatever bytes arrive,
 * the Decoder emits exactly one valid packet or one REJECTED_FRAME notice and never throws, and
 * parseFrame either returns or throws MALFORMED_FRAME. numRuns keep the file to a few seconds.
 */

const parser = createMsgpackParser({
  maxFrameBytes: 1 << 20,
  preAuthMaxFrameBytes: PRE_AUTH_MAX_FRAME_BYTES,
  scanLimits: CLIENT_FRAME_LIMITS,
});
// Packs whatever fast-check builds (Maps, Dates, typed arrays, bigints...) the way a careless
// or hostile peer's msgpackr would, extensions included.
const anyPackr = new Packr({ useRecords: false, moreTypes: true, variableMapSize: true });

function decodeOne(chunk: Uint8Array, authenticated: boolean): Packet {
  const decoder = new parser.Decoder();
  if (authenticated) decoder.authenticate();
  const out: Packet[] = [];
  decoder.on('decoded', (packet) => out.push(packet));
  decoder.add(chunk);
  expect(out).toHaveLength(1);
  return out[0] as Packet;
}

function expectPacketOrNotice(packet: Packet): void {
  expect(Number.isInteger(packet.type) && packet.type >= 0 && packet.type <= 6).toBe(true);
  expect(packet.nsp.startsWith('/')).toBe(true);
  if (Array.isArray(packet.data) && packet.data[0] === REJECTED_FRAME_EVENT) {
    expect([ErrorCode.MALFORMED_FRAME, ErrorCode.PAYLOAD_TOO_LARGE]).toContain(
      (packet.data[1] as { code: string }).code,
    );
  }
}

/** Feeds an event payload through each client schema: a value or MALFORMED_FRAME, nothing else. */
function expectParsedOrMalformed(payload: unknown): void {
  for (const schema of [trainReplySchema, evaluateReplySchema, progressSchema, helloSchema]) {
    try {
      parseFrame(schema, payload, 'frame');
    } catch (error) {
      expect(error).toBeInstanceOf(TesseraError);
      expect((error as TesseraError).code).toBe(ErrorCode.MALFORMED_FRAME);
    }
  }
}

const validFrames = [
  encodePacket({
    type: PacketType.CONNECT,
    nsp: '/',
    data: {
      token: `tsr_${'a'.repeat(43)}`,
      protocolVersion: 1,
      client: { name: 'n', version: '1', runtime: 'node', backend: 'wasm', numExamples: 5 },
    },
  }),
  encodePacket({
    type: PacketType.EVENT,
    nsp: '/',
    id: 3,
    data: [
      'update',
      {
        status: 'ok',
        runId: 'run',
        round: 1,
        weights: new Uint8Array(64),
        numExamples: 10,
        durationMs: 5,
        metrics: { loss: 0.5, accuracy: 0.25 },
      },
    ],
  }),
  encodePacket({
    type: PacketType.EVENT,
    nsp: '/',
    id: 4,
    data: [
      'evaluation',
      { status: 'ok', runId: 'run', round: 1, numExamples: 3, loss: 1, accuracy: 1 },
    ],
  }),
];

describe('decoder fuzz', () => {
  it('arbitrary bytes: one packet or one notice, never a throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), fc.boolean(), (bytes, authenticated) => {
        expectPacketOrNotice(decodeOne(bytes, authenticated));
      }),
      { numRuns: 3000 },
    );
  });

  it('arbitrary MessagePack documents, as packets and as event payloads', () => {
    fc.assert(
      fc.property(
        fc.anything({
          withMap: true,
          withSet: true,
          withTypedArray: true,
          withDate: true,
          withBigInt: true,
        }),
        fc.boolean(),
        (value, authenticated) => {
          let bytes: Uint8Array;
          try {
            bytes = anyPackr.pack(value);
          } catch {
            return; // msgpackr cannot encode it: nothing to send
          }
          expectPacketOrNotice(decodeOne(bytes, authenticated));
          const event = decodeOne(
            anyPackr.pack({ type: 2, nsp: '/', id: 1, data: ['update', value] }),
            authenticated,
          );
          expectPacketOrNotice(event);
          if (Array.isArray(event.data) && event.data[0] === 'update')
            expectParsedOrMalformed(event.data[1]);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('mutated valid frames: one packet or one notice, and the schemas hold', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...validFrames),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 8,
        }),
        fc.integer({ min: -8, max: 8 }),
        (frame, flips, resize) => {
          const length = Math.max(0, frame.byteLength + resize);
          const bytes = new Uint8Array(length);
          bytes.set(frame.subarray(0, length));
          for (const [at, value] of flips) if (length > 0) bytes[at % length] = value;
          const packet = decodeOne(bytes, true);
          expectPacketOrNotice(packet);
          if (packet.type === PacketType.CONNECT) expectParsedOrMalformed(packet.data);
          if (Array.isArray(packet.data) && packet.data[0] !== REJECTED_FRAME_EVENT) {
            expectParsedOrMalformed(packet.data[1]);
          }
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('bounded work: a frame of a million elements is refused in milliseconds', () => {
    const huge = new Uint8Array(4 * 1024 * 1024).fill(0x91); // nested fixarrays
    const map = anyPackr.pack(
      Object.fromEntries(Array.from({ length: 200_000 }, (_, i) => [`k${i}`, 0])),
    );
    for (const bytes of [huge, map]) {
      const started = performance.now();
      const packet = decodeOne(bytes, true);
      // A safety property, not a speed claim: full decoding of `map` takes far longer.
      expect(performance.now() - started).toBeLessThan(500);
      expect((packet.data as unknown[])[0]).toBe(REJECTED_FRAME_EVENT);
    }
  });
});
