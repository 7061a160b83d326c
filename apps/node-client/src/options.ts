import { readFileSync, statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { BACKEND_PREFERENCES, type BackendPreference } from '@tessera/ml';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { DataOptions } from './data-source.js';

// The command line, read into settings. Everything here is checked before any data is loaded or
// any connection is made, and every refusal names the option.

export const USAGE = `tessera-client --coordinator URL (--token-file FILE | TESSERA_TOKEN=...) (--mnist K/N | --csv FILE | --data FILE) [options]
tessera-client --check --task-file TASK.json --data FILE|DIR [--holdout F] [--partition-seed N]

  --coordinator URL     the coordinator, e.g. http://coordinator.example.org:4000
                        (or TESSERA_COORDINATOR)
  --token-file FILE     a file whose first line is this organisation's client token (issued by
                        an admin); keep it private: chmod 600 FILE
  TESSERA_TOKEN         (environment) the client token, instead of --token-file
  --token TOKEN         the client token on the command line: other users of this machine can
                        read it (ps, /proc); prefer --token-file or TESSERA_TOKEN
  --mnist K/N           demo data: partition K (0-based) of N of the MNIST training set
  --partition SCHEME    iid | shards[:k] | dirichlet:ALPHA   (default iid)
  --partition-seed N    the federation's partition seed      (default 42)
  --csv FILE            your own data: label,feature1,...,feature784 per line, features in
                        [0, 1] (see README); checked before connecting
  --scale N             divide every CSV feature by N first: --scale 255 for 0..255 pixels
  --data FILE           your own data for any task a run trains: CSV/TSV with a header for
                        tabular tasks (columns by name, extra ones ignored), CSV/TSV with
                        'text' and 'label' columns or .jsonl/.ndjson lines {"text", "label"}
                        for text tasks; read per task when a round starts
  --data DIR            images for an image task: one sub-folder per class (named as the
                        task's classes), PNG or JPEG files of any size in them
  --check               check --data against --task-file (a task's JSON definition) and say
                        what does not fit; connects to nothing. Exit status 0 fits, 2 not
  --task-file FILE      the task to check against (with --check)
  --holdout F           fraction kept for federated evaluation (default 0.1)
  --max-examples N      use at most N local examples (quick trials)
  --backend NAME        auto | tensorflow-gpu | tensorflow | openblas | wasm | cpu (default auto)
  --threads N           threads for the openblas backend's products (default: every core, or
                        OPENBLAS_NUM_THREADS); 1 where several clients share a machine
  --workers N|auto      data-parallel training threads (default 1; auto: the idle cores, for
                        batches of 32 or more)
  --progress MODE       bars | lines | none (default: bars on a terminal, else lines)
  --state-dir DIR       where the client keeps what it must remember across restarts:
                        SCAFFOLD's control variate of each run, one small file per run
                        (or TESSERA_STATE_DIR; without it they are kept in memory only)
  --keep-contributions DIR
                        keep a copy of each update this client contributes, as
                        DIR/<run>-<round>.json (example count) and .f32 files (the global
                        model received and the weights trained, raw little-endian float32):
                        what your organisation sent, or masked under secure aggregation

Ctrl-C (or SIGTERM) leaves the federation: a round in training is abandoned, a summary of the
rounds this client took part in is printed, and the exit status is 130 (143 for SIGTERM).
`;

export type ProgressMode = 'bars' | 'lines' | 'none';
const PROGRESS_MODES: readonly ProgressMode[] = ['bars', 'lines', 'none'];

/** Where the token comes from; a file is read (and its permissions checked) by readToken. */
export type TokenSource =
  | { kind: '--token'; token: string }
  | { kind: 'TESSERA_TOKEN'; token: string }
  | { kind: '--token-file'; path: string };

/** `--check`: read a task and the data, say whether they fit, connect to nothing. */
export interface CheckSettings {
  check: { taskFile: string; data: DataOptions & { data: string } };
}

export interface ClientSettings {
  coordinatorUrl: string;
  tokenSource: TokenSource;
  data: DataOptions;
  backend: BackendPreference;
  threads: number | undefined;
  workers: number | 'auto';
  progress: ProgressMode;
  /** --state-dir (or TESSERA_STATE_DIR): undefined keeps SCAFFOLD's c_i in memory only. */
  stateDir: string | undefined;
  /** --keep-contributions: where copies of this client's updates go; undefined: nowhere. */
  keepContributions: string | undefined;
}

function invalid(field: string, message: string): TesseraError {
  return new TesseraError(ErrorCode.INVALID_ARGUMENT, message, { field });
}

function integer(text: string, option: string, min: number): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isSafeInteger(value) || value < min) {
    throw invalid(option, `${option} must be an integer of at least ${min}, got "${text}"`);
  }
  return value;
}

/**
 * Exactly one token source. Several are refused rather than ranked: a token left in the
 * environment silently overriding the file just written (or the reverse) is worse than a question.
 */
export function chooseTokenSource(
  flag: string | undefined,
  file: string | undefined,
  env: string | undefined,
): TokenSource {
  const given: TokenSource[] = [];
  if (flag !== undefined) {
    if (flag.trim() === '') throw invalid('--token', '--token is empty');
    given.push({ kind: '--token', token: flag.trim() });
  }
  if (file !== undefined) {
    if (file === '') throw invalid('--token-file', '--token-file needs a file name');
    given.push({ kind: '--token-file', path: file });
  }
  // An empty variable counts as unset, as shells treat `TESSERA_TOKEN= command`.
  if (env !== undefined && env.trim() !== '')
    given.push({ kind: 'TESSERA_TOKEN', token: env.trim() });
  const [only, ...others] = given;
  if (only === undefined) {
    throw invalid(
      'token',
      'no client token: pass --token-file FILE (a file holding the token your admin issued) or set TESSERA_TOKEN',
    );
  }
  if (others.length > 0) {
    throw invalid(
      'token',
      `the client token is given ${given.length} ways (${given.map((g) => g.kind).join(', ')}); give exactly one`,
    );
  }
  return only;
}

/**
 * The token, and a warning where its file can be read or changed by other users (refusing
 * would break the usual container secret mounts, which are 0644 or 0444).
 */
export function readToken(source: TokenSource): { token: string; warning?: string } {
  if (source.kind !== '--token-file') return { token: source.token };
  const { path } = source;
  let text: string;
  let mode: number;
  try {
    mode = statSync(path).mode;
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    const reason = (cause as { code?: unknown }).code === 'ENOENT' ? 'no such file' : String(cause);
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `--token-file ${path}: cannot read it (${reason})`,
      { field: '--token-file' },
      { cause },
    );
  }
  const token = (text.split(/\r?\n/, 1)[0] ?? '').trim();
  if (token === '') {
    throw invalid(
      '--token-file',
      `--token-file ${path}: its first line is empty; it should hold the client token`,
    );
  }
  const openToOthers = process.platform !== 'win32' && (mode & 0o077) !== 0;
  return openToOthers
    ? {
        token,
        warning: `--token-file ${path} can be read by other users (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); chmod 600 ${path}`,
      }
    : { token };
}

/** Reads the command line; `help` when --help was asked for. Throws INVALID_ARGUMENT with the option. */
export function parseCommandLine(
  args: string[],
  env: Record<string, string | undefined>,
  isTerminal: boolean,
): ClientSettings | CheckSettings | 'help' {
  let values: ReturnType<typeof readArgs>;
  try {
    values = readArgs(args);
  } catch (error) {
    // node:util's messages name the option already ("Unknown option '--tokn'").
    throw invalid('arguments', `${(error as Error).message}\n\n${USAGE}`);
  }
  if (values.help) return 'help';
  if (values.check) return checkSettings(values);
  if (values['task-file'] !== undefined) {
    throw invalid('--task-file', '--task-file goes with --check (a run sends its own task)');
  }
  const coordinatorUrl = values.coordinator ?? env['TESSERA_COORDINATOR'];
  if (!coordinatorUrl) {
    throw invalid('--coordinator', `--coordinator URL is required\n\n${USAGE}`);
  }
  if (!/^https?:\/\/[^/]/.test(coordinatorUrl)) {
    throw invalid(
      '--coordinator',
      `--coordinator must be an http:// or https:// address, got "${coordinatorUrl}"`,
    );
  }
  const tokenSource = chooseTokenSource(values.token, values['token-file'], env['TESSERA_TOKEN']);

  const data = dataOptions(values);
  let featureScale: number | undefined;
  if (values.scale !== undefined) {
    featureScale = Number(values.scale);
    if (!(featureScale > 0) || !Number.isFinite(featureScale)) {
      throw invalid('--scale', `--scale must be a positive number, got "${values.scale}"`);
    }
    if (values.csv === undefined) {
      throw invalid('--scale', '--scale applies to --csv data only (MNIST is scaled already)');
    }
  }

  const backend = values.backend as BackendPreference;
  if (!BACKEND_PREFERENCES.includes(backend)) {
    throw invalid(
      '--backend',
      `--backend must be one of ${BACKEND_PREFERENCES.join(', ')}, got "${values.backend}"`,
    );
  }
  const workers = values.workers === 'auto' ? 'auto' : integer(values.workers, '--workers', 1);
  const progress = (values.progress ?? (isTerminal ? 'bars' : 'lines')) as ProgressMode;
  if (!PROGRESS_MODES.includes(progress)) {
    throw invalid(
      '--progress',
      `--progress must be one of ${PROGRESS_MODES.join(', ')}, got "${values.progress}"`,
    );
  }
  const stateDir = values['state-dir'] ?? env['TESSERA_STATE_DIR'];
  if (stateDir === '') throw invalid('--state-dir', '--state-dir needs a directory name');
  return {
    stateDir,
    coordinatorUrl,
    tokenSource,
    data: { ...data, ...(featureScale !== undefined ? { featureScale } : {}) },
    backend,
    threads: values.threads === undefined ? undefined : integer(values.threads, '--threads', 1),
    workers,
    progress,
    keepContributions: keepContributionsDir(values['keep-contributions']),
  };
}

function keepContributionsDir(dir: string | undefined): string | undefined {
  if (dir === '') throw invalid('--keep-contributions', '--keep-contributions needs a folder');
  return dir;
}

type Values = ReturnType<typeof readArgs>;

/** Where the examples come from and how they are split: the options every mode shares. */
function dataOptions(values: Values): DataOptions {
  const holdoutFraction = Number(values.holdout);
  if (!(holdoutFraction >= 0 && holdoutFraction < 1)) {
    throw invalid('--holdout', `--holdout must be a fraction in [0, 1), got "${values.holdout}"`);
  }
  const sources = (['mnist', 'csv', 'data'] as const).filter((name) => values[name] !== undefined);
  if (sources.length > 1) {
    throw invalid(
      `--${sources[1]}`,
      `give one data source, not ${sources.map((name) => `--${name}`).join(' and ')}`,
    );
  }
  if (values.data === '') throw invalid('--data', '--data needs a file name');
  return {
    ...(values.mnist !== undefined ? { mnist: values.mnist } : {}),
    ...(values.csv !== undefined ? { csv: values.csv } : {}),
    ...(values.data !== undefined ? { data: values.data } : {}),
    partition: values.partition,
    partitionSeed: integer(values['partition-seed'], '--partition-seed', Number.MIN_SAFE_INTEGER),
    holdoutFraction,
    ...(values['max-examples'] !== undefined
      ? { maxExamples: integer(values['max-examples'], '--max-examples', 1) }
      : {}),
  };
}

function checkSettings(values: Values): CheckSettings {
  const taskFile = values['task-file'];
  if (taskFile === undefined || taskFile === '') {
    throw invalid(
      '--task-file',
      '--check needs --task-file TASK.json: the task to check the data against',
    );
  }
  const data = dataOptions(values);
  if (data.data === undefined) {
    throw invalid('--data', '--check needs --data FILE: the data to check');
  }
  return { check: { taskFile, data: { ...data, data: data.data } } };
}

function readArgs(args: string[]) {
  return parseArgs({
    args,
    options: {
      coordinator: { type: 'string' },
      token: { type: 'string' },
      'token-file': { type: 'string' },
      mnist: { type: 'string' },
      partition: { type: 'string', default: 'iid' },
      'partition-seed': { type: 'string', default: '42' },
      csv: { type: 'string' },
      data: { type: 'string' },
      check: { type: 'boolean' },
      'task-file': { type: 'string' },
      scale: { type: 'string' },
      holdout: { type: 'string', default: '0.1' },
      'max-examples': { type: 'string' },
      backend: { type: 'string', default: 'auto' },
      workers: { type: 'string', default: '1' },
      threads: { type: 'string' },
      progress: { type: 'string' },
      'state-dir': { type: 'string' },
      'keep-contributions': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  }).values;
}
