import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { CLIENT_FRAME_LIMITS, type ScanLimits } from './limits.js';
import { scanMsgpack } from './msgpack-scan.js';
import { encodePacket, PacketType } from './parser.js';

const packr = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true });
const small: ScanLimits = { maxElements: 10, maxDepth: 3, maxStringBytes: 8 };

const reasonOf = (bytes: Uint8Array, limits = small) => {
  const result = scanMsgpack(bytes, limits);
  return result.ok ? 'ok' : result.reason;
};

/** A map32 header declaring `entries` entries, followed by `body`. */
function map32(entries: number, body: number[] = []): Uint8Array {
  return new Uint8Array([0xdf, ...[24, 16, 8, 0].map((s) => (entries >>> s) & 0xff), ...body]);
}

describe('MessagePack pre-scan', () => {
  it('accepts every frame a client legitimately sends, counting map entries and array items', () => {
    const update = encodePacket({
      type: PacketType.EVENT,
      nsp: '/',
      id: 4,
      data: [
        'update',
        {
          status: 'ok',
          runId: 'r'.repeat(36),
          round: 2 ** 31 - 1,
          weights: new Uint8Array(1 << 20),
          numExamples: 1e9,
          durationMs: 12,
          metrics: Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`m${i}`, i / 3])),
        },
      ],
    });
    // packet 4 + data 2 + reply 7 + metrics 64
    expect(scanMsgpack(update, CLIENT_FRAME_LIMITS)).toEqual({ ok: true, elements: 77 });
    const failed = encodePacket({
      type: PacketType.EVENT,
      nsp: '/',
      data: [
        'update',
        { status: 'failed', runId: 'r', round: 1, error: { message: '\u{1F600}'.repeat(2000) } },
      ],
    });
    expect(scanMsgpack(failed, CLIENT_FRAME_LIMITS).ok).toBe(true);
  });

  it('refuses a map that declares more entries than the limit at its header, in O(1)', () => {
    // The header of a 2^32-1 entry map with nothing behind it: refused before any walk.
    expect(reasonOf(map32(0xffffffff))).toMatch(/more than 10 map entries and array items/);
    // Ten entries of short keys fit; eleven do not.
    const entries = (n: number) =>
      packr.pack(Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i])));
    expect(reasonOf(entries(10))).toBe('ok');
    expect(reasonOf(entries(11))).toMatch(/more than 10/);
  });

  it('counts elements over the whole document, not per container', () => {
    expect(
      reasonOf(
        packr.pack([
          [1, 2, 3],
          [4, 5, 6],
          [7, 8],
        ]),
      ),
    ).toMatch(/more than 10/);
  });

  it('refuses nesting deeper than the limit', () => {
    expect(reasonOf(packr.pack([[[1]]]))).toBe('ok');
    expect(reasonOf(packr.pack([[[[1]]]]))).toMatch(/nesting deeper than 3/);
    // A million nested fixarrays do not recurse: refused at depth 4.
    expect(reasonOf(new Uint8Array(1_000_000).fill(0x91), { ...small, maxElements: 2e6 })).toMatch(
      /nesting deeper than 3/,
    );
  });

  it('refuses a string over the limit by its header, and skips bin payloads by length', () => {
    expect(reasonOf(packr.pack('12345678'))).toBe('ok');
    expect(reasonOf(packr.pack('123456789'))).toMatch(
      /string of 9 bytes at byte 1 exceeds the limit of 8/,
    );
    expect(reasonOf(new Uint8Array([0xdb, 0xff, 0xff, 0xff, 0xff]))).toMatch(
      /string of 4294967295/,
    );
    expect(reasonOf(packr.pack(new Uint8Array(100_000)))).toBe('ok');
    // A map key counts as a string too.
    expect(reasonOf(packr.pack({ 'a-long-key': 1 }))).toMatch(/string of 10 bytes/);
  });

  it.each([
    ['fixext 1', [0xd4, 0x01, 0x00]],
    ['fixext 16', [0xd8, 0x01, ...new Array(16).fill(0)]],
    ['ext 8', [0xc7, 0x01, 0x05, 0x00]],
    ['ext 32', [0xc9, 0, 0, 0, 1, 0x05, 0x00]],
    ['a timestamp (ext -1)', [0xd6, 0xff, 0, 0, 0, 0]],
  ])('refuses an extension type: %s', (_name, bytes) => {
    expect(reasonOf(new Uint8Array(bytes))).toMatch(/extension type/);
    // Also inside a packet map.
    expect(reasonOf(new Uint8Array([0x81, 0xa1, 0x64, ...bytes]))).toMatch(/extension type/);
  });

  it.each([
    ['an empty frame', []],
    ['a truncated str', [0xa5, 0x61]],
    ['a truncated bin32', [0xc6, 0, 0, 0, 9, 1, 2]],
    ['a map missing its value', [0x81, 0xa1, 0x61]],
    ['a truncated float64', [0xcb, 0, 0]],
  ])('refuses %s as truncated', (_name, bytes) => {
    expect(reasonOf(new Uint8Array(bytes))).toMatch(/truncated/);
  });

  it('refuses trailing bytes, 0xc1, non-string map keys and __proto__', () => {
    expect(reasonOf(new Uint8Array([0x01, 0x02]))).toMatch(/1 trailing bytes/);
    expect(reasonOf(new Uint8Array([0xc1]))).toMatch(/0xc1/);
    expect(reasonOf(new Uint8Array([0x81, 0x01, 0x02]))).toMatch(
      /map key at byte 1 is not a string/,
    );
    expect(reasonOf(new Uint8Array([0x81, 0x90, 0x02]))).toMatch(/not a string/);
    const proto = new Uint8Array([0x81, 0xa9, ...new TextEncoder().encode('__proto__'), 0xc0]);
    expect(reasonOf(proto, { ...small, maxStringBytes: 16 })).toMatch(/__proto__/);
  });

  it('reads every scalar format', () => {
    const scalars = [
      0x00, 0x7f, 0xe0, 0xff, 0xc0, 0xc2, 0xc3, 0xcc, 1, 0xcd, 0, 1, 0xce, 0, 0, 0, 1, 0xcf, 0, 0,
      0, 0, 0, 0, 0, 1, 0xd0, 1, 0xd1, 0, 1, 0xd2, 0, 0, 0, 1, 0xd3, 0, 0, 0, 0, 0, 0, 0, 1, 0xca,
      0, 0, 0, 0, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xc4, 1, 9, 0xc5, 0, 1, 9, 0xd9, 1, 0x61, 0xda, 0,
      1, 0x61, 0xdc, 0, 1, 0x01, 0xde, 0, 1, 0xa1, 0x61, 0x01,
    ];
    const array = new Uint8Array([0xdd, 0, 0, 0, 23, ...scalars]);
    expect(scanMsgpack(array, { maxElements: 40, maxDepth: 2, maxStringBytes: 8 })).toEqual({
      ok: true,
      elements: 25,
    });
  });
});
