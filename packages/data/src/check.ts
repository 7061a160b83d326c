import { TesseraError } from '@tessera/protocol';
import { type DataProblem, moreBadRowsText } from './row-problems.js';
import type { TaskOutput } from './task-schema.js';

/** What a client prints before it joins: its data fits the task, or what does not. */
export type DataCheck<T> =
  | { ok: true; data: T; summary: string }
  | { ok: false; error: TesseraError; summary: string };

/** The part of TabularData and TextData that a summary reads. */
interface Labelled {
  source: string;
  count: number;
  labels: Float64Array;
}

/**
 * Reads a client's data with `read` (readTabular, parseJsonLines, readTextTable or a file
 * loader) and says in one line whether it fits the task, never throwing for a data problem:
 *
 *   "p.csv: 450 training, 50 held-out; 3 classes seen of 3 (Adelie 146, Chinstrap 68, Gentoo 119)"
 *   "p.csv: 412 rows; column 'age' missing (the header has 5 columns: ...)"
 *
 * Only counts and the first problem are in it: the summary is printed locally and says nothing
 * a row would. `holdout` is the number of rows the caller keeps for local evaluation.
 */
export function checkData<T extends Labelled>(
  read: () => T,
  output: TaskOutput,
  options: { holdout?: number } = {},
): DataCheck<T> {
  let data: T;
  try {
    data = read();
  } catch (cause) {
    const error = TesseraError.from(cause);
    return { ok: false, error, summary: failureSummary(error) };
  }
  const holdout = Math.max(0, Math.min(options.holdout ?? 0, data.count));
  const rows =
    holdout === 0 ? `${data.count} rows` : `${data.count - holdout} training, ${holdout} held-out`;
  return {
    ok: true,
    data,
    summary: `${data.source}: ${rows}; ${labelSummary(data.labels, output)}`,
  };
}

function failureSummary(error: TesseraError): string {
  const problem = error.data as Partial<DataProblem> | undefined;
  if (problem?.file === undefined || problem.problem === undefined) return error.message;
  const where = problem.header
    ? ''
    : `line ${problem.line}: ${problem.column === undefined ? '' : `column '${problem.column}': `}`;
  const more = moreBadRowsText(problem.moreBadRows ?? 0);
  const rows = problem.rows === undefined ? '' : `${problem.rows} rows; `;
  return `${problem.file}: ${rows}${where}${problem.problem}${more}`;
}

/** "3 classes seen of 3 (a 10, b 5, c 1)", "1 class seen of 2 (no 'spam')", or a value range. */
export function labelSummary(labels: Float64Array, output: TaskOutput): string {
  if (output.kind === 'regression') {
    if (labels.length === 0) return 'no labels';
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    let sum = 0;
    for (const label of labels) {
      min = Math.min(min, label);
      max = Math.max(max, label);
      sum += label;
    }
    const show = (value: number) => String(Number(value.toPrecision(4)));
    return `labels from ${show(min)} to ${show(max)}, mean ${show(sum / labels.length)}`;
  }
  const counts = new Array<number>(output.classes.length).fill(0);
  for (const label of labels) counts[label] = (counts[label] ?? 0) + 1;
  const seen = output.classes.filter((_, i) => (counts[i] ?? 0) > 0);
  const unseen = output.classes.filter((_, i) => counts[i] === 0);
  const detail =
    unseen.length === 0
      ? output.classes.map((name, i) => `${name} ${counts[i]}`).join(', ')
      : `none of ${unseen.map((name) => `'${name}'`).join(', ')}`;
  const noun = seen.length === 1 ? 'class' : 'classes';
  return `${seen.length} ${noun} seen of ${output.classes.length} (${detail})`;
}
