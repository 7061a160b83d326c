import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { combineShares, SHARE_BYTES, shareX, splitSecret } from './shamir.js';

/** t-of-n parameters as SecAgg uses them: 2 ≤ t ≤ n ≤ 255. */
const thresholdAndHolders = fc
  .integer({ min: 2, max: 40 })
  .chain((holders) => fc.tuple(fc.integer({ min: 2, max: holders }), fc.constant(holders)));

const secret32 = fc.uint8Array({ minLength: 32, maxLength: 32 });

describe('Shamir t-of-n sharing of 32-byte secrets', () => {
  it('any t of the n shares give the secret back', async () => {
    await fc.assert(
      fc.asyncProperty(
        secret32,
        thresholdAndHolders,
        fc.integer(),
        async (secret, [t, n], pick) => {
          const shares = await splitSecret(secret, n, t);
          expect(shares).toHaveLength(n);
          for (const share of shares) expect(share).toHaveLength(SHARE_BYTES);
          expect(new Set(shares.map(shareX)).size).toBe(n);
          // A pseudo-random subset of t shares, in a shuffled order.
          const order = shares.map((share, i) => ({
            share,
            key: Math.imul(i + 1, pick | 1) >>> 0,
          }));
          order.sort((a, b) => a.key - b.key);
          const subset = order.slice(0, t).map((entry) => entry.share);
          expect(await combineShares(subset, t)).toEqual(secret);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('t − 1 shares do not give the secret (t ≥ 3, so that the library takes them)', async () => {
    await fc.assert(
      fc.asyncProperty(secret32, thresholdAndHolders, async (secret, [t, n]) => {
        fc.pre(t >= 3);
        const shares = await splitSecret(secret, n, t);
        const fewer = shares.slice(0, t - 1);
        expect(await combineShares(fewer, t - 1)).not.toEqual(secret);
      }),
      { numRuns: 40 },
    );
  });

  it('the same secret shared twice gives unrelated shares (fresh randomness)', async () => {
    const secret = new Uint8Array(32).fill(9);
    const [a, b] = [await splitSecret(secret, 5, 3), await splitSecret(secret, 5, 3)];
    expect(a).not.toEqual(b);
  });

  it('a changed share changes the reconstruction (which is why SecAgg verifies secrets)', async () => {
    const secret = new Uint8Array(32).fill(1);
    const shares = await splitSecret(secret, 5, 3);
    const bad = (shares[0] as Uint8Array).slice();
    bad[0] = (bad[0] as number) ^ 1;
    expect(
      await combineShares([bad, shares[1] as Uint8Array, shares[2] as Uint8Array], 3),
    ).not.toEqual(secret);
  });

  it('takes shares decoded into Node Buffers (msgpackr) as well as Uint8Arrays', async () => {
    const secret = new Uint8Array(32).fill(3);
    const shares = await splitSecret(secret, 3, 2);
    expect(
      await combineShares(
        shares.map((share) => Buffer.from(share)),
        2,
      ),
    ).toEqual(secret);
  });
});
