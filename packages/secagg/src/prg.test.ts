import { createCipheriv } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { aesCtrKeystream, expandSeed } from './prg.js';

const fromHex = (hex: string) => Uint8Array.from(Buffer.from(hex, 'hex'));

// NIST SP 800-38A, F.5.5 CTR-AES256.Encrypt: keystream = plaintext XOR ciphertext.
const NIST_KEY = fromHex('603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4');
const NIST_COUNTER = fromHex('f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff');
const NIST_PLAINTEXT = fromHex(
  '6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51' +
    '30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710',
);
const NIST_CIPHERTEXT = fromHex(
  '601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5' +
    '2b0930daa23de94ce87017ba2d84988ddfc9c58db67aada613c2dd08457941a6',
);

function opensslKeystream(key: Uint8Array, counter: Uint8Array, bytes: number): Uint8Array {
  const cipher = createCipheriv('aes-256-ctr', key, counter);
  return Uint8Array.from(Buffer.concat([cipher.update(Buffer.alloc(bytes)), cipher.final()]));
}

describe('the AES-256-CTR PRG', () => {
  it('gives the NIST SP 800-38A F.5.5 keystream', async () => {
    const expected = NIST_PLAINTEXT.map((byte, i) => byte ^ (NIST_CIPHERTEXT[i] as number));
    expect(await aesCtrKeystream(NIST_KEY, NIST_COUNTER, 64)).toEqual(expected);
  });

  it('expands a seed into little-endian words of the keystream from a zero counter block', async () => {
    const words = await expandSeed(NIST_KEY, 8);
    // AES-256(NIST key) of counter blocks 0, 1 (OpenSSL: e568f681 94cf76d6 174d4cc0 4310a854 ...),
    // each 4 bytes read little-endian: a pinned vector for the whole construction.
    expect([...words.subarray(0, 4)]).toEqual([2180409573, 3598110612, 3226225943, 1420300355]);
    const stream = opensslKeystream(NIST_KEY, new Uint8Array(16), 32);
    expect(Buffer.from(stream).toString('hex')).toBe(
      'e568f68194cf76d6174d4cc04310a85491151e5d0b7a1f1bc0d7acd0ae3e51e4',
    );
    const view = new DataView(stream.buffer);
    expect([...words]).toEqual(Array.from({ length: 8 }, (_, i) => view.getUint32(i * 4, true)));
  });

  it('matches OpenSSL across its 16 MiB WebCrypto chunks (the counter carries over)', async () => {
    const seed = fromHex('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff');
    const words = (1 << 22) + 37; // 16 MiB + 148 bytes: two chunks
    const mask = await expandSeed(seed, words);
    const reference = opensslKeystream(seed, new Uint8Array(16), words * 4);
    expect(Buffer.from(mask.buffer).equals(Buffer.from(reference))).toBe(true);
  });

  it('is deterministic in the seed, and different seeds give unrelated masks', async () => {
    const seed = new Uint8Array(32).fill(7);
    const other = seed.slice();
    other[31] = 8;
    expect(await expandSeed(seed, 100)).toEqual(await expandSeed(seed, 100));
    const a = await expandSeed(seed, 100);
    const b = await expandSeed(other, 100);
    expect(a.filter((word, i) => word === b[i]).length).toBeLessThan(3);
  });

  it('refuses a seed that is not 32 bytes', async () => {
    await expect(expandSeed(new Uint8Array(16), 4)).rejects.toThrow(RangeError);
  });
});
