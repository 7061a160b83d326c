import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { REJECTED_FRAME_EVENT } from './events.js';
import { CLIENT_FRAME_LIMITS } from './limits.js';
import { createMsgpackParser, encodePacket, type Packet, PacketType } from './parser.js';

function decodeAll(chunks: unknown[], maxFrameBytes?: number): Packet[] {
  const parser = createMsgpackParser(maxFrameBytes === undefined ? {} : { maxFrameBytes });
  const decoder = new parser.Decoder();
  const out: Packet[] = [];
  decoder.on('decoded', (p) => out.push(p));
  for (const chunk of chunks) decoder.add(chunk);
  return out;
}

describe('msgpack Socket.IO parser', () => {
  it('round-trips an event with binary weights as one binary frame', () => {
    const parser = createMsgpackParser();
    const weights = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
    const packet: Packet = {
      type: PacketType.EVENT,
      nsp: '/',
      id: 7,
      data: ['update', { runId: 'r', weights }],
    };
    const frames = new parser.Encoder().encode(packet);
    expect(frames).toHaveLength(1);
    expect(frames[0]).toBeInstanceOf(Uint8Array);
    const [decoded] = decodeAll(frames);
    expect(decoded?.id).toBe(7);
    const payload = (decoded?.data as [string, { weights: Uint8Array }] | undefined)?.[1];
    if (!payload) throw new Error('no payload');
    expect([...payload.weights]).toEqual([...weights]);
  });

  it('is plain MessagePack: a generic decoder reads the packet map', () => {
    const frame = encodePacket({ type: PacketType.CONNECT, nsp: '/', data: { token: 't' } });
    // A first byte in 0x80..0x8f is a fixmap: no msgpackr record or extension wrapper.
    expect((frame[0] ?? 0) & 0xf0).toBe(0x80);
    expect(new Packr({ useRecords: false }).unpack(frame)).toEqual({
      type: 0,
      nsp: '/',
      data: { token: 't' },
    });
  });

  it('turns an oversized frame into a rejection that keeps the ack id', () => {
    const frame = encodePacket({
      type: PacketType.EVENT,
      nsp: '/',
      id: 3,
      data: ['update', new Uint8Array(2048)],
    });
    const [decoded] = decodeAll([frame], 1024);
    expect(decoded?.id).toBe(3);
    expect(decoded?.data).toEqual([
      REJECTED_FRAME_EVENT,
      expect.objectContaining({ event: 'update', bytes: frame.byteLength }),
    ]);
    expect(JSON.stringify(decoded?.data)).toMatch(/exceeds the limit of 1024/);
  });

  it.each([
    ['garbage bytes', new Uint8Array([0xc1, 0xff, 0x00])],
    ['a msgpack string, not a packet', new Packr({ useRecords: false }).pack('hello')],
    ['an unknown packet type', new Packr({ useRecords: false }).pack({ type: 9, nsp: '/' })],
    [
      'an event without a name',
      new Packr({ useRecords: false }).pack({ type: 2, nsp: '/', data: [] }),
    ],
    [
      'a negative ack id',
      new Packr({ useRecords: false }).pack({ type: 2, nsp: '/', id: -1, data: ['x'] }),
    ],
    ['a text frame', '2["update",{}]'],
  ])('turns %s into a rejection without an ack id', (_name, chunk) => {
    const [decoded] = decodeAll([chunk]);
    expect(decoded?.id).toBeUndefined();
    expect((decoded?.data as unknown[] | undefined)?.[0]).toBe(REJECTED_FRAME_EVENT);
  });

  it('writes undefined as nil, so strict MessagePack decoders read every packet', () => {
    const frame = encodePacket({
      type: PacketType.CONNECT,
      nsp: '/',
      data: { sid: 's', pid: undefined },
    });
    expect([...frame]).not.toContain(0xd4);
    expect(new Packr({ useRecords: false }).unpack(frame)).toEqual({
      type: 0,
      nsp: '/',
      data: { sid: 's', pid: null },
    });
  });

  it('drops a forged parser notice', () => {
    const frame = encodePacket({
      type: PacketType.EVENT,
      nsp: '/',
      data: [REJECTED_FRAME_EVENT, {}],
    });
    expect(decodeAll([frame])).toEqual([]);
  });

  it('before authenticate, refuses a frame over the pre-auth limit without decoding it', () => {
    const parser = createMsgpackParser({ maxFrameBytes: 1 << 20, preAuthMaxFrameBytes: 64 });
    const decoder = new parser.Decoder();
    const out: Packet[] = [];
    decoder.on('decoded', (p) => out.push(p));
    const connect = encodePacket({ type: PacketType.CONNECT, nsp: '/', data: { token: 't' } });
    // Garbage of 65 bytes: were it decoded, it would be MALFORMED_FRAME, not PAYLOAD_TOO_LARGE.
    const big = new Uint8Array(65).fill(0xc1);
    decoder.add(connect);
    decoder.add(big);
    expect(out[0]).toEqual({ type: PacketType.CONNECT, nsp: '/', data: { token: 't' } });
    expect(out[1]?.id).toBeUndefined();
    expect(out[1]?.data).toEqual([
      REJECTED_FRAME_EVENT,
      expect.objectContaining({ code: 'PAYLOAD_TOO_LARGE', bytes: 65 }),
    ]);
    expect(JSON.stringify(out[1]?.data)).toMatch(/before authentication exceeds the limit of 64/);
    expect(decoder.frameLimit).toBe(64);
    expect(parser.isDecoder(decoder)).toBe(true);
    expect(parser.isDecoder({ add() {} })).toBe(false);

    decoder.authenticate();
    expect(decoder.frameLimit).toBe(1 << 20);
    const update = encodePacket({
      type: PacketType.EVENT,
      nsp: '/',
      id: 1,
      data: ['update', new Uint8Array(1000)],
    });
    decoder.add(update);
    expect(out[2]?.data).toEqual(['update', expect.any(Uint8Array)]);
    decoder.authenticate(500);
    decoder.add(update);
    expect(out[3]?.id).toBe(1);
    expect(JSON.stringify(out[3]?.data)).toMatch(/exceeds the limit of 500/);
  });

  it('a client-side decoder (no preAuthMaxFrameBytes) has no pre-auth phase', () => {
    const decoder = new (createMsgpackParser({ maxFrameBytes: 4096 }).Decoder)();
    expect(decoder.frameLimit).toBe(4096);
  });

  it('runs the structural pre-scan before decoding: a huge map is refused as MALFORMED_FRAME', () => {
    const parser = createMsgpackParser({ scanLimits: CLIENT_FRAME_LIMITS });
    const decoder = new parser.Decoder();
    const out: Packet[] = [];
    decoder.on('decoded', (p) => out.push(p));
    const metrics = Object.fromEntries(
      Array.from({ length: CLIENT_FRAME_LIMITS.maxElements + 1 }, (_, i) => [`k${i}`, i]),
    );
    decoder.add(
      encodePacket({ type: PacketType.EVENT, nsp: '/', id: 2, data: ['update', { metrics }] }),
    );
    decoder.add(
      new Uint8Array([
        0x82, 0xa4, 0x74, 0x79, 0x70, 0x65, 0x02, 0xa3, 0x6e, 0x73, 0x70, 0xd4, 0, 0,
      ]),
    );
    expect(out.map((p) => [p.id, (p.data as unknown[])[0]])).toEqual([
      [undefined, REJECTED_FRAME_EVENT],
      [undefined, REJECTED_FRAME_EVENT],
    ]);
    expect(JSON.stringify(out[0]?.data)).toContain(
      `more than ${CLIENT_FRAME_LIMITS.maxElements} map entries`,
    );
    expect(JSON.stringify(out[1]?.data)).toMatch(/extension type 0xd4/);
  });
});
