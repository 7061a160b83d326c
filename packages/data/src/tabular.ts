import { ErrorCode, TesseraError } from '@tessera/protocol';
import { type DelimitedOptions, parseDelimited } from './delimited.js';
import { dataError, RowProblems } from './row-problems.js';
import type { TabularColumn, TabularSchema, TaskExamples, TaskOutput } from './task-schema.js';
import { labelReader, readNumber } from './values.js';

/**
 * A client's tabular rows, checked against the task and kept as read (not yet standardised or
 * one-hot encoded: the constants may still have to come from a federated statistics round).
 * Column-wise: a numeric column is one Float64Array, not a million boxed numbers.
 */
export interface TabularData {
  source: string;
  count: number;
  /** The 1-based line each row starts on, for messages. */
  lines: Uint32Array;
  numeric: Map<string, Float64Array>;
  /** Categorical values, trimmed. */
  categorical: Map<string, string[]>;
  /** Class index (multiclass, binary) or target value (regression) of each row. */
  labels: Float64Array;
}

function schemaError(field: string, message: string): TesseraError {
  return new TesseraError(ErrorCode.INVALID_ARGUMENT, `tabular schema: ${field}: ${message}`, {
    field,
  });
}

/**
 * The checks a reader needs to trust a schema (@tessera/tasks validates tasks in full): names
 * unique, the label not also a feature, categories unique and non-empty, given std > 0.
 */
export function checkTabularSchema(schema: TabularSchema): void {
  const names = new Set<string>();
  schema.columns.forEach((column, i) => {
    const field = `input.columns[${i}]`;
    if (column.name.trim() === '') throw schemaError(`${field}.name`, 'empty column name');
    if (names.has(column.name)) {
      throw schemaError(`${field}.name`, `column '${column.name}' is listed twice`);
    }
    if (column.name === schema.label) {
      throw schemaError(`${field}.name`, `'${column.name}' is the label column, not a feature`);
    }
    names.add(column.name);
    if (column.type === 'categorical' && column.categories !== undefined) {
      const seen = new Set<string>();
      for (const category of column.categories) {
        if (category.trim() === '' || seen.has(category)) {
          throw schemaError(`${field}.categories`, `'${category}' is empty or listed twice`);
        }
        seen.add(category);
      }
      if (seen.size === 0) throw schemaError(`${field}.categories`, 'no categories');
    }
    if (column.type === 'numeric' && typeof column.standardize === 'object') {
      const { mean, std } = column.standardize;
      if (!Number.isFinite(mean) || !(std > 0) || !Number.isFinite(std)) {
        throw schemaError(`${field}.standardize`, `needs a finite mean and a std > 0`);
      }
    }
  });
}

/**
 * Reads CSV/TSV text with a header by column name: the schema's columns and its label column
 * must be in the header (in any order; other columns are ignored), every value must fit its
 * column (a decimal number; a listed category; a declared class name, or a number for a
 * regression label) and none may be empty. Pure: browsers use it on a picked file.
 *
 * Refusals are INVALID_ARGUMENT with DataProblem data `{file, line, column, problem,
 * moreBadRows, rows}`: the first bad row of the file, and how many more there are.
 */
export function readTabular(
  text: string,
  input: TabularSchema,
  output: TaskOutput,
  options: DelimitedOptions = {},
): TabularData {
  checkTabularSchema(input);
  const file = options.source ?? 'CSV';
  const table = parseDelimited(text, options);
  const count = table.rows.length;
  const position = new Map<string, number>();
  table.header.forEach((name, i) => {
    if (!position.has(name)) position.set(name, i);
  });
  const wanted = [...input.columns.map((column) => column.name), input.label];
  for (const name of wanted) {
    if (table.header.filter((headerName) => headerName === name).length > 1) {
      throw dataError({
        file,
        line: 1,
        column: name,
        problem: `column '${name}' appears twice in the header`,
        moreBadRows: 0,
        rows: count,
        header: true,
      });
    }
  }
  const missing = wanted.filter((name) => !position.has(name));
  if (missing.length > 0) {
    const names = missing.map((name) => `'${name}'`).join(', ');
    throw dataError({
      file,
      line: 1,
      column: missing[0] as string,
      problem: `column${missing.length > 1 ? 's' : ''} ${names} missing (the header has ${table.header.length} columns: ${table.header.join(', ')})`,
      moreBadRows: 0,
      rows: count,
      header: true,
    });
  }

  const numeric = new Map<string, Float64Array>();
  const categorical = new Map<string, string[]>();
  const readers = input.columns.map((column) => columnReader(column, numeric, categorical, count));
  const readLabel = labelReader(output);
  const labelIndex = position.get(input.label) as number;
  const labels = new Float64Array(count);
  const lines = new Uint32Array(count);
  const problems = new RowProblems(file);

  table.rows.forEach(({ line, fields }, row) => {
    lines[row] = line;
    if (fields.length !== table.header.length) {
      problems.add(
        line,
        undefined,
        `${fields.length} fields where the header has ${table.header.length}`,
      );
      return;
    }
    input.columns.forEach((column, i) => {
      const problem = readers[i]?.(fields[position.get(column.name) as number] ?? '', row);
      if (problem !== undefined) problems.add(line, column.name, problem);
    });
    const label = readLabel(fields[labelIndex] ?? '');
    if (label.ok) labels[row] = label.value;
    else problems.add(line, input.label, label.problem);
  });
  problems.throwIfAny(count);
  if (count === 0) {
    throw dataError({ file, line: 1, problem: 'no data rows', moreBadRows: 0, rows: 0 });
  }
  return { source: file, count, lines, numeric, categorical, labels };
}

/** Stores one column's value of a row; returns the problem in a few words, if any. */
type ColumnReader = (text: string, row: number) => string | undefined;

function columnReader(
  column: TabularColumn,
  numeric: Map<string, Float64Array>,
  categorical: Map<string, string[]>,
  count: number,
): ColumnReader {
  if (column.type === 'numeric') {
    const values = new Float64Array(count);
    numeric.set(column.name, values);
    return (text, row) => {
      const result = readNumber(text);
      if (!result.ok) return result.problem;
      values[row] = result.value;
      return undefined;
    };
  }
  const values = new Array<string>(count);
  categorical.set(column.name, values);
  const known = column.categories === undefined ? undefined : new Set(column.categories);
  return (text, row) => {
    const value = text.trim();
    if (value === '') return 'empty value';
    // Without a list the categories come from federated statistics: every value is one.
    if (known !== undefined && !known.has(value)) {
      return `'${value}' is not one of the categories ${[...known].map((c) => `'${c}'`).join(', ')}`;
    }
    values[row] = value;
    return undefined;
  };
}

/** The rows of `data` at `rows` (indices into it), e.g. the training part of a hold-out split. */
export function selectRows(data: TabularData, rows: ArrayLike<number>): TabularData {
  const at = (row: number): number => {
    if (!Number.isInteger(row) || row < 0 || row >= data.count) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `selectRows: ${String(row)} is not a row index in 0..${data.count - 1}`,
      );
    }
    return row;
  };
  const picked = Array.from(rows, at);
  return {
    source: data.source,
    count: picked.length,
    lines: Uint32Array.from(picked, (row) => data.lines[row] as number),
    numeric: new Map(
      [...data.numeric].map(([name, values]) => [
        name,
        Float64Array.from(picked, (row) => values[row] as number),
      ]),
    ),
    categorical: new Map(
      [...data.categorical].map(([name, values]) => [
        name,
        picked.map((row) => values[row] as string),
      ]),
    ),
    labels: Float64Array.from(picked, (row) => data.labels[row] as number),
  };
}

/** Whether every constant the schema's features need is in it (none left to statistics). */
export function isResolved(schema: TabularSchema): boolean {
  return schema.columns.every((column) =>
    column.type === 'numeric'
      ? column.standardize !== 'federated'
      : column.categories !== undefined,
  );
}

/** The feature count of a row: 1 per numeric column, one per category of a categorical one. */
export function tabularFeatureSize(schema: TabularSchema): number {
  let size = 0;
  for (const column of schema.columns) {
    if (column.type === 'numeric') size += 1;
    else if (column.categories === undefined) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `column '${column.name}' has no categories yet: run the federated statistics round and apply its constants (withPreprocessing) first`,
        { field: column.name },
      );
    } else size += column.categories.length;
  }
  return size;
}

/**
 * The model's examples: per row the columns in schema order, numeric as one value
 * (standardised `(x - mean) / std` when the schema gives constants), categorical one-hot over
 * its categories. A value outside the categories (possible only when they came from
 * statistics with a minimum count, which left out rare ones) encodes as all zeros, the
 * usual "unknown category" of one-hot encoders.
 */
export function tabularExamples(data: TabularData, schema: TabularSchema): TaskExamples {
  checkTabularSchema(schema);
  const featureSize = tabularFeatureSize(schema);
  for (const column of schema.columns) {
    if (column.type === 'numeric' && column.standardize === 'federated') {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `column '${column.name}' is standardised with federated statistics: apply their constants (withPreprocessing) first`,
        { field: column.name },
      );
    }
  }
  const x = new Float32Array(data.count * featureSize);
  let offset = 0;
  for (const column of schema.columns) {
    if (column.type === 'numeric') {
      const values = columnOf(data.numeric, column.name, data.source);
      const { mean, std } =
        typeof column.standardize === 'object' ? column.standardize : { mean: 0, std: 1 };
      for (let row = 0; row < data.count; row++) {
        x[row * featureSize + offset] = ((values[row] as number) - mean) / std;
      }
      offset += 1;
    } else {
      const values = columnOf(data.categorical, column.name, data.source);
      const categories = column.categories as string[];
      const index = new Map(categories.map((category, i) => [category, i]));
      for (let row = 0; row < data.count; row++) {
        const hot = index.get(values[row] as string);
        if (hot !== undefined) x[row * featureSize + offset + hot] = 1;
      }
      offset += categories.length;
    }
  }
  return { x, y: Float32Array.from(data.labels), count: data.count, featureSize };
}

function columnOf<T>(columns: Map<string, T>, name: string, source: string): T {
  const values = columns.get(name);
  if (values === undefined) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `${source}: column '${name}' was not read with this schema (read the data with the task's schema)`,
      { field: name },
    );
  }
  return values;
}
