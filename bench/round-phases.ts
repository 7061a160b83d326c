/**
 * Where a round's time goes in the FedAvg paper's CNN setting (issue 15, items 2 and 6):
 * `tessera simulate` with 100 clients of 600 IID MNIST examples, C = 0.1, E = 1, B = 50,
 * fedavg-cnn, central evaluation on the 10,000 test images every round. Each configuration
 * runs `--rounds` rounds; the table gives the median of rounds 2.. of each phase as the engine
 * recorded it (Round.phases) and the central evaluation that ran beside the next round. The
 * clients' training time is measured by a baseline run of the same rounds without central
 * evaluation (the clients then have the machine's cores to themselves): its median training
 * phase. "Not training" is a round less that, as a share of the round (the goal: at
 * most 10%). Here clients and coordinator share the cores, so central evaluation also slows
 * the clients' training; in a deployment clients train on their own machines.
 *
 *   npm run bench:round-phases -- [--rounds 6] [--processes 2]
 *
 * Prints the machine, its load average and the table; writes bench/results/round-phases.json.
 */
import { writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { simulate } from '@tessera/cli';
import { createLogger } from '@tessera/coordinator';
import { openDatabase, type RoundRecord } from '@tessera/db';
import { ROUND_PHASES, roundTotalMs } from '@tessera/protocol';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '6' },
    processes: { type: 'string', default: String(availableParallelism()) },
    'database-url': { type: 'string' },
  },
});
const ROUNDS = Number(args.rounds);
const PROCESSES = Number(args.processes);
/** The baseline (no central evaluation) first: the others' "not training" needs it. */
const CONFIGS = [
  { keepUpdates: false, centralEvaluation: false },
  { keepUpdates: false, centralEvaluation: true },
  { keepUpdates: true, centralEvaluation: true },
];
const url = args['database-url'] ?? process.env['DATABASE_URL'];
if (!url) throw new Error('give --database-url (PostgreSQL) or set DATABASE_URL');

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
};
const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

interface Row {
  keepUpdates: boolean;
  centralEvaluation: boolean;
  runId: string;
  rounds: number;
  medians: Record<string, number>;
  accuracy: number | null;
}

const cpu = cpus()[0]?.model ?? 'unknown CPU';
const loadBefore = loadavg();
console.log(
  `${cpu}, ${cpus().length} cores, node ${process.version}, load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')}`,
);
console.log(
  `fedavg-cnn, 100 clients x 600 IID, C = 0.1, E = 1, B = 50, lr 0.1, ${ROUNDS} rounds, ${PROCESSES} host processes; medians of rounds 2-${ROUNDS}\n`,
);

const db = await openDatabase({ url });
const rows: Row[] = [];
try {
  for (const { keepUpdates, centralEvaluation } of CONFIGS) {
    const result = await simulate({
      db,
      logger: createLogger('warn'),
      name: `round-phases keepUpdates=${keepUpdates} centralEvaluation=${centralEvaluation}`,
      centralEvaluation,
      clients: 100,
      processes: PROCESSES,
      partition: 'iid',
      partitionSeed: 1,
      holdoutFraction: 0,
      run: {
        model: 'fedavg-cnn',
        strategy: 'fedavg',
        strategyOptions: {},
        rounds: ROUNDS,
        clientsPerRound: null,
        fractionFit: 0.1,
        minClients: 10,
        roundDeadlineMs: 600_000,
        localEpochs: 1,
        batchSize: 50,
        learningRate: 0.1,
        seed: 1,
        keepUpdates,
      },
    });
    const timed = result.rounds.filter(
      (round): round is RoundRecord & { phases: NonNullable<RoundRecord['phases']> } =>
        round.number >= 2 && roundTotalMs(round.phases) !== null,
    );
    const medians: Record<string, number> = {};
    for (const { key } of ROUND_PHASES) medians[key] = median(timed.map((r) => r.phases[key] ?? 0));
    medians['roundMs'] = median(timed.map((r) => roundTotalMs(r.phases) as number));
    medians['centralEvaluationMs'] = median(timed.map((r) => r.phases.centralEvaluationMs ?? 0));
    // The baseline's training phase: the clients' own time, with the cores to themselves.
    const clientTraining = rows[0]?.medians['trainingMs'] ?? (medians['trainingMs'] as number);
    medians['clientTrainingMs'] = clientTraining;
    medians['notTrainingShare'] = median(
      timed.map((r) => {
        const total = roundTotalMs(r.phases) as number;
        return (total - Math.min(total, clientTraining)) / total;
      }),
    );
    rows.push({
      keepUpdates,
      centralEvaluation,
      runId: result.run.id,
      rounds: timed.length,
      medians,
      accuracy: result.rounds.at(-1)?.centralAccuracy ?? null,
    });
  }
} finally {
  await db.close();
}

const header = [
  'central evaluation',
  'keepUpdates',
  ...ROUND_PHASES.map(({ label }) => label),
  'round',
  "clients' training",
  'not training',
  'central evaluation took',
];
const lines = [
  `| ${header.join(' | ')} |`,
  `|${header.map(() => ' ---: ').join('|')}|`,
  ...rows.map(
    (row) =>
      `| ${[
        row.centralEvaluation ? 'beside the next round' : 'none (baseline)',
        row.keepUpdates ? 'yes' : 'no',
        ...ROUND_PHASES.map(({ key }) => seconds(row.medians[key] as number)),
        seconds(row.medians['roundMs'] as number),
        seconds(row.medians['clientTrainingMs'] as number),
        `${((row.medians['notTrainingShare'] as number) * 100).toFixed(1)}%`,
        row.centralEvaluation ? seconds(row.medians['centralEvaluationMs'] as number) : '—',
      ].join(' | ')} |`,
  ),
];
console.log(lines.join('\n'));
const loadAfter = loadavg();
console.log(`\nload average at the end ${loadAfter.map((l) => l.toFixed(2)).join(' ')}`);
writeFileSync(
  'bench/results/round-phases.json',
  `${JSON.stringify({ cpu, cores: cpus().length, node: process.version, loadBefore, loadAfter, rounds: ROUNDS, processes: PROCESSES, rows, at: new Date().toISOString() }, null, 2)}\n`,
);
