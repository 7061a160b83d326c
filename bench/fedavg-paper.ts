/**
 * FedAvg reproduced (McMahan et al., AISTATS 2017, Table 1/2, C = 0.1): MNIST over 100
 * clients, IID (600 random examples each) and pathological non-IID (2 shards of 300 sorted
 * examples each), rounds until the test accuracy target, beside the paper's numbers. Every
 * run goes through `tessera simulate` (a real coordinator, real connections, the database),
 * so each is recorded and can be exported and replayed. Learning rate: a small grid, best
 * reported, as the paper tuned it.
 *
 *   npm run bench:fedavg-paper -- [--rows 2nn-iid,2nn-noniid,...] [--lr 0.05,0.1,0.2]
 *                                 [--max-rounds N] [--processes P] [--data-dir DIR]
 *
 * Writes bench/results/fedavg-paper.json and .md; results accumulate across invocations
 * (one row at a time is fine: the non-IID rows take hours on two cores).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { simulate } from '@tessera/cli';
import { createLogger } from '@tessera/coordinator';
import { openDatabase } from '@tessera/db';

interface Row {
  id: string;
  model: 'fedavg-2nn' | 'fedavg-cnn';
  partition: 'iid' | 'shards';
  epochs: number;
  batchSize: number;
  target: number;
  paperRounds: number;
  /** Default learning-rate grid. */
  lrGrid: number[];
  defaultMaxRounds: number;
}

const ROWS: Row[] = [
  {
    id: '2nn-iid',
    model: 'fedavg-2nn',
    partition: 'iid',
    epochs: 1,
    batchSize: 10,
    target: 0.97,
    paperRounds: 87,
    lrGrid: [0.05, 0.1, 0.2],
    defaultMaxRounds: 300,
  },
  {
    id: '2nn-noniid',
    model: 'fedavg-2nn',
    partition: 'shards',
    epochs: 1,
    batchSize: 10,
    target: 0.97,
    paperRounds: 664,
    lrGrid: [0.05, 0.1],
    defaultMaxRounds: 1000,
  },
  {
    id: 'cnn-e5-b10-iid',
    model: 'fedavg-cnn',
    partition: 'iid',
    epochs: 5,
    batchSize: 10,
    target: 0.99,
    paperRounds: 20,
    lrGrid: [0.05, 0.1],
    defaultMaxRounds: 100,
  },
  {
    id: 'cnn-e5-b10-noniid',
    model: 'fedavg-cnn',
    partition: 'shards',
    epochs: 5,
    batchSize: 10,
    target: 0.99,
    paperRounds: 229,
    lrGrid: [0.05, 0.1],
    defaultMaxRounds: 500,
  },
  {
    id: 'cnn-e1-b50-iid',
    model: 'fedavg-cnn',
    partition: 'iid',
    epochs: 1,
    batchSize: 50,
    target: 0.99,
    paperRounds: 65,
    lrGrid: [0.1, 0.2],
    defaultMaxRounds: 300,
  },
  {
    id: 'cnn-e1-b50-noniid',
    model: 'fedavg-cnn',
    partition: 'shards',
    epochs: 1,
    batchSize: 50,
    target: 0.99,
    paperRounds: 600,
    lrGrid: [0.1, 0.2],
    defaultMaxRounds: 1200,
  },
];

interface Attempt {
  learningRate: number;
  runId: string;
  roundsToTarget: number | null;
  roundsRun: number;
  bestAccuracy: number;
  wallSeconds: number;
}

interface Result {
  row: string;
  model: string;
  partition: string;
  epochs: number;
  batchSize: number;
  target: number;
  paperRounds: number;
  attempts: Attempt[];
  finishedAt: string;
}

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '2nn-iid' },
    lr: { type: 'string' },
    'max-rounds': { type: 'string' },
    processes: { type: 'string' },
    'data-dir': { type: 'string', default: 'bench/results/fedavg-paper.pglite' },
    'database-url': { type: 'string' },
  },
});

const resultsPath = 'bench/results/fedavg-paper.json';
mkdirSync('bench/results', { recursive: true });
const results: Record<string, Result> = existsSync(resultsPath)
  ? JSON.parse(readFileSync(resultsPath, 'utf8'))
  : {};

const url = values['database-url'] ?? process.env['DATABASE_URL'];
const db = await openDatabase(url ? { url } : { dataDir: values['data-dir'] });
const logger = createLogger('warn');
const processes = Number(values.processes ?? availableParallelism());

try {
  for (const id of values.rows.split(',')) {
    const row = ROWS.find((r) => r.id === id);
    if (!row) throw new Error(`unknown row ${id}; rows: ${ROWS.map((r) => r.id).join(', ')}`);
    const grid = values.lr ? values.lr.split(',').map(Number) : row.lrGrid;
    const maxRounds = Number(values['max-rounds'] ?? row.defaultMaxRounds);
    const attempts: Attempt[] = [];
    for (const learningRate of grid) {
      console.log(
        `\n== ${row.id}: lr ${learningRate}, target ${row.target}, cap ${maxRounds} rounds`,
      );
      let best = 0;
      const result = await simulate({
        db,
        logger,
        name: `fedavg-paper ${row.id} lr=${learningRate}`,
        clients: 100,
        processes,
        partition: row.partition === 'iid' ? 'iid' : 'shards:2',
        partitionSeed: 1,
        holdoutFraction: 0,
        run: {
          model: row.model,
          strategy: 'fedavg',
          strategyOptions: {},
          rounds: maxRounds,
          clientsPerRound: null,
          fractionFit: 0.1,
          minClients: 10,
          roundDeadlineMs: 3_600_000,
          localEpochs: row.epochs,
          batchSize: row.batchSize,
          learningRate,
          seed: 1,
        },
        targetAccuracy: row.target,
        onRound: (round) => {
          best = Math.max(best, round.centralAccuracy ?? 0);
          if (round.number % 5 === 0 || (round.centralAccuracy ?? 0) >= row.target) {
            console.log(
              `  round ${round.number}: test accuracy ${round.centralAccuracy?.toFixed(4)} (best ${best.toFixed(4)}), ${(round.durationMs / 1000).toFixed(1)} s`,
            );
          }
        },
      });
      attempts.push({
        learningRate,
        runId: result.run.id,
        roundsToTarget: result.roundsToTarget,
        roundsRun: result.run.currentRound,
        bestAccuracy: best,
        wallSeconds: Math.round(result.wallMs / 1000),
      });
      console.log(
        `  -> ${result.roundsToTarget === null ? `not reached in ${result.run.currentRound} rounds` : `target at round ${result.roundsToTarget}`} (${Math.round(result.wallMs / 1000)} s, run ${result.run.id})`,
      );
    }
    // Re-read before writing: another invocation may have finished a row meanwhile.
    if (existsSync(resultsPath))
      Object.assign(results, JSON.parse(readFileSync(resultsPath, 'utf8')));
    results[row.id] = {
      row: row.id,
      model: row.model,
      partition: row.partition,
      epochs: row.epochs,
      batchSize: row.batchSize,
      target: row.target,
      paperRounds: row.paperRounds,
      // Attempts accumulate across invocations: a learning rate run again replaces its result.
      attempts: [
        ...(results[row.id]?.attempts ?? []).filter(
          (earlier) => !attempts.some((a) => a.learningRate === earlier.learningRate),
        ),
        ...attempts,
      ].sort((a, b) => a.learningRate - b.learningRate),
      finishedAt: new Date().toISOString(),
    };
    writeFileSync(resultsPath, `${JSON.stringify(results, null, 2)}\n`);
  }
} finally {
  await db.close();
}

const lines = [
  '| model | data | E | B | target | paper (rounds) | Tessera (rounds) | best lr | lr grid (rounds to target) | wall time |',
  '|---|---|---|---|---|---|---|---|---|---|',
];
for (const row of ROWS) {
  const result = results[row.id];
  if (!result) continue;
  const reached = result.attempts.filter((a) => a.roundsToTarget !== null);
  const best = reached.sort(
    (a, b) => (a.roundsToTarget as number) - (b.roundsToTarget as number),
  )[0];
  const grid = result.attempts
    .map(
      (a) =>
        `${a.learningRate}: ${a.roundsToTarget ?? `>${a.roundsRun} (best ${(a.bestAccuracy * 100).toFixed(2)}%)`}`,
    )
    .join('; ');
  const wall = result.attempts.reduce((sum, a) => sum + a.wallSeconds, 0);
  lines.push(
    `| ${row.model === 'fedavg-2nn' ? '2NN' : 'CNN'} | ${row.partition === 'iid' ? 'IID' : 'non-IID (2 shards)'} | ${row.epochs} | ${row.batchSize} | ${(row.target * 100).toFixed(0)}% | ${row.paperRounds} | ${best ? best.roundsToTarget : 'not reached'} | ${best ? best.learningRate : '—'} | ${grid} | ${(wall / 60).toFixed(1)} min |`,
  );
}
const table = `${lines.join('\n')}\n`;
writeFileSync('bench/results/fedavg-paper.md', table);
console.log(`\n${table}`);
