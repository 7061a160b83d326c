// Test fixture (not exported by the package): the database backends a repository suite runs
// on — PGlite in memory always, PostgreSQL when TEST_DATABASE_URL is set, each opened in a
// fresh schema that dispose() drops.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { type Database, openDatabase, type RunConfigInput } from './index.js';

export interface TestBackend {
  name: string;
  open(): Promise<{ db: Database; dispose(): Promise<void> }>;
}

/** `prefix` names the suite's schemas, so a leftover one says which suite left it. */
export function testBackends(prefix: string): TestBackend[] {
  const backends: TestBackend[] = [
    {
      name: 'PGlite',
      async open() {
        const db = await openDatabase({ inMemory: true });
        return { db, dispose: () => db.close() };
      },
    },
  ];
  const { TEST_DATABASE_URL: url } = process.env;
  if (url === undefined || url === '') return backends;
  backends.push({
    name: 'PostgreSQL',
    async open() {
      const schema = `tessera_${prefix}_${process.pid}_${randomBytes(6).toString('hex')}`;
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      await admin.query(`CREATE SCHEMA "${schema}"`);
      const db = await openDatabase({ url, schema });
      return {
        db,
        async dispose() {
          await db.close();
          await admin.query(`DROP SCHEMA "${schema}" CASCADE`);
          await admin.end();
        },
      };
    },
  });
  return backends;
}

/** A small valid run config for repository suites (the 2NN, FedAvg, one client a round). */
export function testRunConfig(overrides: Partial<RunConfigInput> = {}): RunConfigInput {
  return {
    model: 'fedavg-2nn',
    strategy: 'fedavg',
    strategyOptions: {},
    rounds: 1,
    clientsPerRound: null,
    fractionFit: null,
    minClients: 1,
    roundDeadlineMs: 1000,
    localEpochs: 1,
    batchSize: 10,
    learningRate: 0.1,
    seed: 0,
    data: {},
    ...overrides,
  };
}
