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
const MINUS = 0x2d;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;

function isNumberByte(byte: number): boolean {
  // digits, '-', '+', '.', 'e', 'E'
  return (
    (byte >= DIGIT_0 && byte <= DIGIT_9) ||
    byte === MINUS ||
    byte === 0x2b ||
    byte === 0x2e ||
    byte === 0x65 ||
    byte === 0x45
  );
}

/**
 * A JSON number literal that float64 cannot hold: JSON.parse would turn `1e400` into Infinity
 * and `0.5e-400` silently into 0 (a seed of `-0.5e-400` would be stored as 0). Both are
 * refused; only the digits before the exponent are looked at for "was it zero".
 */
function checkNumberLiteral(text: string): void {
  const value = Number(text);
  const mantissa = text.split(/[eE]/, 1)[0] ?? '';
  const underflows = value === 0 && /[1-9]/.test(mantissa);
  if (Number.isFinite(value) && !underflows) return;
  throw new TesseraError(
    ErrorCode.INVALID_ARGUMENT,
    `request body has a number outside the float64 range: ${text.slice(0, 40)}`,
    { field: '(body)' },
  );
}

/**
 * Checks the nesting depth and key counts of a JSON text in one linear pass over its bytes,
 * before JSON.parse and before anything recursive (validation, the database driver) sees it:
 * a body nested 2,000 deep is refused here instead of overflowing a stack later. Number literals
 * past float64 (overflow to Infinity, underflow to 0) are refused too. Invalid JSON passes
 * (JSON.parse refuses it next, with its own message).
 */
export function checkJsonShape(bytes: Uint8Array): void {
  // Per open container: its key count, or -1 for an array.
  const keys: number[] = [];
  let totalKeys = 0;
  let inString = false;
  for (let at = 0; at < bytes.length; at++) {
    const byte = bytes[at] as number;
    if (inString) {
      if (byte === BACKSLASH) at++;
      else if (byte === QUOTE) inString = false;
      continue;
    }
    if (byte === MINUS || (byte >= DIGIT_0 && byte <= DIGIT_9)) {
      const start = at;
      while (at + 1 < bytes.length && isNumberByte(bytes[at + 1] as number)) at++;
      checkNumberLiteral(
        Buffer.from(bytes.buffer, bytes.byteOffset + start, at + 1 - start).toString('latin1'),
      );
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
