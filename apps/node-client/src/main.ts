#!/usr/bin/env node
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { initBackend } from '@tessera/ml';
import { TesseraError, weightsToBytes } from '@tessera/protocol';
import { SingleBar } from 'cli-progress';
import { runCheck } from './check.js';
import { type ClientObserver, NODE_CLIENT_IDENTITY, TesseraClient, TfjsTrainer } from './client.js';
import { FileControlVariates } from './control-variate-files.js';
import { loadLocalData } from './data-source.js';
import { type ProgressMode, parseCommandLine, readToken, USAGE } from './options.js';
import { formatPercent, ParticipationLog, roundLine } from './participation.js';

/** A client with no round for this long prints what it did so far (runs end without notice). */
const IDLE_SUMMARY_MS = 60_000;
/** The way out never hangs: a close that takes longer than this is cut short. */
const CLOSE_TIMEOUT_MS = 10_000;
/** 128 + the signal's number, as shells report a process ended by it. */
const SIGNAL_EXIT_STATUS = { SIGINT: 130, SIGTERM: 143 } as const;

const say = (line: string) => process.stdout.write(`${line}\n`);
const warn = (line: string) => process.stderr.write(`tessera-client: ${line}\n`);

function fail(message: string): never {
  warn(message);
  process.exit(2);
}

function describe(error: unknown): string {
  return error instanceof TesseraError
    ? `${error.code}: ${error.message}`
    : String((error as Error)?.stack ?? error);
}

const log = new ParticipationLog();
let client: TesseraClient | undefined;
let stopProgressBar = () => {};

function printSummaries(prefix: string): void {
  for (const line of log.summaries()) say(`tessera-client: ${prefix}${line}`);
}

// Installed before the data is loaded: Ctrl-C at any point leaves the same way.
let leaving = false;
function leave(signal: keyof typeof SIGNAL_EXIT_STATUS): void {
  const status = SIGNAL_EXIT_STATUS[signal];
  if (leaving) process.exit(status); // a second Ctrl-C: at once
  leaving = true;
  stopProgressBar();
  say(`tessera-client: ${signal}: leaving the federation`);
  setTimeout(() => {
    warn(`still busy after ${CLOSE_TIMEOUT_MS / 1000} s; leaving anyway`);
    printSummaries('left; ');
    process.exit(status);
  }, CLOSE_TIMEOUT_MS).unref();
  (client?.close() ?? Promise.resolve())
    .catch((error: unknown) => warn(`while leaving: ${describe(error)}`))
    .finally(() => {
      printSummaries('left; ');
      process.exit(status);
    });
}
process.on('SIGINT', () => leave('SIGINT'));
process.on('SIGTERM', () => leave('SIGTERM'));

async function main(): Promise<void> {
  const settings = parseCommandLine(process.argv.slice(2), process.env, process.stdout.isTTY);
  if (settings === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  if ('check' in settings) {
    const { ok, lines } = await runCheck(settings.check);
    // A fit is a result (stdout); a misfit is an error to fix (stderr, exit status 2).
    for (const line of lines) ok ? say(`tessera-client: ${line}`) : warn(line);
    process.exit(ok ? 0 : 2);
  }
  const { token, warning } = readToken(settings.tokenSource);
  if (warning) warn(warning);
  const data = await loadLocalData(settings.data);
  const backend = await initBackend(
    settings.backend,
    settings.threads === undefined ? {} : { threads: settings.threads },
  );
  say(
    data.train === null
      ? `tessera-client: ${data.description}`
      : `tessera-client: ${data.description}: ${data.train.count} training and ${data.holdout?.count ?? 0} held-out examples`,
  );
  say(`tessera-client: training on the ${backend.name} backend (${backend.detail})`);
  if (leaving) return;

  const controlVariates =
    settings.stateDir === undefined ? undefined : new FileControlVariates(settings.stateDir);
  say(
    `tessera-client: SCAFFOLD control variates are kept ${controlVariates?.where ?? 'in memory only (no --state-dir: a restarted client starts them from zero)'}`,
  );
  client = new TesseraClient({
    coordinatorUrl: settings.coordinatorUrl,
    token,
    identity: NODE_CLIENT_IDENTITY,
    trainer: new TfjsTrainer(data.train, data.holdout, {
      workers: settings.workers,
      ...(data.taskData === undefined ? {} : { taskData: data.taskData }),
    }),
    backend: backend.name,
    observer: keepingContributions(createObserver(settings.progress), settings.keepContributions),
    ...(controlVariates === undefined ? {} : { controlVariates }),
  });
  await client.connect();
}

/** Adds --keep-contributions to an observer: a copy of each update, on this machine only. */
function keepingContributions(observer: ClientObserver, dir: string | undefined): ClientObserver {
  if (dir === undefined) return observer;
  mkdirSync(dir, { recursive: true });
  return {
    ...observer,
    contributed: ({ runId, round, global, weights, numExamples }) => {
      const name = join(dir, `${runId}-${round}`);
      writeFileSync(`${name}.global.f32`, weightsToBytes(global));
      writeFileSync(`${name}.weights.f32`, weightsToBytes(weights));
      writeFileSync(`${name}.json`, `${JSON.stringify({ runId, round, numExamples })}\n`);
    },
  };
}

function createObserver(mode: ProgressMode): ClientObserver {
  let bar: SingleBar | null = null;
  let lastEpoch = -1;
  let currentRun: string | undefined;
  stopProgressBar = () => {
    bar?.stop();
    bar = null;
  };
  let idleTimer: NodeJS.Timeout | undefined;
  const armIdleSummary = () => {
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => {
      if (currentRun !== undefined) {
        say(
          `tessera-client: no round for ${IDLE_SUMMARY_MS / 1000} s; so far ${log.summary(currentRun)}`,
        );
      }
    }, IDLE_SUMMARY_MS);
    idleTimer.unref();
  };
  return {
    connected: (w) =>
      say(`connected to federation ${w.federationId} as ${w.organisation} (client ${w.clientId})`),
    disconnected: (reason) => say(`disconnected (${reason}); reconnecting`),
    roundStarted: (i) => {
      clearTimeout(idleTimer);
      // Runs end without a message to clients: a new run is when the last one is summed up.
      if (currentRun !== undefined && currentRun !== i.runId) {
        say(`tessera-client: ${log.summary(currentRun)}`);
      }
      currentRun = i.runId;
      log.started(i.runId, i.round);
      lastEpoch = -1;
      if (mode !== 'none')
        say(
          `round ${i.round}: training ${i.model.name} for ${i.config.localEpochs} epoch(s), batch ${i.config.batchSize}, lr ${i.config.learningRate}`,
        );
    },
    progress: (p) => {
      if (mode === 'bars') {
        if (p.epoch !== lastEpoch) {
          bar?.stop();
          bar = new SingleBar({
            format: `  epoch ${p.epoch}/${p.epochs} |{bar}| {value}/{total} batches | loss {loss}`,
            hideCursor: true,
          });
          bar.start(p.batches, 0, { loss: '-' });
          lastEpoch = p.epoch;
        }
        bar?.update(p.batch, { loss: p.loss?.toFixed(4) ?? '-' });
        if (p.batch === p.batches) stopProgressBar();
      } else if (mode === 'lines' && p.batch === p.batches) {
        say(
          `  epoch ${p.epoch}/${p.epochs}: ${p.batches} batches, loss ${p.loss?.toFixed(4) ?? '-'}`,
        );
      }
    },
    roundFinished: (s) => {
      const refusal = s.ack.ok ? undefined : `${s.ack.error.code}: ${s.ack.error.message}`;
      log.finished(s.runId, s.round, {
        outcome: refusal === undefined ? 'sent' : 'refused',
        numExamples: s.numExamples,
        durationMs: s.durationMs,
        loss: s.loss,
        ...(refusal === undefined ? {} : { reason: refusal }),
      });
      say(roundLine({ ...s, ...(refusal === undefined ? {} : { refusal }) }));
      armIdleSummary();
    },
    roundFailed: (f) => {
      stopProgressBar();
      log.finished(f.runId, f.round, { outcome: 'failed', reason: f.reason });
      warn(
        `round ${f.round} failed: ${f.reason}${f.ack.ok ? '' : ` (and the coordinator did not take the report: ${f.ack.error.code})`}`,
      );
      armIdleSummary();
    },
    evaluated: (s) => {
      log.evaluated(s.runId, s.round, s.accuracy);
      say(
        `round ${s.round}: held-out accuracy ${formatPercent(s.accuracy)} on ${s.numExamples} examples`,
      );
    },
    warning: (message) => warn(message),
    replaced: (message) => warn(`${message}; this client stops training`),
    stopped: (error) => {
      stopProgressBar();
      printSummaries('');
      fail(describe(error));
    },
  };
}

main().catch((error: unknown) => {
  stopProgressBar();
  printSummaries('');
  fail(describe(error));
});
