#!/usr/bin/env node
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Coordinator, createLogger, type RoundSummary } from '@tessera/coordinator';
import { openDatabase } from '@tessera/db';
import { TesseraError } from '@tessera/protocol';

const usage = `npm start -- [options]      a federated MNIST run on this machine

  --model NAME        fedavg-2nn | fedavg-cnn | mlp | cnn   (default fedavg-2nn)
  --partition SCHEME  iid | shards[:k] | dirichlet:ALPHA    (default iid)
  --clients N         Node client processes                 (default 10)
  --rounds N          FedAvg rounds                         (default 5)
  --fraction C        fraction of clients per round         (default 1)
  --epochs E          local epochs per round                (default 1)
  --batch-size B      local batch size                      (default 10)
  --lr LR             local SGD learning rate               (default 0.05)
  --seed N            run seed                              (default 1)
  --data-dir DIR      keep the PGlite database here         (default: a fresh temporary folder)
`;

interface Row {
  round: number;
  clients: string;
  trainLoss: string;
  federated: string;
  central: string;
  centralLoss: string;
  seconds: string;
}

const columns: Array<[keyof Row, string]> = [
  ['round', 'round'],
  ['clients', 'clients'],
  ['trainLoss', 'train loss'],
  ['federated', 'fed. acc'],
  ['central', 'test acc'],
  ['centralLoss', 'test loss'],
  ['seconds', 'round time'],
];

function formatRow(row: Row | null): string {
  return columns
    .map(([key, title]) => {
      const text = row === null ? title : String(row[key]);
      return key === 'round' ? text.padStart(5) : text.padStart(Math.max(title.length, 9));
    })
    .join('  ');
}

const percent = (value: number | null | undefined) =>
  value == null ? '-' : `${(value * 100).toFixed(2)}%`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'fedavg-2nn' },
      partition: { type: 'string', default: 'iid' },
      clients: { type: 'string', default: '10' },
      rounds: { type: 'string', default: '5' },
      fraction: { type: 'string', default: '1' },
      epochs: { type: 'string', default: '1' },
      'batch-size': { type: 'string', default: '10' },
      lr: { type: 'string', default: '0.05' },
      seed: { type: 'string', default: '1' },
      'data-dir': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(usage);
    return;
  }
  const numClients = Number(values.clients);
  const workDir = values['data-dir'] ?? mkdtempSync(join(tmpdir(), 'tessera-demo-'));
  mkdirSync(join(workDir, 'logs'), { recursive: true });
  const say = (line: string) => process.stdout.write(`${line}\n`);

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

  const federation = await api<{ id: string }>('POST', '/federations', { name: 'MNIST demo' });
  const tokens: string[] = [];
  for (let k = 0; k < numClients; k++) {
    const issued = await api<{ token: string }>('POST', `/federations/${federation.id}/clients`, {
      organisation: `org-${String(k).padStart(2, '0')}`,
    });
    tokens.push(issued.token);
  }
  const run = await api<{ id: string; config: { rounds: number } }>('POST', '/runs', {
    federationId: federation.id,
    name: `demo ${values.model} ${values.partition}`,
    model: values.model,
    rounds: Number(values.rounds),
    fractionFit: Number(values.fraction),
    minClients: Math.max(1, Math.floor(numClients * Number(values.fraction) * 0.5)),
    roundDeadlineMs: 600_000,
    localEpochs: Number(values.epochs),
    batchSize: Number(values['batch-size']),
    learningRate: Number(values.lr),
    seed: Number(values.seed),
    data: { dataset: 'mnist', partition: values.partition, clients: numClients, partitionSeed: 42 },
  });

  say(`Tessera demo: coordinator ${coordinator.url} on PGlite (${workDir})`);
  say(
    `run ${run.id}: ${values.model}, ${values.partition} partitions, ${numClients} clients, ${values.rounds} rounds, ` +
      `E=${values.epochs} B=${values['batch-size']} lr=${values.lr}; client logs in ${join(workDir, 'logs')}`,
  );

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
        '--mnist',
        `${k}/${numClients}`,
        '--partition',
        values.partition,
        '--partition-seed',
        '42',
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
  say(formatRow(null));

  let lastRoundEnd = Date.now();
  let bestAccuracy = 0;
  const roundSeconds: number[] = [];
  coordinator.on('round-evaluated', ({ record }: RoundSummary) => {
    const now = Date.now();
    roundSeconds.push((now - lastRoundEnd) / 1000);
    lastRoundEnd = now;
    bestAccuracy = Math.max(bestAccuracy, record.centralAccuracy ?? 0);
    say(
      formatRow({
        round: record.number,
        clients: `${record.participantClientIds.length}/${record.selectedClientIds.length}`,
        trainLoss: record.trainLoss?.toFixed(4) ?? '-',
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
