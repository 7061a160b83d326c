/** Byte helpers that run the same in Node and in a browser (no Buffer, no node: imports). */

const utf8 = new TextEncoder();

export function utf8Bytes(text: string): Uint8Array<ArrayBuffer> {
  return utf8.encode(text) as Uint8Array<ArrayBuffer>;
}

export function concatBytes(...parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * Strings as `uint32 big-endian byte length ‖ UTF-8`, concatenated: an unambiguous encoding
 * (no id can end where another begins), used for HKDF info and AES-GCM additional data.
 */
export function encodeFields(...fields: readonly string[]): Uint8Array<ArrayBuffer> {
  const parts: Uint8Array[] = [];
  for (const field of fields) {
    const bytes = utf8Bytes(field);
    const length = new Uint8Array(4);
    new DataView(length.buffer).setUint32(0, bytes.length, false);
    parts.push(length, bytes);
  }
  return concatBytes(...parts);
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= (a[i] as number) ^ (b[i] as number);
  return difference === 0;
}

/**
 * A plain Uint8Array copy on its own ArrayBuffer. Inputs may be Node Buffers or views into a
 * larger frame (msgpackr decodes binary fields as such); WebCrypto and the Shamir library want
 * an exact Uint8Array, and a copy also means later changes to the frame cannot reach our state.
 */
export function ownBytes(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return copy;
}

export function toBase64Url(bytes: Uint8Array): string {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}

export function fromBase64Url(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text.replaceAll('-', '+').replaceAll('_', '/'));
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

export function randomBytes(length: number): Uint8Array<ArrayBuffer> {
  return globalThis.crypto.getRandomValues(new Uint8Array(length));
}

const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** uint32 words as little-endian bytes (the wire order), whatever this machine's order is. */
export function wordsToBytes(words: Uint32Array): Uint8Array<ArrayBuffer> {
  if (littleEndian) return new Uint8Array(words.slice().buffer);
  const out = new Uint8Array(words.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < words.length; i++) view.setUint32(i * 4, words[i] as number, true);
  return out;
}

/** Little-endian bytes (length a multiple of 4) as uint32 words, copied. */
export function bytesToWords(bytes: Uint8Array): Uint32Array<ArrayBuffer> {
  const words = new Uint32Array(bytes.length / 4);
  if (littleEndian) {
    new Uint8Array(words.buffer).set(bytes.subarray(0, words.length * 4));
    return words;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < words.length; i++) words[i] = view.getUint32(i * 4, true);
  return words;
}
