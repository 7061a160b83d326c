/**
 * Derives independent 32-bit seeds from a run seed and a path (round, attempt, ...), so that
 * client sampling and local shuffles are reproducible per round without sharing one stream.
 * The mixing step is the finaliser of MurmurHash3 (good avalanche, tiny and well known).
 */
export function deriveSeed(seed: number, ...path: number[]): number {
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
