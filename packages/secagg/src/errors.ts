import { type ErrorCode, TesseraError } from '@tessera/protocol';

/** A refusal with its code and, where a field is at fault, `data.field` naming it. */
export function refuse(code: ErrorCode, message: string, data?: Record<string, unknown>): never {
  throw new TesseraError(code, message, data);
}
