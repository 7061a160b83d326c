/**
 * The pseudo-random generator that expands a 32-byte seed into a mask of uint32 words:
 * AES-256 in counter mode through WebCrypto, key = the seed, initial counter block = 16 zero
 * bytes, the low 64 bits of the block counting (big-endian, as WebCrypto's AES-CTR `length: 64`
 * does), the keystream read as little-endian uint32 words.
 *
 * Why AES-CTR rather than ChaCha20 (@noble/ciphers): it is in WebCrypto in Node and in every
 * browser, so no dependency, and it runs on AES-NI in native code; a round expands
 * |clients| masks of |params| words per client (100 × 1.66 M words for the CNN), where native
 * speed matters. The seed is secret and used for one mask only, so a fixed counter block is safe.
 */

const COUNTER_BITS = 64;
/** Bytes per WebCrypto call: bounds the transient copy for large models, keeps the counter exact. */
const CHUNK_BYTES = 1 << 24;

function cryptoKey(seed: Uint8Array): Promise<CryptoKey> {
  return globalThis.crypto.subtle.importKey('raw', seed.slice(), { name: 'AES-CTR' }, false, [
    'encrypt',
  ]);
}

/** Adds `blocks` to a 128-bit big-endian counter block's low 64 bits (a copy). */
function advanceCounter(counter: Uint8Array, blocks: number): Uint8Array<ArrayBuffer> {
  const next = new Uint8Array(16);
  next.set(counter);
  const view = new DataView(next.buffer);
  const low = view.getBigUint64(8, false);
  view.setBigUint64(8, BigInt.asUintN(64, low + BigInt(blocks)), false);
  return next;
}

/**
 * `byteLength` bytes of AES-CTR keystream under `key` from the counter block `initialCounter`.
 * Exposed for the known-answer test against NIST SP 800-38A F.5.5.
 */
export async function aesCtrKeystream(
  key: Uint8Array,
  initialCounter: Uint8Array,
  byteLength: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const aesKey = await cryptoKey(key);
  const out = new Uint8Array(byteLength);
  for (let offset = 0; offset < byteLength; offset += CHUNK_BYTES) {
    const length = Math.min(CHUNK_BYTES, byteLength - offset);
    const counter = advanceCounter(initialCounter, offset / 16);
    const block = await globalThis.crypto.subtle.encrypt(
      { name: 'AES-CTR', counter, length: COUNTER_BITS },
      aesKey,
      new Uint8Array(length),
    );
    out.set(new Uint8Array(block), offset);
  }
  return out;
}

export const SEED_BYTES = 32;
const ZERO_COUNTER = new Uint8Array(16);
const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** The mask PRG(seed): `words` uint32 words, deterministic in the seed. */
export async function expandSeed(seed: Uint8Array, words: number): Promise<Uint32Array> {
  if (seed.length !== SEED_BYTES) throw new RangeError(`a PRG seed is ${SEED_BYTES} bytes`);
  const stream = await aesCtrKeystream(seed, ZERO_COUNTER, words * 4);
  if (littleEndian) return new Uint32Array(stream.buffer);
  const view = new DataView(stream.buffer);
  const mask = new Uint32Array(words);
  for (let i = 0; i < words; i++) mask[i] = view.getUint32(i * 4, true);
  return mask;
}
