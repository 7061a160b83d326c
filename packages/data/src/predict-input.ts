// Inputs as a person or a program sends them to `predict` (JSON rows, strings, pixel arrays),
// encoded exactly as the clients encode their files for training: the same one-hot, the same
// standardisation, the same tokenizer. Pure and browser-safe. Every refusal is
// INVALID_ARGUMENT naming the field at fault in the request (`features.age`, `rows.2.ward`,
// `texts.1`, `pixels.17`), so that nothing reaches a model that it was not trained on.
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { tabularExamples } from './tabular.js';
import type { ImageSchema, TabularSchema, TextSchema } from './task-schema.js';
import { createTokenizer, tokens } from './tokenizer.js';

/** Features for a model without labels: `count` examples of `featureSize` values, row-major. */
export interface UnlabelledExamples {
  x: Float32Array;
  count: number;
  featureSize: number;
}

function refuse(field: string, message: string, data: Record<string, unknown> = {}) {
  return new TesseraError(ErrorCode.INVALID_ARGUMENT, `${field}: ${message}`, { field, ...data });
}

/**
 * JSON rows (column name -> value) as the model's features. Every feature column of the schema
 * must be there, and nothing else: not the label (predict is what answers it), not an unknown
 * name (most often a typo, which would otherwise silently predict on a default). A numeric
 * column takes a finite JSON number, a categorical one a string among its categories.
 * `fieldOf(row)` names the row in the request (`features`, or `rows.3`).
 */
export function jsonRowsExamples(
  rows: readonly unknown[],
  schema: TabularSchema,
  fieldOf: (row: number) => string,
): UnlabelledExamples {
  const count = rows.length;
  const columns = new Map(schema.columns.map((column) => [column.name, column]));
  const numeric = new Map<string, Float64Array>();
  const categorical = new Map<string, string[]>();
  for (const column of schema.columns) {
    if (column.type === 'numeric') numeric.set(column.name, new Float64Array(count));
    else categorical.set(column.name, new Array<string>(count));
  }
  rows.forEach((row, index) => {
    const field = fieldOf(index);
    if (typeof row !== 'object' || row === null || Array.isArray(row)) {
      throw refuse(field, 'must be an object of column name -> value');
    }
    const values = row as Record<string, unknown>;
    for (const name of Object.keys(values)) {
      if (columns.has(name)) continue;
      throw refuse(
        `${field}.${name}`,
        name === schema.label
          ? `'${name}' is the label column: predict answers it, send the features only`
          : `unknown column '${name}' (the task's columns: ${[...columns.keys()].join(', ')})`,
      );
    }
    for (const column of schema.columns) {
      const at = `${field}.${column.name}`;
      if (!Object.hasOwn(values, column.name)) throw refuse(at, 'missing');
      const value = values[column.name];
      if (column.type === 'numeric') {
        if (typeof value !== 'number' || !Number.isFinite(value)) {
          throw refuse(at, `must be a number, got ${JSON.stringify(value) ?? String(value)}`);
        }
        (numeric.get(column.name) as Float64Array)[index] = value;
        continue;
      }
      if (typeof value !== 'string' || value.trim() === '') {
        throw refuse(
          at,
          `must be a category name (a non-empty string), got ${JSON.stringify(value)}`,
        );
      }
      const category = value.trim();
      if (column.categories !== undefined && !column.categories.includes(category)) {
        throw refuse(
          at,
          `'${category}' is not one of the categories ${column.categories.map((c) => `'${c}'`).join(', ')}`,
        );
      }
      (categorical.get(column.name) as string[])[index] = category;
    }
  });
  const { x, featureSize } = tabularExamples(
    {
      source: 'predict',
      count,
      lines: new Uint32Array(count),
      numeric,
      categorical,
      labels: new Float64Array(count),
    },
    schema,
  );
  return { x, count, featureSize };
}

/** Texts as token ids, and how many tokens each has (more than maxLength: the rest is cut). */
export function textPredictExamples(
  texts: readonly string[],
  schema: TextSchema,
): UnlabelledExamples & { tokenCounts: number[] } {
  const tokenizer = createTokenizer(schema.tokenizer, schema.maxLength);
  const x = new Float32Array(texts.length * schema.maxLength);
  const tokenCounts = texts.map((text, row) => {
    tokenizer.encodeInto(text, x, row * schema.maxLength);
    return tokens(text, schema.tokenizer).length;
  });
  return { x, count: texts.length, featureSize: schema.maxLength, tokenCounts };
}

/**
 * One image as raw pixel values, row by row, channels last (height x width x channels of
 * them), each within the task's valueRange, scaled to [0, 1] as the clients' data is.
 */
export function pixelsExamples(
  pixels: readonly number[],
  schema: ImageSchema,
  field = 'pixels',
): UnlabelledExamples {
  const featureSize = schema.height * schema.width * schema.channels;
  if (pixels.length !== featureSize) {
    throw refuse(
      field,
      `must hold ${featureSize} values (${schema.height} x ${schema.width} x ${schema.channels}), got ${pixels.length}`,
      { expected: featureSize, got: pixels.length },
    );
  }
  const { min, max } = schema.valueRange;
  const x = new Float32Array(featureSize);
  pixels.forEach((value, k) => {
    if (typeof value !== 'number' || !(value >= min && value <= max)) {
      throw refuse(`${field}.${k}`, `must be a number in [${min}, ${max}] (the task's valueRange)`);
    }
    x[k] = (value - min) / (max - min);
  });
  return { x, count: 1, featureSize };
}
