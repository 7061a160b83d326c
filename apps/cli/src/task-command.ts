import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { apiBase, callApi } from './api-client.js';

export const TASK_USAGE = `  task create FILE.json   store a task (its definition as JSON) on the coordinator: an admin's
                          call (--url and the admin token through --token-file/TESSERA_TOKEN)
      --weights FILE      its initial weights (a tfjs weights.bin: float32, manifest order);
                          model.weights {sha256, byteLength} is added to the definition where
                          it has none, else it must match the file
      --new-version       store it as the next version of its name (else a taken name is refused)
  task list               every task on the coordinator: name@version, input, output, parameters
  task holdout NAME[@V] FILE  upload (or replace) a task version's held-out set (default the
                          latest version): the coordinator evaluates every round of the task's
                          runs on it. CSV/TSV with a header (tabular: the feature and label
                          columns; text: text and label) or JSON Lines {text, label} (text
                          tasks); the format comes from the name (.csv, .tsv, .jsonl)`;

/** What the API answers for a task (a record, plus notes on create). */
interface TaskAnswer {
  name: string;
  version: number;
  sha256: string;
  paramCount: number;
  hasWeights: boolean;
  builtin: boolean;
  definition: {
    input?: { kind?: string };
    output?: { kind?: string; classes?: string[] };
  };
  notes?: string[];
}

function invalid(field: string, message: string): TesseraError {
  return new TesseraError(ErrorCode.INVALID_ARGUMENT, message, { field });
}

function readFile(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (cause) {
    const reason = (cause as NodeJS.ErrnoException).code ?? (cause as Error).message;
    throw invalid(flag, `${path}: cannot read it (${reason})`);
  }
}

/** The API's refusal with its field in the words, where the message does not name it. */
function withField(error: unknown): unknown {
  if (!(error instanceof TesseraError)) return error;
  const field = error.data?.['field'];
  // Field errors of the task schema read "task: input.columns.2.name: ...": named already.
  if (typeof field !== 'string' || error.message.includes(`${field}:`)) return error;
  return new TesseraError(error.code, `${error.message} (field: ${field})`, error.data);
}

export interface TaskCreateOptions {
  url: string;
  token: string | null;
  file: string;
  weights?: string | undefined;
  newVersion: boolean;
}

/**
 * `tessera task create`: the definition (and weights.bin) sent to POST /api/tasks, or to
 * /api/tasks/{name}/versions; JSON alone without weights, multipart with them.
 */
export async function taskCreate(
  options: TaskCreateOptions,
  print: (line: string) => void,
): Promise<void> {
  const base = apiBase(options.url);
  let definition: Record<string, unknown>;
  try {
    definition = JSON.parse(readFile(options.file, 'file').toString('utf8'));
  } catch (cause) {
    if (cause instanceof TesseraError) throw cause;
    throw invalid('file', `${options.file} is not valid JSON (${(cause as Error).message})`);
  }
  if (typeof definition !== 'object' || definition === null || Array.isArray(definition)) {
    throw invalid('file', `${options.file} must hold a task definition: a JSON object`);
  }
  const name = typeof definition['name'] === 'string' ? definition['name'] : '';
  const path = options.newVersion ? `/tasks/${encodeURIComponent(name)}/versions` : '/tasks';
  let body: string | FormData;
  let contentType: string | undefined;
  if (options.weights === undefined) {
    body = JSON.stringify(definition);
    contentType = 'application/json';
  } else {
    const weights = readFile(options.weights, 'weights');
    const model = definition['model'];
    if (typeof model === 'object' && model !== null && !('weights' in model)) {
      // The declaration is part of the task's content (its sha256): fill it in from the file.
      (model as Record<string, unknown>)['weights'] = {
        sha256: createHash('sha256').update(weights).digest('hex'),
        byteLength: weights.byteLength,
      };
    }
    const form = new FormData();
    form.append('definition', new Blob([JSON.stringify(definition)], { type: 'application/json' }));
    form.append('weights', new Blob([new Uint8Array(weights)]), 'weights.bin');
    body = form; // fetch sets the multipart boundary itself
  }
  let task: TaskAnswer;
  try {
    const response = await callApi(base, options.token, path, {
      method: 'POST',
      body,
      ...(contentType === undefined ? {} : { contentType }),
    });
    task = (await response.json()) as TaskAnswer;
  } catch (error) {
    throw withField(error);
  }
  print(`stored task ${task.name}@${task.version}`);
  print(`  sha256      ${task.sha256}`);
  print(`  parameters  ${task.paramCount}`);
  print(`  weights     ${task.hasWeights ? 'uploaded' : 'none (seeded from the run)'}`);
  for (const note of task.notes ?? []) print(`  note: ${note}`);
}

/** "multiclass (3 classes)", "binary", "regression". */
function outputWords(output: TaskAnswer['definition']['output']): string {
  if (output?.kind === 'multiclass') return `multiclass (${output.classes?.length ?? 0} classes)`;
  return output?.kind ?? '?';
}

/** `tessera task list`: one line a version, as a table. */
export async function taskList(
  options: { url: string; token: string | null },
  print: (line: string) => void,
): Promise<void> {
  let tasks: TaskAnswer[];
  try {
    const response = await callApi(apiBase(options.url), options.token, '/tasks');
    tasks = (await response.json()) as TaskAnswer[];
  } catch (error) {
    throw withField(error);
  }
  const rows = [
    ['TASK', 'INPUT', 'OUTPUT', 'PARAMETERS', 'SHA256', ''],
    ...tasks.map((task) => [
      `${task.name}@${task.version}`,
      task.definition.input?.kind ?? '?',
      outputWords(task.definition.output),
      String(task.paramCount),
      task.sha256.slice(0, 12),
      task.builtin ? 'built-in' : '',
    ]),
  ];
  const widths = rows[0]?.map((_, column) =>
    Math.max(...rows.map((row) => (row[column] ?? '').length)),
  ) as number[];
  for (const row of rows) {
    print(
      row
        .map((cell, column) => cell.padEnd(widths[column] ?? 0))
        .join('  ')
        .trimEnd(),
    );
  }
}

/** What the API answers for a stored held-out set. */
interface HoldoutAnswer {
  format: string;
  sha256: string;
  byteLength: number;
  rows: number;
}

/**
 * `tessera task holdout NAME[@VERSION] FILE`: the file sent to PUT
 * /api/tasks/{name}/versions/{version}/holdout as multipart (part `holdout`, under the file's
 * own name, which tells its format). Without @VERSION the task's latest version is asked first.
 */
export async function taskHoldout(
  options: { url: string; token: string | null; task: string; file: string },
  print: (line: string) => void,
): Promise<void> {
  const base = apiBase(options.url);
  const match = /^([a-z0-9][a-z0-9-]{0,63})(?:@([1-9][0-9]{0,9}))?$/.exec(options.task);
  if (match === null) {
    throw invalid('task', `"${options.task}" is not NAME or NAME@VERSION (e.g. ward-risk@2)`);
  }
  const name = match[1] as string;
  const bytes = readFile(options.file, 'file');
  try {
    let version = match[2];
    if (version === undefined) {
      const latest = await callApi(base, options.token, `/tasks/${encodeURIComponent(name)}`);
      version = String(((await latest.json()) as TaskAnswer).version);
    }
    const form = new FormData();
    form.append('holdout', new Blob([new Uint8Array(bytes)]), basename(options.file));
    const response = await callApi(
      base,
      options.token,
      `/tasks/${encodeURIComponent(name)}/versions/${version}/holdout`,
      { method: 'PUT', body: form },
    );
    const stored = (await response.json()) as HoldoutAnswer;
    print(`stored the held-out set of ${name}@${version}`);
    print(`  rows        ${stored.rows}`);
    print(`  format      ${stored.format}`);
    print(`  sha256      ${stored.sha256}`);
  } catch (error) {
    throw withField(error);
  }
}
