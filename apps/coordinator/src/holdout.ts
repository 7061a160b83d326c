import {
  parseJsonLines,
  readTabular,
  readTextTable,
  type TabularData,
  type TaskExamples,
  type TextData,
  tabularExamples,
  textExamples,
} from '@tessera/data/browser';
import type { HoldoutFormat } from '@tessera/db';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { TaskDefinition } from '@tessera/tasks';

/** The default of `--max-holdout-mb`: a held-out set over this many bytes is refused (413). */
export const DEFAULT_MAX_HOLDOUT_BYTES = 64 * 1024 * 1024;

/** A held-out set as read, before encoding (the rows, or the texts, and their labels). */
export type HoldoutData = { kind: 'tabular'; data: TabularData } | { kind: 'text'; data: TextData };

/** The formats a task's input can be read from (the clients' readers: packages/data). */
export function holdoutFormats(task: TaskDefinition): readonly HoldoutFormat[] {
  switch (task.input.kind) {
    case 'tabular':
      return ['csv', 'tsv'];
    case 'text':
      return ['csv', 'tsv', 'jsonl'];
    case 'image':
      return [];
  }
}

/** A file name's format by its extension, or null. */
export function formatOfFileName(fileName: string): HoldoutFormat | null {
  const extension = /\.([a-z]+)$/i.exec(fileName)?.[1]?.toLowerCase();
  if (extension === 'csv' || extension === 'tsv') return extension;
  if (extension === 'jsonl' || extension === 'ndjson') return 'jsonl';
  return null;
}

/**
 * Reads a held-out set with the readers the clients use for their own files, against the
 * task's input and output: CSV/TSV by column name (tabular; text with `text` and `label`
 * columns) or JSON Lines (text: `{"text", "label"}`). Refusals are INVALID_ARGUMENT with the
 * problem's file, line and column (DataProblem) and `field: 'holdout'`. Pure.
 */
export function readHoldout(
  bytes: Uint8Array,
  format: HoldoutFormat,
  task: TaskDefinition,
  source = 'holdout',
): HoldoutData {
  const formats = holdoutFormats(task);
  if (!formats.includes(format)) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      formats.length === 0
        ? `task '${task.name}' has ${task.input.kind} input: held-out sets are read for tabular and text tasks (the built-in MNIST tasks use the MNIST test set)`
        : `a ${task.input.kind} task's held-out set is ${formats.join(', ')}, not ${format}`,
      { field: 'format', format, accepted: [...formats] },
    );
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new TesseraError(ErrorCode.INVALID_ARGUMENT, `${source}: not UTF-8 text`, {
      field: 'holdout',
      file: source,
    });
  }
  const delimiter = format === 'tsv' ? '\t' : format === 'csv' ? ',' : undefined;
  try {
    if (task.input.kind === 'tabular') {
      return {
        kind: 'tabular',
        data: readTabular(text, task.input, task.output, {
          source,
          ...(delimiter === undefined ? {} : { delimiter }),
        }),
      };
    }
    const data =
      format === 'jsonl'
        ? parseJsonLines(text, task.output, { source })
        : readTextTable(text, task.output, {
            source,
            ...(delimiter === undefined ? {} : { delimiter }),
          });
    return { kind: 'text', data };
  } catch (cause) {
    // The reader's DataProblem (file, line, column) stays; the request field is the file.
    const error = TesseraError.from(cause);
    throw new TesseraError(error.code, error.message, { field: 'holdout', ...error.data });
  }
}

/** The model's examples of a held-out set, encoded with the task the run trains. */
export function holdoutExamples(holdout: HoldoutData, task: TaskDefinition): TaskExamples {
  if (holdout.kind === 'tabular' && task.input.kind === 'tabular') {
    return tabularExamples(holdout.data, task.input);
  }
  if (holdout.kind === 'text' && task.input.kind === 'text') {
    return textExamples(holdout.data, task.input);
  }
  throw new TesseraError(
    ErrorCode.INVALID_ARGUMENT,
    `a ${holdout.kind} held-out set does not fit task '${task.name}' (${task.input.kind} input)`,
    { field: 'holdout' },
  );
}
