import {
  checkData,
  columnsNeedingStatistics,
  type DataProblem,
  isResolved,
  parseDelimited,
  parseJsonLines,
  readTabular,
  readTextTable,
  selectRows,
  splitHoldout,
  type TabularData,
  type TabularStatistics,
  type TaskExamples,
  type TextData,
  tabularExamples,
  tabularStatistics,
  textExamples,
} from '@tessera/data';
import { TesseraError } from '@tessera/protocol';
import { type TaskDefinition, taskSha256 } from '@tessera/tasks';
import { RoundFailure } from './trainer.js';

// A client's own data for any task, from one file's name and text. Pure and browser-safe (no
// Node built-ins): the Node client reads the file from disk, the web client from a picked File,
// and both hand the text to the same code here.

/** A file of local data: its name (in messages, and .jsonl/.ndjson picks JSON Lines) and its text. */
export interface DataFile {
  name: string;
  /** Read each time a new task needs the rows, so a file fixed between runs is picked up. */
  read(): string | Promise<string>;
}

/** How the local rows are split, the same for every task (see splitHoldout). */
export interface SplitOptions {
  /** Fraction of the rows kept out of training for federated evaluation, in [0, 1). */
  holdoutFraction: number;
  /** Seeds the split: the same file and seed give the same held-out rows. */
  partitionSeed: number;
  /** Use at most the first this many rows (quick trials). */
  maxExamples?: number;
}

/** A task's examples on this client: the training rows and the held-out ones (none: null). */
export interface TaskDataSplit {
  train: TaskExamples;
  holdout: TaskExamples | null;
}

/**
 * Where a trainer gets its examples for a task it was not built for (TfjsTrainer's task path):
 * given the definition, the encoded rows, split into training and held-out rows.
 */
export interface TaskData {
  /** Training rows, as far as known before a task says how to read them (the hello's hint). */
  readonly numExamples: number;
  /** Held-out rows; undefined: not known (the hello omits it, docs/protocol.md §4.1). */
  readonly numHoldout: number | undefined;
  /**
   * The task's examples. RoundFailure PREPROCESSING_UNRESOLVED when the task leaves constants
   * to the statistics round, DATA_SCHEMA_MISMATCH when the data does not fit it.
   */
  examples(task: TaskDefinition): Promise<TaskDataSplit>;
  /** The federated statistics round's summary of the training rows (see FileTaskData). */
  statistics(task: TaskDefinition): Promise<TabularStatistics>;
}

/** A file's rows read per a task, as read (tabular values not yet standardised or one-hot). */
export type TaskRows = { kind: 'tabular'; data: TabularData } | { kind: 'text'; data: TextData };

/** Whether a file is JSON Lines (by its name), as packages/data's loadTextFile decides. */
export function isJsonLinesFile(name: string): boolean {
  return /\.(jsonl|ndjson)$/i.test(name);
}

/**
 * The data rows of a file, before any task says what they mean: JSON Lines' non-blank lines,
 * a CSV/TSV's records after the header. What the hello reports before a run names its task;
 * equal to the rows a task reads when the file fits it.
 */
export function countDataRows(file: { name: string; text: string }): number {
  if (isJsonLinesFile(file.name)) {
    let count = 0;
    for (const line of file.text.split('\n')) if (line.trim() !== '') count++;
    return count;
  }
  return parseDelimited(file.text, { source: file.name }).rows.length;
}

/** The rows of the first `maxExamples` (all by default) split into training and held-out indices. */
export function splitRows(
  count: number,
  options: SplitOptions,
): { train: Uint32Array; holdout: Uint32Array } {
  const used = Math.min(count, options.maxExamples ?? count);
  return splitHoldout(
    Uint32Array.from({ length: used }, (_, i) => i),
    options.holdoutFraction,
    options.partitionSeed,
  );
}

/** Whether an error is a packages/data refusal of a file's contents (it carries a DataProblem). */
function dataProblemOf(error: unknown): DataProblem | undefined {
  if (!(error instanceof TesseraError)) return undefined;
  const data = error.data as Partial<DataProblem> | undefined;
  return data?.file !== undefined && data.problem !== undefined ? (data as DataProblem) : undefined;
}

/**
 * Runs `work`, turning a refusal of the data (file, line, column: packages/data's message, made
 * with formatProblem) into RoundFailure DATA_SCHEMA_MISMATCH with that same plain message.
 */
async function asRoundFailure<T>(work: () => T | Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (dataProblemOf(error) !== undefined) {
      throw new RoundFailure('DATA_SCHEMA_MISMATCH', (error as TesseraError).message);
    }
    throw error;
  }
}

/**
 * Reads a file's text per the task's input: tabular by column name (CSV/TSV), text from JSON
 * Lines (fields `text` and `label`) or from CSV/TSV (columns `text` and `label`). Throws
 * packages/data's refusals (INVALID_ARGUMENT with DataProblem data); RoundFailure
 * TASK_NOT_SUPPORTED for an image task, whose examples are a folder of images (ImageSetTaskData).
 */
export function readTaskRows(task: TaskDefinition, file: { name: string; text: string }): TaskRows {
  const { input, output } = task;
  switch (input.kind) {
    case 'tabular':
      if (isJsonLinesFile(file.name)) {
        throw new RoundFailure(
          'DATA_SCHEMA_MISMATCH',
          `${file.name}: task '${task.name}' reads tabular rows from CSV/TSV with a header, not JSON Lines`,
        );
      }
      return {
        kind: 'tabular',
        data: readTabular(file.text, input, output, { source: file.name }),
      };
    case 'text':
      return {
        kind: 'text',
        data: isJsonLinesFile(file.name)
          ? parseJsonLines(file.text, output, { source: file.name })
          : readTextTable(file.text, output, { source: file.name }),
      };
    case 'image':
      throw new RoundFailure(
        'TASK_NOT_SUPPORTED',
        `task '${task.name}' has image input: images come from a folder of class sub-folders (--data DIR), not from a file (${file.name})`,
      );
  }
}

/**
 * RoundFailure PREPROCESSING_UNRESOLVED when the task leaves constants to the federated
 * statistics round (a column standardised 'federated', a categorical one without categories):
 * its rows cannot be encoded until the coordinator sends the task with the round's constants.
 */
export function assertResolved(task: TaskDefinition): void {
  if (task.input.kind !== 'tabular' || isResolved(task.input)) return;
  const columns = columnsNeedingStatistics(task.input).map((column) => `'${column.name}'`);
  throw new RoundFailure(
    'PREPROCESSING_UNRESOLVED',
    `task '${task.name}': column${columns.length === 1 ? '' : 's'} ${columns.join(', ')} need${columns.length === 1 ? 's' : ''} constants from the federated statistics round; the coordinator has not sent them`,
  );
}

/** The model's examples of the task's rows (resolved tasks only: see assertResolved). */
export function encodeRows(task: TaskDefinition, rows: TaskRows): TaskExamples {
  if (rows.kind === 'tabular') {
    if (task.input.kind !== 'tabular')
      throw new Error('encodeRows: tabular rows for a non-tabular task');
    return tabularExamples(rows.data, task.input);
  }
  if (task.input.kind !== 'text') throw new Error('encodeRows: text rows for a non-text task');
  return textExamples(rows.data, task.input);
}

/** The examples at `indices` (into `examples`), in that order. */
export function selectExamples(examples: TaskExamples, indices: ArrayLike<number>): TaskExamples {
  const { featureSize } = examples;
  const x = new Float32Array(indices.length * featureSize);
  const y = new Float32Array(indices.length);
  for (let to = 0; to < indices.length; to++) {
    const from = indices[to] as number;
    x.set(examples.x.subarray(from * featureSize, (from + 1) * featureSize), to * featureSize);
    y[to] = examples.y[from] as number;
  }
  return { x, y, count: indices.length, featureSize };
}

/**
 * One file of local data for whichever task a run trains: read, checked and encoded per task,
 * the latest task's examples kept (keyed by its sha256: a task never changes under its hash).
 * A refusal is not kept: the next round reads the file again, so a fixed file is picked up.
 */
export class FileTaskData implements TaskData {
  private cached: { sha256: string; split: Promise<TaskDataSplit> } | undefined;

  /**
   * `rows`: the data rows the file holds (countDataRows of its text), for the hello's hint;
   * undefined when not known (then the hint is 0 training rows and no held-out count).
   */
  constructor(
    private readonly file: DataFile,
    private readonly split: SplitOptions,
    rows: number | undefined,
  ) {
    if (rows === undefined) {
      this.numExamples = 0;
      this.numHoldout = undefined;
    } else {
      const { train, holdout } = splitRows(rows, split);
      this.numExamples = train.length;
      this.numHoldout = holdout.length;
    }
  }

  readonly numExamples: number;
  readonly numHoldout: number | undefined;

  /** Reads the file once to count its rows (see countDataRows), then keeps only its name and reader. */
  static async open(file: DataFile, split: SplitOptions): Promise<FileTaskData> {
    const text = await file.read();
    return new FileTaskData(file, split, countDataRows({ name: file.name, text }));
  }

  examples(task: TaskDefinition): Promise<TaskDataSplit> {
    const sha256 = taskSha256(task);
    if (this.cached?.sha256 === sha256) return this.cached.split;
    const split = this.load(task);
    this.cached = { sha256, split };
    split.catch(() => {
      if (this.cached?.split === split) this.cached = undefined;
    });
    return split;
  }

  /**
   * This client's summary for the federated statistics round: of the TRAINING rows only, the
   * rows the model learns from. Preprocessing constants fitted on held-out rows too would let
   * those rows shape what they are then evaluated with (the usual rule: fit scalers and
   * category lists on training data), and a category seen only in held-out rows would become
   * a model input no client ever trains. The split is the one training uses (same seed).
   */
  async statistics(task: TaskDefinition): Promise<TabularStatistics> {
    if (task.input.kind !== 'tabular') {
      throw new RoundFailure(
        'TASK_NOT_SUPPORTED',
        `task '${task.name}' has ${task.input.kind} input: statistics are summaries of tabular columns`,
      );
    }
    const input = task.input;
    return asRoundFailure(async () => {
      const rows = readTaskRows(task, { name: this.file.name, text: await this.file.read() });
      if (rows.kind !== 'tabular') throw new Error('statistics: tabular task read as text');
      const { train } = this.splitOf(rows.data.count);
      return tabularStatistics(selectRows(rows.data, train), input);
    });
  }

  private async load(task: TaskDefinition): Promise<TaskDataSplit> {
    assertResolved(task);
    return asRoundFailure(async () => {
      const rows = readTaskRows(task, { name: this.file.name, text: await this.file.read() });
      const all = encodeRows(task, rows);
      const { train, holdout } = this.splitOf(all.count);
      return {
        train: selectExamples(all, train),
        holdout: holdout.length > 0 ? selectExamples(all, holdout) : null,
      };
    });
  }

  private splitOf(count: number): { train: Uint32Array; holdout: Uint32Array } {
    const split = splitRows(count, this.split);
    if (split.train.length === 0) {
      throw new RoundFailure(
        'DATA_SCHEMA_MISMATCH',
        `${this.file.name}: ${count} row(s), and a hold-out fraction of ${this.split.holdoutFraction} keeps every one of them out of training`,
      );
    }
    return split;
  }
}

/** What `--check` (and the web page) says about a file and a task, before joining. */
export interface TaskDataCheck {
  ok: boolean;
  /** Plain lines for a person: the task, the rows and label counts, or the first problem. */
  lines: string[];
}

/** "tabular, 4 columns -> multiclass (low, mid, high)": what the task reads and predicts. */
export function describeTask(task: TaskDefinition): string {
  const { input, output } = task;
  const reads =
    input.kind === 'tabular'
      ? `tabular, ${input.columns.length} column${input.columns.length === 1 ? '' : 's'} and label '${input.label}'`
      : input.kind === 'text'
        ? `text (${input.tokenizer.kind} tokens, up to ${input.maxLength})`
        : `images ${input.height}x${input.width}x${input.channels}`;
  const predicts =
    output.kind === 'regression' ? 'regression' : `${output.kind} (${output.classes.join(', ')})`;
  return `task ${task.name}: ${reads} -> ${predicts}`;
}

/**
 * Reads a file against a task as training would, never throwing for a problem of the data:
 * the lines say the rows (training / held-out by `split`), the labels seen (labelSummary), and
 * the first problem, if any (file, line, column). Counts only: nothing a row holds.
 */
export function checkTaskData(
  task: TaskDefinition,
  file: { name: string; text: string },
  split: SplitOptions,
): TaskDataCheck {
  const lines = [describeTask(task)];
  if (task.input.kind === 'image') {
    lines.push(
      `${file.name}: image tasks read a folder of class sub-folders of images (--data DIR), not a file`,
    );
    return { ok: false, lines };
  }
  let holdout = 0;
  try {
    holdout = splitRows(countDataRows(file), split).holdout.length;
  } catch {
    // Unparseable: checkData below reports the same problem, with its line.
  }
  const check = checkData(
    () => {
      const rows = readTaskRows(task, file);
      return rows.data;
    },
    task.output,
    { holdout },
  );
  lines.push(check.summary);
  if (!check.ok) return { ok: false, lines };
  if (check.data.count - holdout < 1) {
    lines.push(`every row is held out: lower --holdout (${split.holdoutFraction})`);
    return { ok: false, lines };
  }
  if (task.input.kind === 'tabular' && !isResolved(task.input)) {
    const columns = columnsNeedingStatistics(task.input).map((column) => `'${column.name}'`);
    lines.push(
      `${columns.join(', ')}: constants from the federated statistics round (this file's rows fit; the round computes them)`,
    );
  }
  lines.push('the data fits the task');
  return { ok: true, lines };
}
