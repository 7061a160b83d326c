import type { ScanLimits } from './limits.js';

/**
 * A structural pre-scan of one MessagePack document: walks the type bytes without building any
 * value, so the parser can refuse a hostile frame before msgpackr materialises it. Work is
 * O(elements) whatever the frame's size: `str` and `bin` payloads are skipped by their length,
 * and a container whose declared size would exceed the element limit is refused at its header.
 *
 * Refuses (with the byte offset where it stopped): more elements (map entries + array items)
 * than `maxElements`, containers nested deeper than `maxDepth`, a `str` longer than
 * `maxStringBytes`, map keys that are not `str` (or are `__proto__`), any ext type, the unused
 * byte 0xc1, a truncated document and trailing bytes.
 */
export type ScanResult = { ok: true; elements: number } | { ok: false; reason: string };

/** `__proto__` as UTF-8: such a key would set an object's prototype when decoded. */
const PROTO_KEY = [0x5f, 0x5f, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x5f, 0x5f];

class ScanError extends Error {}

export function scanMsgpack(bytes: Uint8Array, limits: ScanLimits): ScanResult {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = bytes.byteLength;
  let offset = 0;
  let elements = 0;

  const need = (n: number) => {
    if (offset + n > end) throw new ScanError(`truncated at byte ${offset}`);
  };
  const u8 = () => {
    need(1);
    return view.getUint8(offset++);
  };
  const u16 = () => {
    need(2);
    const v = view.getUint16(offset);
    offset += 2;
    return v;
  };
  const u32 = () => {
    need(4);
    const v = view.getUint32(offset);
    offset += 4;
    return v;
  };
  const skip = (n: number) => {
    need(n);
    offset += n;
  };
  const string = (length: number) => {
    if (length > limits.maxStringBytes) {
      throw new ScanError(
        `string of ${length} bytes at byte ${offset} exceeds the limit of ${limits.maxStringBytes}`,
      );
    }
    skip(length);
  };
  const container = (count: number, perEntry: number, depth: number) => {
    if (depth > limits.maxDepth) {
      throw new ScanError(`nesting deeper than ${limits.maxDepth} at byte ${offset}`);
    }
    elements += count;
    if (elements > limits.maxElements) {
      throw new ScanError(
        `more than ${limits.maxElements} map entries and array items (at byte ${offset})`,
      );
    }
    // Each key and value takes at least one byte: a cheap truncation check before walking.
    need(count * perEntry);
  };

  // Iterative walk: an explicit stack of "values still to read" per open container, so depth
  // costs no JavaScript stack. In a map, the slots left count keys and values; an even count
  // means a key is next, and keys must be strings.
  const remaining: number[] = [];
  const isMap: boolean[] = [];

  const key = () => {
    const type = u8();
    let length: number;
    if (type >= 0xa0 && type <= 0xbf) length = type & 0x1f;
    else if (type === 0xd9) length = u8();
    else if (type === 0xda) length = u16();
    else if (type === 0xdb) length = u32();
    else throw new ScanError(`map key at byte ${offset - 1} is not a string`);
    if (length === PROTO_KEY.length && PROTO_KEY.every((b, i) => bytes[offset + i] === b)) {
      throw new ScanError(`map key __proto__ at byte ${offset}`);
    }
    string(length);
  };

  const value = () => {
    const start = offset;
    const type = u8();
    const depth = remaining.length + 1;
    if (type <= 0x7f || type >= 0xe0) return; // fixint
    if (type >= 0x80 && type <= 0x8f) return open(type & 0x0f, true, depth);
    if (type >= 0x90 && type <= 0x9f) return open(type & 0x0f, false, depth);
    if (type >= 0xa0 && type <= 0xbf) return string(type & 0x1f);
    switch (type) {
      case 0xc0: // nil
      case 0xc2: // false
      case 0xc3: // true
        return;
      case 0xc4:
        return skip(u8());
      case 0xc5:
        return skip(u16());
      case 0xc6:
        return skip(u32());
      case 0xca:
        return skip(4);
      case 0xcb:
        return skip(8);
      case 0xcc:
      case 0xd0:
        return skip(1);
      case 0xcd:
      case 0xd1:
        return skip(2);
      case 0xce:
      case 0xd2:
        return skip(4);
      case 0xcf:
      case 0xd3:
        return skip(8);
      case 0xd9:
        return string(u8());
      case 0xda:
        return string(u16());
      case 0xdb:
        return string(u32());
      case 0xdc:
        return open(u16(), false, depth);
      case 0xdd:
        return open(u32(), false, depth);
      case 0xde:
        return open(u16(), true, depth);
      case 0xdf:
        return open(u32(), true, depth);
      case 0xc1:
        throw new ScanError(`byte 0xc1 (never used) at byte ${start}`);
      default:
        // 0xc7-0xc9 ext 8/16/32, 0xd4-0xd8 fixext: plain MessagePack only.
        throw new ScanError(`extension type 0x${type.toString(16)} at byte ${start}`);
    }
  };

  function open(count: number, map: boolean, depth: number): void {
    container(count, map ? 2 : 1, depth);
    if (count === 0) return;
    remaining.push(map ? count * 2 : count);
    isMap.push(map);
  }

  try {
    value();
    while (remaining.length > 0) {
      const top = remaining.length - 1;
      const left = remaining[top] as number;
      if (left === 0) {
        remaining.pop();
        isMap.pop();
        continue;
      }
      remaining[top] = left - 1;
      if (isMap[top] === true && left % 2 === 0) key();
      else value();
    }
    if (offset !== end) throw new ScanError(`${end - offset} trailing bytes after the document`);
    return { ok: true, elements };
  } catch (error) {
    if (error instanceof ScanError) return { ok: false, reason: error.message };
    throw error;
  }
}
