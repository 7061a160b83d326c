import { ErrorCode, TesseraError } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import { deriveSeed, requireSeedDerivation, type SeedPurpose } from './seeds.js';

const shuffle = (round: number) => ({ purpose: 'shuffle' as const, round, attempt: 0 });

describe('round seeds', () => {
  it('version 2 gives distinct seeds over 100 run seeds x 100 rounds x 2 purposes', () => {
    const seen = new Map<number, string>();
    for (let runSeed = 0; runSeed < 100; runSeed++) {
      for (let round = 1; round <= 100; round++) {
        for (const purpose of ['sample', 'shuffle'] as SeedPurpose[]) {
          const attempt = purpose === 'sample' ? 1 : 0;
          const seed = deriveSeed(2, runSeed, { purpose, round, attempt });
          const where = `${runSeed}/${round}/${purpose}`;
          expect(seen.get(seed), `${where} collides`).toBeUndefined();
          seen.set(seed, where);
          expect(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32).toBe(true);
        }
      }
    }
    expect(seen.size).toBe(20_000);
  });

  it("no longer collides on issue 12's example (run seed 1 / round 2 vs run seed 2 / round 1)", () => {
    // Version 1 (seed XOR round, then mixing) gave both 3601063660.
    expect(deriveSeed(1, 1, shuffle(2))).toBe(3_601_063_660);
    expect(deriveSeed(1, 2, shuffle(1))).toBe(3_601_063_660);
    expect(deriveSeed(2, 1, shuffle(2))).not.toBe(deriveSeed(2, 2, shuffle(1)));
  });

  it('version 2 is the sha256 derivation, pinned to known values', () => {
    expect(deriveSeed(2, 1, shuffle(2))).toBe(2_893_124_822);
    expect(deriveSeed(2, 2, shuffle(1))).toBe(2_417_734_144);
    // docs/protocol.md's worked example: run seed 0, round 1.
    expect(deriveSeed(2, 0, shuffle(1))).toBe(3_104_724_603);
    // Purposes and attempts are separate streams.
    expect(deriveSeed(2, 5, { purpose: 'sample', round: 3, attempt: 1 })).not.toBe(
      deriveSeed(2, 5, { purpose: 'sample', round: 3, attempt: 2 }),
    );
    expect(deriveSeed(2, 5, { purpose: 'sample', round: 3, attempt: 0 })).not.toBe(
      deriveSeed(2, 5, shuffle(3)),
    );
  });

  it('version 1 still computes the values recorded runs were sampled and shuffled with', () => {
    // The original deriveSeed(seed, round, attempt) and deriveSeed(seed, round), unchanged.
    expect(deriveSeed(1, 0, shuffle(1))).toBe(301_794_027);
    const v1Sample = deriveSeed(1, 7, { purpose: 'sample', round: 3, attempt: 2 });
    expect(v1Sample).toBe(legacy(7, 3, 2));
    expect(deriveSeed(1, 7, shuffle(3))).toBe(legacy(7, 3));
    // Version 1's shuffle ignores the attempt, as it always did.
    expect(deriveSeed(1, 7, { purpose: 'shuffle', round: 3, attempt: 4 })).toBe(legacy(7, 3));
  });

  it('refuses an unknown derivation version and inputs it cannot encode', () => {
    expect(requireSeedDerivation(1)).toBe(1);
    expect(() => requireSeedDerivation(3)).toThrow(/unknown seed derivation 3/);
    try {
      deriveSeed(2, -1, shuffle(1));
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(TesseraError);
      expect((error as TesseraError).code).toBe(ErrorCode.INVALID_ARGUMENT);
      expect((error as TesseraError).data?.['field']).toBe('runSeed');
    }
  });
});

/** An independent copy of version 1 (as it was in seeds.ts before version 2). */
function legacy(seed: number, ...path: number[]): number {
  let h = seed >>> 0;
  for (const part of path) {
    h = Math.imul(h ^ (part >>> 0), 0x9e3779b1) >>> 0;
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b) >>> 0;
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35) >>> 0;
    h ^= h >>> 16;
  }
  return h >>> 0;
}
