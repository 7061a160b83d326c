import { createHash } from 'node:crypto';
import { ErrorCode, TesseraError } from '@tessera/protocol';

/**
 * What a derived seed is for. Each purpose gets its own stream, so that the client sample of
 * a round and the clients' local shuffles of that round never share a seed.
 */
export type SeedPurpose = 'sample' | 'shuffle';

/**
 * The derivation versions a run can record (`Run.seedDerivation`):
 * 1: the original mixing (MurmurHash3's finaliser over seed XOR round); it collides across
 *    runs (run seed 1 / round 2 and run seed 2 / round 1 give the same seed). Kept only so
 *    that runs recorded with it resume and replay unchanged.
 * 2: sha256 over a canonical encoding of (purpose, run seed, round, attempt).
 */
export const SEED_DERIVATIONS = [1, 2] as const;
export type SeedDerivation = (typeof SEED_DERIVATIONS)[number];

/** The version new runs get (the database column's default). */
export const CURRENT_SEED_DERIVATION: SeedDerivation = 2;

export interface SeedPath {
  purpose: SeedPurpose;
  round: number;
  /** The retry attempt of the round, from 1; 0 for seeds shared by every attempt (shuffles). */
  attempt: number;
}

export function requireSeedDerivation(version: number): SeedDerivation {
  if (!(SEED_DERIVATIONS as readonly number[]).includes(version)) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `unknown seed derivation ${version}; this coordinator knows ${SEED_DERIVATIONS.join(', ')}`,
      { field: 'seedDerivation' },
    );
  }
  return version as SeedDerivation;
}

/** A 32-bit seed for one purpose of one round attempt of a run, by the run's recorded version. */
export function deriveSeed(version: SeedDerivation, runSeed: number, path: SeedPath): number {
  if (version === 1) {
    // Version 1 derived the sample from (round, attempt) and the shuffle from (round) alone.
    return path.purpose === 'sample'
      ? legacyDeriveSeed(runSeed, path.round, path.attempt)
      : legacyDeriveSeed(runSeed, path.round);
  }
  return hashSeed(runSeed, path);
}

/**
 * Version 2: the first 4 bytes (big-endian) of sha256 over
 * "tessera-seed-v2" 0x00 purpose 0x00 uint64be(runSeed) uint64be(round) uint64be(attempt).
 * Fixed-width fields and a separator after each string make the encoding injective, so two
 * different inputs can only collide by chance (about 1 in 2^32 per pair), never by structure.
 */
function hashSeed(runSeed: number, { purpose, round, attempt }: SeedPath): number {
  const numbers = Buffer.alloc(24);
  numbers.writeBigUInt64BE(toUint64(runSeed, 'runSeed'), 0);
  numbers.writeBigUInt64BE(toUint64(round, 'round'), 8);
  numbers.writeBigUInt64BE(toUint64(attempt, 'attempt'), 16);
  const digest = createHash('sha256')
    .update(`tessera-seed-v2\u0000${purpose}\u0000`, 'utf8')
    .update(numbers)
    .digest();
  return digest.readUInt32BE(0);
}

function toUint64(value: number, field: string): bigint {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `${field} must be a non-negative safe integer to derive a seed (got ${value})`,
      { field },
    );
  }
  return BigInt(value);
}

/**
 * Version 1, unchanged: MurmurHash3's finaliser applied after XOR-ing in each path part. The
 * XOR makes (seed, round) and (round, seed) collide, which is why version 2 replaced it.
 */
function legacyDeriveSeed(seed: number, ...path: number[]): number {
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
