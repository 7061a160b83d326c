import { readFileSync } from 'node:fs';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { type CsvOptions, parseCsvExamples } from './csv.js';
import type { Examples } from './examples.js';

// Kept apart from csv.ts so that the parser can be bundled for browsers without node:fs.

/**
 * Reads a CSV file of labelled examples (synchronously: it is read once, at start-up).
 *
 * The format is `parseCsvExamples`'s.
 *
 * Errors (INVALID_ARGUMENT) name the file and the 1-based line; a missing file is NOT_FOUND.
 */
export function loadCsvExamples(filePath: string, options: CsvOptions = {}): Examples {
  let text: string;
  try {
    text = readFileSync(filePath, 'utf8');
  } catch (cause) {
    const notFound = (cause as { code?: unknown }).code === 'ENOENT';
    throw new TesseraError(
      notFound ? ErrorCode.NOT_FOUND : ErrorCode.UNAVAILABLE,
      `CSV file ${filePath} cannot be read: ${cause instanceof Error ? cause.message : String(cause)}`,
      undefined,
      { cause },
    );
  }
  return parseCsvExamples(text, { ...options, source: filePath });
}
