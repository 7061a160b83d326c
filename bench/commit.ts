/**
 * How long `db.rounds.commit` takes to store a round of kept updates, next to plain
 * node-postgres writing the same rows (round, updates with their bytes, checkpoint with its
 * strategy state) into the same tables in one transaction. Both sides run interleaved in one
 * process against one PostgreSQL; each run of a size is a fresh round of a fresh run.
 * The commit hashes every kept update (its one hash, see rounds.ts). The plain side runs twice:
 * handed the hashes (the ratio then includes Tessera's hashing), and hashing the bytes it
 * stores itself, as any store that records each update's sha256 must (the like-for-like ratio).
 *
 *   DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test npm run bench:commit
 *   ... -- --updates 100 --params 1663370 --repeats 5      (default sizes: CNN, then 2NN)
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { type Database, openDatabase, type RoundCommit } from '@tessera/db';
import pg from 'pg';

const { values: options } = parseArgs({
  options: {
    updates: { type: 'string' },
    params: { type: 'string' },
    repeats: { type: 'string', default: '5' },
  },
});
const url = process.env['DATABASE_URL'] ?? 'postgresql://postgres@127.0.0.1:5432/test';
const repeats = Number(options.repeats);
/** 100 updates of the FedAvg CNN (1,663,370 parameters) and of the 2NN (199,210). */
const sizes =
  options.updates !== undefined || options.params !== undefined
    ? [{ updates: Number(options.updates ?? 100), params: Number(options.params ?? 1_663_370) }]
    : [
        { updates: 100, params: 1_663_370 },
        { updates: 100, params: 199_210 },
      ];

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};
/** The highest RSS seen since the current timed() began (sampled; sync work delays samples). */
let windowPeak = 0;
const sampleRss = setInterval(() => {
  windowPeak = Math.max(windowPeak, process.memoryUsage.rss());
}, 2);

const schema = `bench_commit_${randomBytes(4).toString('hex')}`;
const admin = new pg.Client({ connectionString: url });
await admin.connect();
await admin.query(`CREATE SCHEMA "${schema}"`);
const db = await openDatabase({ url, schema });
const plain = new pg.Pool({ connectionString: url, options: `-c search_path=${schema}`, max: 1 });

interface Round {
  commit: RoundCommit;
  sha: string[];
}

/** A fresh run with `count` clients, its initial checkpoint, and round 1's commit input. */
async function prepare(database: Database, count: number, params: number): Promise<Round> {
  const federation = await database.federations.create({ name: `bench-${randomUUID()}` });
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const issued = await database.clients.issueToken({
      federationId: federation.id,
      organisation: `client ${i}`,
    });
    ids.push(issued.client.id);
  }
  const run = await database.runs.create({
    federationId: federation.id,
    config: {
      model: 'fedavg-cnn',
      strategy: 'fedavg',
      strategyOptions: {},
      rounds: 1,
      clientsPerRound: count,
      fractionFit: null,
      minClients: 1,
      roundDeadlineMs: 60_000,
      localEpochs: 1,
      batchSize: 50,
      learningRate: 0.1,
      seed: 1,
      data: { dataset: 'mnist', partition: { kind: 'iid' } },
      keepUpdates: true,
      updateStorageLimitMb: 1_000_000,
    },
  });
  const model = (seed: number) => {
    const values = new Float32Array(params);
    for (let i = 0; i < params; i++) values[i] = Math.sin(seed + i) * 0.05;
    return new Uint8Array(values.buffer);
  };
  await database.rounds.saveInitialCheckpoint(run.id, model(0));
  const weights = ids.map((_, i) => model(i + 1));
  const commit: RoundCommit = {
    runId: run.id,
    round: 1,
    startedAt: new Date(Date.now() - 1000),
    finishedAt: new Date(),
    selectedClientIds: ids,
    participantClientIds: ids,
    droppedClientIds: [],
    numExamples: 600 * count,
    trainLoss: 0.1,
    trainAccuracy: 0.9,
    metrics: { aggregationMs: 1 },
    updates: ids.map((clientId, i) => ({
      clientId,
      arrivalIndex: i,
      numExamples: 600,
      durationMs: 1000,
      sizeBytes: params * 4,
      metrics: { loss: 0.1 },
      weights: weights[i] as Uint8Array,
      runtime: 'node',
      backend: 'tensorflow',
    })),
    checkpoint: model(-1),
    strategyState: model(-2),
  };
  return { commit, sha: weights.map(sha256) };
}

/**
 * The same rows as commit writes, by node-postgres, one statement per row, one transaction;
 * `hash`: the update hashes are computed here from the bytes, else the given ones are used.
 */
async function plainCommit({ commit, sha: given }: Round, hash: boolean): Promise<void> {
  const sha = hash ? commit.updates.map((update) => sha256(update.weights as Uint8Array)) : given;
  const client = await plain.connect();
  try {
    await client.query('BEGIN');
    await client.query('UPDATE "Run" SET "currentRound" = $2 WHERE id = $1', [commit.runId, 1]);
    const roundId = randomUUID();
    await client.query(
      `INSERT INTO "Round" (id, "runId", number, "startedAt", "finishedAt", "durationMs", "selectedClientIds",
         "participantClientIds", "droppedClientIds", "numExamples", "trainLoss", "trainAccuracy", metrics, outcomes)
       VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, '[]')`,
      [
        roundId,
        commit.runId,
        commit.startedAt,
        commit.finishedAt,
        commit.finishedAt.getTime() - commit.startedAt.getTime(),
        commit.selectedClientIds,
        commit.participantClientIds,
        commit.droppedClientIds,
        commit.numExamples,
        commit.trainLoss,
        commit.trainAccuracy,
        JSON.stringify(commit.metrics),
      ],
    );
    for (const [i, update] of commit.updates.entries()) {
      await client.query(
        `INSERT INTO "ClientUpdate" (id, "roundId", "clientId", "arrivalIndex", "numExamples", "durationMs",
           "sizeBytes", sha256, metrics, runtime, backend, weights)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
        [
          randomUUID(),
          roundId,
          update.clientId,
          update.arrivalIndex,
          update.numExamples,
          update.durationMs,
          update.sizeBytes,
          sha[i],
          JSON.stringify(update.metrics),
          update.runtime,
          update.backend,
          update.weights,
        ],
      );
    }
    await client.query(
      `INSERT INTO "Checkpoint" (id, "runId", round, weights, sha256, "paramCount", "strategyState")
       VALUES ($1, $2, 1, $3, $4, $5, $6)`,
      [
        randomUUID(),
        commit.runId,
        commit.checkpoint,
        sha256(commit.checkpoint),
        commit.checkpoint.byteLength / 4,
        commit.strategyState,
      ],
    );
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  } finally {
    client.release();
  }
}

/** The write's wall time and how far RSS rose above where it started (MiB). */
async function timed(write: () => Promise<unknown>): Promise<{ ms: number; rssMiB: number }> {
  const before = process.memoryUsage.rss();
  windowPeak = before;
  const start = performance.now();
  await write();
  const ms = performance.now() - start;
  windowPeak = Math.max(windowPeak, process.memoryUsage.rss());
  return { ms, rssMiB: (windowPeak - before) / 2 ** 20 };
}

const cpu = cpus();
console.log(
  `machine: ${cpu[0]?.model ?? 'unknown CPU'}, ${cpu.length} cores; PostgreSQL at ${new URL(url).host}`,
);
console.log(
  `${repeats} runs per size, interleaved; medians in ms; load average ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}\n`,
);
console.log(
  'updates × params      MB   db.rounds.commit   node-postgres   ratio   pg + sha256   ratio   RSS rise MiB (db / pg)',
);
try {
  for (const { updates, params } of sizes) {
    const ours: { ms: number; rssMiB: number }[] = [];
    const theirs: { ms: number; rssMiB: number }[] = [];
    const hashing: { ms: number; rssMiB: number }[] = [];
    for (let r = 0; r < repeats; r++) {
      const sides = [
        async () => {
          const round = await prepare(db, updates, params);
          ours.push(await timed(() => db.rounds.commit(round.commit)));
        },
        async () => {
          const round = await prepare(db, updates, params);
          theirs.push(await timed(() => plainCommit(round, false)));
        },
        async () => {
          const round = await prepare(db, updates, params);
          hashing.push(await timed(() => plainCommit(round, true)));
        },
      ];
      // Rotate which side goes first, so that none always meets a warm cache.
      for (let k = 0; k < r % sides.length; k++) sides.push(sides.shift() as () => Promise<void>);
      for (const side of sides) await side();
    }
    const mb = (((updates + 2) * params * 4) / 1e6).toFixed(0);
    const [a, b, c] = [ours, theirs, hashing].map((side) => median(side.map((x) => x.ms))) as [
      number,
      number,
      number,
    ];
    const rise = (xs: { rssMiB: number }[]) => Math.max(...xs.map((x) => x.rssMiB)).toFixed(0);
    console.log(
      `${`${updates} × ${params}`.padEnd(20)}${mb.padStart(5)}${a.toFixed(0).padStart(19)}${b.toFixed(0).padStart(16)}${(a / b).toFixed(2).padStart(7)}×${c.toFixed(0).padStart(14)}${(a / c).toFixed(2).padStart(7)}×${`${rise(ours)} / ${rise(theirs)}`.padStart(24)}`,
    );
  }
  console.log(
    `\npeak RSS of the process ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB (inputs included); load average at the end ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
} finally {
  clearInterval(sampleRss);
  await plain.end();
  await db.close();
  await admin.query(`DROP SCHEMA "${schema}" CASCADE`);
  await admin.end();
}
