import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { TokenizerSpec } from './task-schema.js';

/** Token id of padding (after the end of a short text). */
export const PAD_ID = 0;
/** Token id of a token that is not in the vocabulary. */
export const UNKNOWN_ID = 1;
/** Id of vocabulary[0]; vocabulary[i] is FIRST_VOCABULARY_ID + i. */
export const FIRST_VOCABULARY_ID = 2;

// A word: letters, digits and combining marks, with apostrophes inside ("don't", "o'clock").
// Punctuation, spaces and symbols only separate words.
const WORD = /[\p{L}\p{N}\p{M}]+(?:['’][\p{L}\p{N}\p{M}]+)*/gu;

/**
 * The tokens of `text` as the spec reads it: NFC-normalised first (an 'é' typed as e + accent
 * is the same token as the precomposed one), lower-cased if asked (toLowerCase: the same in
 * every locale), then words (runs of letters and digits, see WORD) or characters (Unicode
 * code points, spaces included).
 */
export function tokens(text: string, spec: Pick<TokenizerSpec, 'kind' | 'lowercase'>): string[] {
  let normalized = text.normalize('NFC');
  if (spec.lowercase) normalized = normalized.toLowerCase();
  return spec.kind === 'word' ? (normalized.match(WORD) ?? []) : Array.from(normalized);
}

export interface Tokenizer {
  /** Ids of `text`, cut to maxLength or padded with PAD_ID after its end. */
  encode(text: string): Int32Array;
  /** Ids of `text` written into `target` at `offset` (maxLength of them), for batches. */
  encodeInto(text: string, target: { [index: number]: number }, offset: number): void;
  readonly maxLength: number;
}

function invalid(field: string, message: string): TesseraError {
  return new TesseraError(ErrorCode.INVALID_ARGUMENT, `tokenizer: ${field}: ${message}`, { field });
}

/**
 * A tokenizer of the text schema: ids 0 padding, 1 unknown, 2.. the vocabulary in order. Texts
 * longer than maxLength keep their first maxLength tokens (the start of a message says most
 * about it, and it is what Keras' TextVectorization keeps too). Refuses a vocabulary with an
 * empty or repeated entry, a char vocabulary entry longer than one character, or an entry a
 * lower-casing tokenizer can never produce: each would silently make ids mean nothing.
 */
export function createTokenizer(spec: TokenizerSpec, maxLength: number): Tokenizer {
  if (!Number.isSafeInteger(maxLength) || maxLength < 1) {
    throw invalid('maxLength', `must be a positive integer, got ${String(maxLength)}`);
  }
  const ids = new Map<string, number>();
  spec.vocabulary.forEach((entry, i) => {
    const field = `tokenizer.vocabulary[${i}]`;
    if (entry === '' || ids.has(entry)) throw invalid(field, `'${entry}' is empty or repeated`);
    if (spec.kind === 'char' && Array.from(entry).length !== 1) {
      throw invalid(field, `'${entry}' is not one character (a char tokenizer)`);
    }
    if (spec.lowercase && entry !== entry.toLowerCase()) {
      throw invalid(field, `'${entry}' has capitals, which a lower-casing tokenizer never yields`);
    }
    ids.set(entry, FIRST_VOCABULARY_ID + i);
  });
  const encodeInto = (text: string, target: { [index: number]: number }, offset: number) => {
    const found = tokens(text, spec);
    for (let i = 0; i < maxLength; i++) {
      const token = found[i];
      target[offset + i] = token === undefined ? PAD_ID : (ids.get(token) ?? UNKNOWN_ID);
    }
  };
  return {
    maxLength,
    encodeInto,
    encode(text) {
      const out = new Int32Array(maxLength);
      encodeInto(text, out, 0);
      return out;
    },
  };
}

export interface VocabularyOptions {
  /** Most entries (ids 2..size+1). */
  size: number;
  /** Fewest occurrences over all texts for a token to be an entry. Default 1. */
  minCount?: number;
}

/**
 * A vocabulary for task authors: the `size` most frequent tokens of `texts` seen at least
 * `minCount` times, most frequent first, ties in code-unit order (the same list on every
 * machine). Run it on data the author may see; clients never build their own (their ids would
 * differ from everyone else's).
 */
export function buildVocabulary(
  texts: Iterable<string>,
  spec: Pick<TokenizerSpec, 'kind' | 'lowercase'>,
  options: VocabularyOptions,
): string[] {
  const minCount = options.minCount ?? 1;
  if (!Number.isSafeInteger(options.size) || options.size < 1) {
    throw invalid('size', `must be a positive integer, got ${String(options.size)}`);
  }
  if (!Number.isSafeInteger(minCount) || minCount < 1) {
    throw invalid('minCount', `must be a positive integer, got ${String(minCount)}`);
  }
  const counts = new Map<string, number>();
  for (const text of texts) {
    for (const token of tokens(text, spec)) counts.set(token, (counts.get(token) ?? 0) + 1);
  }
  return [...counts]
    .filter(([, count]) => count >= minCount)
    .sort(([a, countA], [b, countB]) => countB - countA || (a < b ? -1 : a > b ? 1 : 0))
    .slice(0, options.size)
    .map(([token]) => token);
}
