import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { Examples } from './examples.js';
import type { InputSchema } from './schema.js';

export interface CsvOptions {
  /**
   * The model's input: every row must have its feature count, every label must be one of its
   * classes and every feature (after `featureScale`) must lie in its range. Default: the
   * feature count of the first data row, labels 0..9, any finite value.
   */
  schema?: InputSchema;
  /**
   * Every feature is divided by this number. Default 1: values are used as written.
   * Pass 255 for images exported as 0..255 pixel bytes (the built-in models expect [0, 1]).
   */
  featureScale?: number;
  /**
   * Appended to the message of a value outside the schema's range, to say how this client
   * scales its input (the Node client: `--scale 255`, the web client: its checkbox).
   */
  scaleHint?: string;
}

const DEFAULT_NUM_CLASSES = 10;

/** Shortest text that shows a scaled value honestly (0.0039 rather than 0.00392156862745098). */
const formatValue = (value: number) => String(Number(value.toPrecision(4)));

/**
 * Parses labelled examples from CSV text. Pure (no I/O): browsers use it on a picked file.
 *
 * Format (one example per line):
 * - Comma-separated, UTF-8, LF or CRLF line ends; no quoting (every field is a number).
 * - First column: the class label, an integer in 0..numClasses-1 (default 0..9).
 * - Then the features, as plain decimal numbers (`0`, `0.5`, `-1e-3`). For the built-in
 *   MNIST models: 784 pixels of a 28x28 image, row by row, in [0, 1]. Features are used as
 *   written unless `featureScale` is set: pass `featureScale: 255` for 0..255 pixels.
 * - Optional header: when the first non-empty line does not start with a number (e.g.
 *   `label,pixel0,pixel1,...`), it is skipped.
 * - Empty lines are ignored. Every data line must have the same number of columns.
 *
 * Errors (INVALID_ARGUMENT) name the source and the 1-based line (and column, for a value);
 * `data` carries `line` (and `column`) for programs.
 */
export function parseCsvExamples(
  text: string,
  options: CsvOptions & { source?: string } = {},
): Examples {
  const source = options.source ?? 'CSV';
  const { schema } = options;
  const numClasses = schema?.numClasses ?? DEFAULT_NUM_CLASSES;
  const featureScale = options.featureScale ?? 1;
  if (!Number.isInteger(numClasses) || numClasses < 1) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `${source}: numClasses must be a positive integer, got ${String(numClasses)}`,
    );
  }
  if (!(featureScale > 0) || !Number.isFinite(featureScale)) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `${source}: featureScale must be a positive number, got ${String(featureScale)}`,
    );
  }
  let featureSize: number | undefined = schema?.featureSize;
  if (featureSize !== undefined && (!Number.isInteger(featureSize) || featureSize < 1)) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `${source}: featureSize must be a positive integer, got ${String(featureSize)}`,
    );
  }
  const range = schema?.featureRange;
  const rangeText = range && `[${range.min}, ${range.max}]`;

  const lines = text.split('\n');
  const rowError = (lineIndex: number, problem: string): TesseraError =>
    new TesseraError(ErrorCode.INVALID_ARGUMENT, `${source}:${lineIndex + 1}: ${problem}`, {
      line: lineIndex + 1,
    });

  // Features are written into a growing buffer rather than per-row arrays: a 60,000-row
  // file would otherwise hold 47 million boxed numbers at once.
  let features = new Float32Array(0);
  const labels: number[] = [];
  let sawFirstContentLine = false;
  for (let lineIndex = 0; lineIndex < lines.length; lineIndex++) {
    const line = (lines[lineIndex] ?? '').replace(/\r$/, '');
    if (line.trim() === '') continue;
    const fields = line.split(',');
    if (!sawFirstContentLine) {
      sawFirstContentLine = true;
      const firstField = (fields[0] ?? '').trim();
      if (firstField === '' || !Number.isFinite(Number(firstField))) continue; // header row
    }
    const columns = fields.length;
    if (labels.length === 0 && schema !== undefined && columns !== schema.featureSize + 1) {
      // The first data row decides: the whole file has another shape than the model's input.
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `${source}: rows have ${columns - 1} features; the models read ${schema.featureSize} (${schema.featureDescription})`,
        { line: lineIndex + 1, found: columns - 1, expected: schema.featureSize },
      );
    }
    if (featureSize === undefined) {
      if (columns < 2) {
        throw rowError(
          lineIndex,
          `expected a label and at least one feature, got ${columns} column`,
        );
      }
      featureSize = columns - 1;
    }
    if (columns !== featureSize + 1) {
      throw rowError(
        lineIndex,
        `expected ${featureSize + 1} columns (label + ${featureSize} features), got ${columns}`,
      );
    }
    const labelText = (fields[0] ?? '').trim();
    const label = Number(labelText);
    if (labelText === '' || !Number.isInteger(label) || label < 0 || label >= numClasses) {
      throw rowError(lineIndex, `label '${labelText}' is not an integer in 0..${numClasses - 1}`);
    }
    const row = labels.length;
    if ((row + 1) * featureSize > features.length) {
      const grown = new Float32Array(Math.max(featureSize * 1024, features.length * 2));
      grown.set(features);
      features = grown;
    }
    const offset = row * featureSize;
    for (let column = 1; column < columns; column++) {
      const valueText = (fields[column] ?? '').trim();
      const value = Number(valueText);
      if (valueText === '' || !Number.isFinite(value)) {
        throw rowError(lineIndex, `column ${column + 1}: '${valueText}' is not a finite number`);
      }
      const scaled = value / featureScale;
      if (range && !(scaled >= range.min && scaled <= range.max)) {
        const shown =
          featureScale === 1
            ? `${valueText} is outside`
            : `${valueText} (${formatValue(scaled)} after dividing by ${featureScale}) is outside`;
        throw new TesseraError(
          ErrorCode.INVALID_ARGUMENT,
          `${source}:${lineIndex + 1}: column ${column + 1}: ${shown} the models' range ${rangeText}` +
            (options.scaleHint ? `; ${options.scaleHint}` : ''),
          { line: lineIndex + 1, column: column + 1 },
        );
      }
      features[offset + column - 1] = scaled;
    }
    labels.push(label);
  }
  if (labels.length === 0 || featureSize === undefined) {
    throw new TesseraError(ErrorCode.INVALID_ARGUMENT, `${source}: no data rows`);
  }
  return {
    x: features.slice(0, labels.length * featureSize),
    y: Uint8Array.from(labels),
    count: labels.length,
    featureSize,
  };
}
