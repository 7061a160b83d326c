#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { type BackendPreference, initBackend } from '@tessera/ml';
import { TesseraError } from '@tessera/protocol';
import { SingleBar } from 'cli-progress';
import { type ClientObserver, NODE_CLIENT_IDENTITY, TesseraClient, TfjsTrainer } from './client.js';
import { loadLocalData } from './data-source.js';

const usage = `tessera-client --coordinator URL --token TOKEN (--mnist K/N | --csv FILE) [options]

  --coordinator URL     the coordinator, e.g. http://coordinator.example.org:4000
  --token TOKEN         this organisation's client token (issued by an admin)
  --mnist K/N           demo data: partition K (0-based) of N of the MNIST training set
  --partition SCHEME    iid | shards[:k] | dirichlet:ALPHA   (default iid)
  --partition-seed N    the federation's partition seed      (default 42)
  --csv FILE            your own data: label,feature1,...,feature784 per line (see README)
  --holdout F           fraction kept for federated evaluation (default 0.1)
  --max-examples N      use at most N local examples (quick trials)
  --backend NAME        auto | tensorflow-gpu | tensorflow | openblas | wasm | cpu (default auto)
  --threads N           threads for the openblas backend's products (default: every core, or
                        OPENBLAS_NUM_THREADS); 1 where several clients share a machine
  --workers N|auto      data-parallel training threads (default 1; auto: the idle cores, for
                        batches of 32 or more)
  --progress MODE       bars | lines | none (default: bars on a terminal, else lines)
`;

function fail(message: string): never {
  process.stderr.write(`tessera-client: ${message}\n`);
  process.exit(2);
}

function parseThreads(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const threads = Number(text);
  if (!Number.isInteger(threads) || threads < 1) {
    fail(`--threads must be a positive integer, got "${text}"`);
  }
  return threads;
}

function parseWorkers(text: string): number | 'auto' {
  if (text === 'auto') return 'auto';
  const workers = Number(text);
  if (!Number.isInteger(workers) || workers < 1) {
    fail(`--workers must be a positive integer or "auto", got "${text}"`);
  }
  return workers;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      coordinator: { type: 'string' },
      token: { type: 'string' },
      mnist: { type: 'string' },
      partition: { type: 'string', default: 'iid' },
      'partition-seed': { type: 'string', default: '42' },
      csv: { type: 'string' },
      holdout: { type: 'string', default: '0.1' },
      'max-examples': { type: 'string' },
      backend: { type: 'string', default: 'auto' },
      workers: { type: 'string', default: '1' },
      threads: { type: 'string' },
      progress: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(usage);
    return;
  }
  const coordinatorUrl = values.coordinator ?? process.env['TESSERA_COORDINATOR'];
  const token = values.token ?? process.env['TESSERA_TOKEN'];
  if (!coordinatorUrl || !token) fail(`--coordinator and --token are required\n\n${usage}`);

  const data = loadLocalData({
    ...(values.mnist !== undefined ? { mnist: values.mnist } : {}),
    ...(values.csv !== undefined ? { csv: values.csv } : {}),
    partition: values.partition,
    partitionSeed: Number(values['partition-seed']),
    holdoutFraction: Number(values.holdout),
    ...(values['max-examples'] !== undefined
      ? { maxExamples: Number(values['max-examples']) }
      : {}),
  });
  const threads = parseThreads(values.threads);
  const backend = await initBackend(
    values.backend as BackendPreference,
    threads === undefined ? {} : { threads },
  );
  const progressMode = values.progress ?? (process.stdout.isTTY ? 'bars' : 'lines');
  const say = (line: string) => process.stdout.write(`${line}\n`);
  say(
    `tessera-client: ${data.description}: ${data.train.count} training and ${data.holdout?.count ?? 0} held-out examples`,
  );
  say(`tessera-client: training on the ${backend.name} backend (${backend.detail})`);

  const client = new TesseraClient({
    coordinatorUrl,
    token,
    identity: NODE_CLIENT_IDENTITY,
    trainer: new TfjsTrainer(data.train, data.holdout, { workers: parseWorkers(values.workers) }),
    backend: backend.name,
    observer: createObserver(progressMode, say),
  });
  const shutdown = async () => {
    await client.close();
    process.exit(0);
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
  await client.connect();
}

function createObserver(mode: string, say: (line: string) => void): ClientObserver {
  let bar: SingleBar | null = null;
  let lastEpoch = -1;
  return {
    connected: (w) =>
      say(`connected to federation ${w.federationId} as ${w.organisation} (client ${w.clientId})`),
    disconnected: (reason) => say(`disconnected (${reason}); reconnecting`),
    roundStarted: (i) => {
      lastEpoch = -1;
      if (mode !== 'none')
        say(
          `round ${i.round}: training ${i.model.name} for ${i.config.epochs} epoch(s), batch ${i.config.batchSize}, lr ${i.config.learningRate}`,
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
        if (p.batch === p.batches) {
          bar?.stop();
          bar = null;
        }
      } else if (mode === 'lines' && p.batch === p.batches) {
        say(
          `  epoch ${p.epoch}/${p.epochs}: ${p.batches} batches, loss ${p.loss?.toFixed(4) ?? '-'}`,
        );
      }
    },
    roundFinished: (s) =>
      say(
        `round ${s.round}: sent update (${s.numExamples} examples, loss ${s.loss.toFixed(4)}, ` +
          `${Math.round(s.samplesPerSecond)} samples/s, ${(s.durationMs / 1000).toFixed(1)} s)${s.ack.ok ? '' : ` REFUSED ${s.ack.error.code}`}`,
      ),
    evaluated: (s) =>
      say(
        `round ${s.round}: held-out accuracy ${(s.accuracy * 100).toFixed(2)}% on ${s.numExamples} examples`,
      ),
    warning: (message) => process.stderr.write(`tessera-client: ${message}\n`),
    replaced: (message) =>
      process.stderr.write(`tessera-client: ${message}; this client stops training\n`),
  };
}

main().catch((error: unknown) => {
  const message =
    error instanceof TesseraError
      ? `${error.code}: ${error.message}`
      : String((error as Error)?.stack ?? error);
  fail(message);
});
