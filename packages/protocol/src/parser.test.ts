import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { REJECTED_FRAME_EVENT } from './events.js';
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
});
