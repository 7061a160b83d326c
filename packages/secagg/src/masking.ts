/** Mask arithmetic modulo 2^32 (Uint32Array stores wrap: ToUint32 of the sum or difference). */
import { expandSeed } from './prg.js';

export function addInto(target: Uint32Array, words: Uint32Array): void {
  for (let i = 0; i < target.length; i++) target[i] = (target[i] as number) + (words[i] as number);
}

export function subtractInto(target: Uint32Array, words: Uint32Array): void {
  for (let i = 0; i < target.length; i++) target[i] = (target[i] as number) - (words[i] as number);
}

/**
 * The pairwise mask of `self` towards `other` is +PRG(s) when self < other and −PRG(s) when
 * self > other (ids compared as JavaScript strings, UTF-16 code units): the two cancel in a sum.
 */
export async function applyPairwiseMask(
  target: Uint32Array,
  seed: Uint8Array,
  self: string,
  other: string,
): Promise<void> {
  const mask = await expandSeed(seed, target.length);
  if (self < other) addInto(target, mask);
  else subtractInto(target, mask);
}
