import { readFileSync } from 'node:fs';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { DelimitedOptions } from './delimited.js';
import { readTabular, type TabularData } from './tabular.js';
import type { TabularSchema, TaskOutput } from './task-schema.js';
import {
  type JsonLinesOptions,
  parseJsonLines,
  readTextTable,
  type TextData,
  type TextTableOptions,
} from './text.js';

// The Node side of the task loaders: reading the file is all it adds (the parsing is pure and
// shared with the web client, which reads a picked File instead).

/** A text file's contents (UTF-8); NOT_FOUND when it is missing, UNAVAILABLE when unreadable. */
export function readTextFile(filePath: string): string {
  try {
    return readFileSync(filePath, 'utf8');
  } catch (cause) {
    const notFound = (cause as { code?: unknown }).code === 'ENOENT';
    throw new TesseraError(
      notFound ? ErrorCode.NOT_FOUND : ErrorCode.UNAVAILABLE,
      `${filePath} cannot be read: ${cause instanceof Error ? cause.message : String(cause)}`,
      { file: filePath },
      { cause },
    );
  }
}

/** Reads a CSV/TSV file by column name (see readTabular); errors name this path. */
export function loadTabularFile(
  filePath: string,
  input: TabularSchema,
  output: TaskOutput,
  options: Omit<DelimitedOptions, 'source'> = {},
): TabularData {
  return readTabular(readTextFile(filePath), input, output, { ...options, source: filePath });
}

/**
 * Reads labelled texts from a file: JSON Lines when it ends in .jsonl or .ndjson (see
 * parseJsonLines), otherwise CSV/TSV with a text and a label column (see readTextTable).
 */
export function loadTextFile(
  filePath: string,
  output: TaskOutput,
  options: Omit<JsonLinesOptions & TextTableOptions, 'source'> = {},
): TextData {
  const text = readTextFile(filePath);
  if (/\.(jsonl|ndjson)$/i.test(filePath)) {
    return parseJsonLines(text, output, { ...options, source: filePath });
  }
  return readTextTable(text, output, { ...options, source: filePath });
}
