/**
 * What this package's tests share (not part of its API, not built: tsconfig.build.json leaves
 * src/testing out).
 */
import { TesseraError } from '@tessera/protocol';
import { expect } from 'vitest';

/** Runs `fn`, which must throw a TesseraError with `code` and `data.field`; returns it. */
export function expectCode(fn: () => unknown, code: string, field: string): TesseraError {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(TesseraError);
  expect((thrown as TesseraError).code).toBe(code);
  expect((thrown as TesseraError).data?.['field']).toBe(field);
  return thrown as TesseraError;
}
