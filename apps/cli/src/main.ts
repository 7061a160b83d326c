#!/usr/bin/env node
import { availableParallelism, getPriority } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createLogger } from '@tessera/coordinator';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { RunRecords } from '@tessera/research';
import { API_USAGE, ApiRecords, readApiToken } from './api-client.js';
import { DATABASE_USAGE, type DatabaseFlags, openFromFlags } from './database.js';
import { describeWritten, type ExportFormat, exportRun } from './export-command.js';
import { counterfactualCommand, replayExitCode, verifyCommand } from './replay-command.js';
import { formatPhaseSummary, formatRoundLine } from './round-report.js';
import { simulate } from './simulate.js';
import { TASK_USAGE, taskCreate, taskHoldout, taskList } from './task-command.js';

const usage = `tessera <command> [options]

Commands:
  export <run-id>   write the run's record: run.json, rounds and per-client updates as CSV and/or
                    JSON Lines (docs/export.md), and optionally a round's model in tfjs format
      --out DIR           output folder (default ./export-<run-id>)
      --format F          csv | jsonl | all (default all)
      --model-round R     also write round R's global model (a number, or "latest")

  verify <run-id>   recompute every checkpoint from the kept updates and check its sha256
                    (exit status 0 when bit-identical, 2 when a checkpoint differs, 3 when
                    rounds could not be replayed: no update bytes kept, or the storage limit)

  replay <run-id>   the same check as verify; or, with --strategy (database only: it stores a
                    new run, which a read-only API token may not):
      --strategy S        replay under another strategy (fedavg, fedavgm, fedmedian,
                          trimmed-mean): stored as a new run linked to the source, evaluated on
                          the MNIST test set, compared in a table and an SVG chart
      --option K=V        a strategy option (repeatable), e.g. --option beta=0.2
      --out DIR           where the comparison goes (default ./replay-<run-id>)

  simulate          a federated run of many virtual clients on this machine, through a real
                    coordinator (in this process) and real connections; recorded like any run
      --clients N         virtual clients (default 100)
      --processes P       processes they are spread over (default: CPU cores)
      --client-nice N     the niceness those processes run at, 0-19 (default 10: they share
                          this machine's cores with the coordinator, which keeps its own)
      --partition S       iid | shards[:k] | dirichlet:alpha (default iid)
      --partition-seed S  (default 0)
      --holdout F         fraction kept for federated evaluation (default 0: central only)
      --model M           fedavg-2nn | fedavg-cnn | mlp | cnn (default fedavg-2nn)
      --strategy S        (default fedavg) and --option K=V as above
      --rounds R          round cap (default 100)
      --fraction C        clients per round as a fraction (default 0.1)
      --epochs E, --batch-size B, --lr LR, --seed S   local training (defaults 1, 10, 0.1, 0)
      --target A          stop, completed, at the first round with test accuracy >= A
      --no-keep-updates   do not keep client updates (they are kept by default here)
      --secure-aggregation  clients mask their changes, the coordinator learns only the sum
                          (docs/secure-aggregation.md); keeps no updates, needs 2+ a round
      --secagg-clip-range R   each coordinate of a change clipped to [-R, R] (default 1)
      --local-clip-norm C, --local-noise-multiplier S   local DP on every client: clip the
                          change to L2 norm C, add N(0, (S C)^2) per coordinate (give both)

${TASK_USAGE}

export, verify and replay read the run from a coordinator (--url, as a researcher) or from its
database (an admin's access; simulate always uses a database).

Coordinator:
${API_USAGE}

Database:
${DATABASE_USAGE}
`;

function parseOption(text: string): [string, unknown] {
  const at = text.indexOf('=');
  if (at <= 0) {
    throw new TesseraError(ErrorCode.INVALID_ARGUMENT, `--option wants KEY=VALUE, got "${text}"`, {
      field: 'option',
    });
  }
  const raw = text.slice(at + 1);
  const number = Number(raw);
  return [text.slice(0, at), raw !== '' && Number.isFinite(number) ? number : raw];
}

/** A numeric flag, or INVALID_ARGUMENT naming it. */
function numberFlag(values: Record<string, unknown>, name: string, integer: boolean): number {
  const text = values[name];
  const value = Number(text);
  if (
    typeof text !== 'string' ||
    text === '' ||
    !Number.isFinite(value) ||
    (integer && !Number.isInteger(value))
  ) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `--${name} must be ${integer ? 'an integer' : 'a number'}, got "${String(text)}"`,
      { field: name },
    );
  }
  return value;
}

/** --local-clip-norm and --local-noise-multiplier: both or neither. */
function localDpFlags(values: Record<string, unknown>): {
  localDp?: { clipNorm: number; noiseMultiplier: number };
} {
  const given = ['local-clip-norm', 'local-noise-multiplier'].filter(
    (name) => values[name] !== undefined,
  );
  if (given.length === 0) return {};
  if (given.length === 1) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      'local DP needs both --local-clip-norm and --local-noise-multiplier',
      { field: given[0] === 'local-clip-norm' ? 'local-noise-multiplier' : 'local-clip-norm' },
    );
  }
  return {
    localDp: {
      clipNorm: numberFlag(values, 'local-clip-norm', false),
      noiseMultiplier: numberFlag(values, 'local-noise-multiplier', false),
    },
  };
}

async function simulateCommand(values: Record<string, unknown>): Promise<number> {
  const int = (name: string) => numberFlag(values, name, true);
  const num = (name: string) => numberFlag(values, name, false);
  const logger = createLogger('warn');
  const db = await openFromFlags(values as DatabaseFlags, { create: true });
  try {
    const result = await simulate({
      db,
      logger,
      clients: int('clients'),
      processes: values['processes'] === undefined ? availableParallelism() : int('processes'),
      ...(values['client-nice'] === undefined ? {} : { clientNiceness: int('client-nice') }),
      partition: String(values['partition']),
      partitionSeed: int('partition-seed'),
      holdoutFraction: num('holdout'),
      run: {
        model: String(values['model']),
        strategy: String(values['strategy'] ?? 'fedavg'),
        strategyOptions: Object.fromEntries((values['option'] as string[]).map(parseOption)),
        rounds: int('rounds'),
        clientsPerRound: null,
        fractionFit: num('fraction'),
        minClients: 1,
        roundDeadlineMs: 3_600_000,
        localEpochs: int('epochs'),
        batchSize: int('batch-size'),
        learningRate: num('lr'),
        seed: int('seed'),
        // Secure aggregation hides the individual updates: there are none to keep.
        keepUpdates: values['no-keep-updates'] !== true && values['secure-aggregation'] !== true,
        ...(values['secure-aggregation'] === true
          ? { minClients: 2, secureAggregation: { clipRange: num('secagg-clip-range') } }
          : {}),
        ...localDpFlags(values),
      },
      ...(values['target'] === undefined ? {} : { targetAccuracy: num('target') }),
      onRound: (round, timing) => process.stdout.write(`${formatRoundLine(round, timing)}\n`),
    });
    process.stdout.write(formatPhaseSummary(result.rounds, result.timings));
    process.stdout.write(
      `  the client hosts ran at niceness ${result.clientNiceness} (the coordinator at ${getPriority(process.pid)})\n`,
    );
    process.stdout.write(
      `run ${result.run.id}: ${result.run.status} after ${result.run.currentRound} rounds in ${(result.wallMs / 1000).toFixed(0)} s${result.roundsToTarget === null ? '' : `; target reached at round ${result.roundsToTarget}`}\n`,
    );
    return 0;
  } finally {
    await db.close();
  }
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      out: { type: 'string' },
      format: { type: 'string', default: 'all' },
      'model-round': { type: 'string' },
      clients: { type: 'string', default: '100' },
      processes: { type: 'string' },
      'client-nice': { type: 'string' },
      partition: { type: 'string', default: 'iid' },
      'partition-seed': { type: 'string', default: '0' },
      holdout: { type: 'string', default: '0' },
      model: { type: 'string', default: 'fedavg-2nn' },
      rounds: { type: 'string', default: '100' },
      fraction: { type: 'string', default: '0.1' },
      epochs: { type: 'string', default: '1' },
      'batch-size': { type: 'string', default: '10' },
      lr: { type: 'string', default: '0.1' },
      seed: { type: 'string', default: '0' },
      target: { type: 'string' },
      'no-keep-updates': { type: 'boolean', default: false },
      'secure-aggregation': { type: 'boolean', default: false },
      'secagg-clip-range': { type: 'string', default: '1' },
      'local-clip-norm': { type: 'string' },
      'local-noise-multiplier': { type: 'string' },
      strategy: { type: 'string' },
      option: { type: 'string', multiple: true, default: [] },
      url: { type: 'string' },
      token: { type: 'string' },
      'token-file': { type: 'string' },
      'database-url': { type: 'string' },
      'data-dir': { type: 'string' },
      weights: { type: 'string' },
      'new-version': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, runId] = positionals;
  if (values.help || command === undefined) {
    process.stdout.write(usage);
    return command === undefined && !values.help ? 1 : 0;
  }
  if (command === 'simulate') return simulateCommand(values);
  if (command === 'task') return taskCommand(positionals.slice(1), values);
  if (command !== 'export' && command !== 'replay' && command !== 'verify') {
    throw new TesseraError(ErrorCode.INVALID_ARGUMENT, `unknown command "${command}"; see --help`);
  }
  if (runId === undefined) {
    throw new TesseraError(ErrorCode.INVALID_ARGUMENT, `${command} needs a run id; see --help`);
  }
  const print = (line: string) => process.stdout.write(`${line}\n`);
  if (values.url !== undefined) {
    if (values['database-url'] !== undefined || values['data-dir'] !== undefined) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        '--url reads the run from a coordinator; --database-url and --data-dir from a database: give one',
        { field: 'url' },
      );
    }
    if (values.strategy !== undefined) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `replay --strategy stores a new run, so it works on the database only (--database-url or --data-dir); over --url, use verify`,
        { field: 'strategy' },
      );
    }
    const { token, warnings } = readApiToken(values);
    for (const warning of warnings) process.stderr.write(`tessera: warning: ${warning}\n`);
    return recordsCommand(command, runId, new ApiRecords(values.url, token), values, print);
  }
  const db = await openFromFlags(values, { create: false });
  try {
    if (command === 'replay' && values.strategy !== undefined) {
      await counterfactualCommand(
        db,
        runId,
        {
          strategy: values.strategy,
          strategyOptions: Object.fromEntries(values.option.map(parseOption)),
          outDir: values.out ?? `replay-${runId}`,
        },
        print,
      );
      return 0;
    }
    return await recordsCommand(command, runId, db, values, print);
  } finally {
    await db.close();
  }
}

/** `task create FILE`, `task list`, `task holdout`: over the REST API only (the coordinator checks). */
async function taskCommand(
  args: string[],
  values: {
    url?: string | undefined;
    token?: string | undefined;
    'token-file'?: string | undefined;
    weights?: string | undefined;
    'new-version'?: boolean | undefined;
  },
): Promise<number> {
  const [action, file, ...extra] = args;
  if (values.url === undefined) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      "task commands talk to a coordinator: give its --url (it checks the task's model)",
      { field: 'url' },
    );
  }
  const { token, warnings } = readApiToken(values);
  for (const warning of warnings) process.stderr.write(`tessera: warning: ${warning}\n`);
  const print = (line: string) => process.stdout.write(`${line}\n`);
  if (action === 'list' && file === undefined) {
    await taskList({ url: values.url, token }, print);
    return 0;
  }
  if (action === 'create' && file !== undefined && extra.length === 0) {
    await taskCreate(
      {
        url: values.url,
        token,
        file,
        weights: values.weights,
        newVersion: values['new-version'] ?? false,
      },
      print,
    );
    return 0;
  }
  if (action === 'holdout' && file !== undefined && extra.length === 1) {
    await taskHoldout({ url: values.url, token, task: file, file: extra[0] as string }, print);
    return 0;
  }
  throw new TesseraError(
    ErrorCode.INVALID_ARGUMENT,
    'use "tessera task create FILE.json [--weights weights.bin] [--new-version]", "tessera task list" or "tessera task holdout NAME[@VERSION] FILE"; see --help',
  );
}

/** export, and verify (replay without --strategy): the same code on the database or the API. */
async function recordsCommand(
  command: 'export' | 'replay' | 'verify',
  runId: string,
  records: RunRecords,
  values: {
    out?: string | undefined;
    format?: string | undefined;
    'model-round'?: string | undefined;
  },
  print: (line: string) => void,
): Promise<number> {
  if (command !== 'export') return replayExitCode(await verifyCommand(records, runId, print));
  const format = values.format as ExportFormat;
  if (!['csv', 'jsonl', 'all'].includes(format)) {
    throw new TesseraError(ErrorCode.INVALID_ARGUMENT, `--format must be csv, jsonl or all`, {
      field: 'format',
    });
  }
  const modelFlag = values['model-round'];
  let modelRound: number | 'latest' | null = null;
  if (modelFlag !== undefined) {
    modelRound = modelFlag === 'latest' ? 'latest' : Number(modelFlag);
    if (modelRound !== 'latest' && !(Number.isInteger(modelRound) && modelRound >= 0)) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `--model-round must be a round number or "latest", got "${modelFlag}"`,
        { field: 'model-round' },
      );
    }
  }
  const outDir = values.out ?? `export-${runId}`;
  const files = await exportRun(records, runId, { outDir, format, modelRound });
  print(`exported run ${runId} to ${resolve(outDir)}:`);
  for (const file of files) print(`  ${describeWritten(file)}`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    const message =
      error instanceof TesseraError
        ? `${error.code}: ${error.message}`
        : String((error as Error)?.stack ?? error);
    process.stderr.write(`tessera: ${message}\n`);
    process.exitCode = 1;
  },
);
