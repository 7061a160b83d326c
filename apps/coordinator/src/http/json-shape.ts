import { ErrorCode, TesseraError } from '@tessera/protocol';

/** How deep a JSON body may nest (objects and arrays); the API's deepest schema needs 3. */
export const MAX_JSON_DEPTH = 32;
/** Keys of one JSON object, and of the whole body. */
export const MAX_JSON_KEYS_PER_OBJECT = 1000;
export const MAX_JSON_KEYS = 10_000;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/**
 * Checks the nesting depth and key counts of a JSON text in one linear pass over its bytes,
 * before JSON.parse and before anything recursive (validation, the database driver) sees it:
 * a body nested 2,000 deep is refused here instead of overflowing a stack later. Invalid JSON
 * passes (JSON.parse refuses it next, with its own message).
 */
export function checkJsonShape(bytes: Uint8Array): void {
  // Per open container: its key count, or -1 for an array.
  const keys: number[] = [];
  let totalKeys = 0;
  let inString = false;
  for (let at = 0; at < bytes.length; at++) {
    const byte = bytes[at];
    if (inString) {
      if (byte === BACKSLASH) at++;
      else if (byte === QUOTE) inString = false;
      continue;
    }
    switch (byte) {
      case QUOTE:
        inString = true;
        break;
      case OPEN_BRACE:
      case OPEN_BRACKET:
        keys.push(byte === OPEN_BRACE ? 0 : -1);
        if (keys.length > MAX_JSON_DEPTH) {
          throw new TesseraError(
            ErrorCode.INVALID_ARGUMENT,
            `request body nests deeper than ${MAX_JSON_DEPTH} levels`,
            { field: '(body)', maxDepth: MAX_JSON_DEPTH },
          );
        }
        break;
      case CLOSE_BRACE:
      case CLOSE_BRACKET:
        keys.pop();
        break;
      case COLON: {
        const top = keys.length - 1;
        const count = keys[top];
        if (count === undefined || count < 0) break;
        keys[top] = count + 1;
        totalKeys++;
        if (count + 1 > MAX_JSON_KEYS_PER_OBJECT || totalKeys > MAX_JSON_KEYS) {
          throw new TesseraError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            `request body has too many keys (at most ${MAX_JSON_KEYS_PER_OBJECT} in one object, ${MAX_JSON_KEYS} in all)`,
            { field: '(body)', maxKeysPerObject: MAX_JSON_KEYS_PER_OBJECT, maxKeys: MAX_JSON_KEYS },
          );
        }
        break;
      }
    }
  }
}
