import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { sha256Hex } from './digest.js';

describe('sha256Hex', () => {
  it("is node:crypto's sha256 of exactly the view's bytes, not of the buffer behind it", async () => {
    const buffer = new Uint8Array(1 << 20).map((_, i) => (i * 131) & 0xff);
    for (const view of [buffer, buffer.subarray(3, 1000), buffer.subarray(0, 0)]) {
      expect(await sha256Hex(view)).toBe(createHash('sha256').update(view).digest('hex'));
    }
    // The empty string's well-known digest: leading zeros of each byte are kept.
    expect(await sha256Hex(new Uint8Array(0))).toBe(
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
  });
});
