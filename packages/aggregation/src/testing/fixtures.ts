/**
 * What this package's tests share (not part of its API, not built: tsconfig.build.json leaves
 * src/testing out).
 */
import { TesseraError } from '@tessera/protocol';
import { expect } from 'vitest';

/** A small seeded generator (mulberry32), so every run of a test sees the same data. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Runs `fn`, which must throw a TesseraError with `code` (and `data.field`, if given). */
export function expectCode(fn: () => unknown, code: string, field?: string): TesseraError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(TesseraError);
    expect((error as TesseraError).code).toBe(code);
    if (field !== undefined) expect((error as TesseraError).data?.['field']).toBe(field);
    return error as TesseraError;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}
