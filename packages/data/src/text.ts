import { ErrorCode, TesseraError } from '@tessera/protocol';
import { type DelimitedOptions, parseDelimited } from './delimited.js';
import { dataError, RowProblems } from './row-problems.js';
import type { TaskExamples, TaskOutput, TextSchema } from './task-schema.js';
import { createTokenizer } from './tokenizer.js';
import { labelReader } from './values.js';

/** A client's labelled texts, checked against the task's output. */
export interface TextData {
  source: string;
  count: number;
  /** The 1-based line each example starts on, for messages. */
  lines: Uint32Array;
  texts: string[];
  /** Class index (multiclass, binary) or target value (regression) of each text. */
  labels: Float64Array;
}

export interface JsonLinesOptions {
  /** Names the source in errors. Default 'JSONL'. */
  source?: string;
  /** The field holding the text. Default 'text'. */
  textField?: string;
  /** The field holding the label: a class name, or a number for regression. Default 'label'. */
  labelField?: string;
}

/**
 * Reads JSON Lines: one JSON object per line, e.g. `{"text": "...", "label": "spam"}` (other
 * fields ignored; blank lines skipped; a UTF-8 BOM dropped). The text must be a string, the
 * label a declared class name (a string) or, for regression, a finite number. Pure.
 *
 * Refusals are INVALID_ARGUMENT with DataProblem data `{file, line, column: field name,
 * problem, moreBadRows, rows}`: the first bad line, and how many more there are.
 */
export function parseJsonLines(
  text: string,
  output: TaskOutput,
  options: JsonLinesOptions = {},
): TextData {
  const file = options.source ?? 'JSONL';
  const textField = options.textField ?? 'text';
  const labelField = options.labelField ?? 'label';
  const readLabel = labelReader(output);
  const problems = new RowProblems(file);
  const texts: string[] = [];
  const labels: number[] = [];
  const lines: number[] = [];
  const content = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  content.split('\n').forEach((rawLine, index) => {
    const line = index + 1;
    const source = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine;
    if (source.trim() === '') return;
    lines.push(line);
    let value: unknown;
    try {
      value = JSON.parse(source);
    } catch (cause) {
      problems.add(line, undefined, `not JSON (${cause instanceof Error ? cause.message : cause})`);
      return;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      problems.add(line, undefined, 'not a JSON object');
      return;
    }
    const record = value as Record<string, unknown>;
    const exampleText = Object.hasOwn(record, textField) ? record[textField] : undefined;
    if (typeof exampleText !== 'string') {
      problems.add(line, textField, exampleText === undefined ? 'missing' : 'not a string');
      return;
    }
    const rawLabel = Object.hasOwn(record, labelField) ? record[labelField] : undefined;
    const labelText =
      output.kind === 'regression' && typeof rawLabel === 'number'
        ? String(rawLabel)
        : output.kind !== 'regression' && typeof rawLabel === 'string'
          ? rawLabel
          : undefined;
    if (labelText === undefined) {
      const wanted = output.kind === 'regression' ? 'a number' : 'a class name (a string)';
      problems.add(
        line,
        labelField,
        rawLabel === undefined ? 'missing' : `${JSON.stringify(rawLabel)} is not ${wanted}`,
      );
      return;
    }
    const label = readLabel(labelText);
    if (!label.ok) {
      problems.add(line, labelField, label.problem);
      return;
    }
    texts.push(exampleText);
    labels.push(label.value);
  });
  problems.throwIfAny(lines.length);
  if (texts.length === 0) {
    throw dataError({ file, line: 1, problem: 'no examples', moreBadRows: 0, rows: 0 });
  }
  return {
    source: file,
    count: texts.length,
    lines: Uint32Array.from(lines),
    texts,
    labels: Float64Array.from(labels),
  };
}

export interface TextTableOptions extends DelimitedOptions {
  /** The column holding the text. Default 'text'. */
  textColumn?: string;
  /** The column holding the label. Default 'label'. */
  labelColumn?: string;
}

/**
 * Reads texts from a column of CSV/TSV with a header (see parseDelimited; quoted fields may
 * span lines), the label from another. An empty text is kept (it is an example of nothing
 * said); an empty or unknown label is refused, as in readTabular.
 */
export function readTextTable(
  text: string,
  output: TaskOutput,
  options: TextTableOptions = {},
): TextData {
  const file = options.source ?? 'CSV';
  const textColumn = options.textColumn ?? 'text';
  const labelColumn = options.labelColumn ?? 'label';
  const table = parseDelimited(text, options);
  const count = table.rows.length;
  const textIndex = table.header.indexOf(textColumn);
  const labelIndex = table.header.indexOf(labelColumn);
  for (const [name, index] of [
    [textColumn, textIndex],
    [labelColumn, labelIndex],
  ] as const) {
    if (index < 0) {
      throw dataError({
        file,
        line: 1,
        column: name,
        problem: `column '${name}' missing (the header has: ${table.header.join(', ')})`,
        moreBadRows: 0,
        rows: count,
        header: true,
      });
    }
  }
  const readLabel = labelReader(output);
  const problems = new RowProblems(file);
  const texts = new Array<string>(count);
  const labels = new Float64Array(count);
  const lines = new Uint32Array(count);
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
    texts[row] = fields[textIndex] ?? '';
    const label = readLabel(fields[labelIndex] ?? '');
    if (label.ok) labels[row] = label.value;
    else problems.add(line, labelColumn, label.problem);
  });
  problems.throwIfAny(count);
  if (count === 0) {
    throw dataError({ file, line: 1, problem: 'no data rows', moreBadRows: 0, rows: 0 });
  }
  return { source: file, count, lines, texts, labels };
}

/** The examples of `data` at `rows` (indices into it), e.g. the training part of a split. */
export function selectTexts(data: TextData, rows: ArrayLike<number>): TextData {
  const picked = Array.from(rows, (row) => {
    if (!Number.isInteger(row) || row < 0 || row >= data.count) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `selectTexts: ${String(row)} is not an example index in 0..${data.count - 1}`,
      );
    }
    return row;
  });
  return {
    source: data.source,
    count: picked.length,
    lines: Uint32Array.from(picked, (row) => data.lines[row] as number),
    texts: picked.map((row) => data.texts[row] as string),
    labels: Float64Array.from(picked, (row) => data.labels[row] as number),
  };
}

/** The model's examples: token ids (as floats, for a tfjs tensor) of maxLength per text. */
export function textExamples(data: TextData, schema: TextSchema): TaskExamples {
  const tokenizer = createTokenizer(schema.tokenizer, schema.maxLength);
  const x = new Float32Array(data.count * schema.maxLength);
  data.texts.forEach((text, row) => {
    tokenizer.encodeInto(text, x, row * schema.maxLength);
  });
  return { x, y: Float32Array.from(data.labels), count: data.count, featureSize: schema.maxLength };
}
