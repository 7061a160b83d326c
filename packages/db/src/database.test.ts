// One conformance suite for every database backend: PGlite (in memory, and on disk where
// a test reopens a store) always; PostgreSQL when TEST_DATABASE_URL is set. Each Postgres
// store is a fresh schema created and dropped here.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { appendFile, cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode } from '@tessera/protocol';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { hashToken } from './clients.js';
import {
  type ClientRecord,
  type Database,
  DEFAULT_PGLITE_DIR,
  DEFAULT_UPDATE_STORAGE_LIMIT_MB,
  defaultMigrationsDir,
  type OpenDatabaseOptions,
  openDatabase,
  type RoundCommit,
  type RunConfigInput,
  type RunRecord,
} from './index.js';

interface Store {
  /** Opens the same underlying database each time. */
  open(options?: Pick<OpenDatabaseOptions, 'migrationsDir'>): Promise<Database>;
  dispose(): Promise<void>;
}

interface Backend {
  name: string;
  kind: Database['kind'];
  /** A fresh database that lives as long as the Database does (the fast path). */
  openFresh(): Promise<{ db: Database; dispose(): Promise<void> }>;
  /** A fresh database that outlives close(), to be reopened. */
  createStore(): Promise<Store>;
}

const pgliteBackend: Backend = {
  name: 'PGlite',
  kind: 'pglite',
  async openFresh() {
    const db = await openDatabase({ inMemory: true });
    return { db, dispose: () => db.close() };
  },
  async createStore() {
    const dir = await mkdtemp(join(tmpdir(), 'tessera-pglite-'));
    return {
      open: (options) => openDatabase({ dataDir: join(dir, 'data'), ...options }),
      dispose: () => rm(dir, { recursive: true, force: true }),
    };
  },
};

function postgresBackend(url: string): Backend {
  const createStore = async (): Promise<Store> => {
    const schema = `tessera_test_${process.pid}_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    await admin.query(`CREATE SCHEMA "${schema}"`);
    return {
      open: (options) => openDatabase({ url, schema, ...options }),
      async dispose() {
        await admin.query(`DROP SCHEMA "${schema}" CASCADE`);
        await admin.end();
      },
    };
  };
  return {
    name: 'PostgreSQL',
    kind: 'postgres',
    async openFresh() {
      const store = await createStore();
      const db = await store.open();
      return {
        db,
        async dispose() {
          await db.close();
          await store.dispose();
        },
      };
    },
    createStore,
  };
}

const { TEST_DATABASE_URL: testDatabaseUrl } = process.env;
const backends: Backend[] = [pgliteBackend];
if (testDatabaseUrl !== undefined && testDatabaseUrl !== '') {
  backends.push(postgresBackend(testDatabaseUrl));
}

const sha256 = (bytes: Uint8Array | string) => createHash('sha256').update(bytes).digest('hex');

const config = (overrides: Partial<RunConfigInput> = {}): RunConfigInput => ({
  model: 'mlp',
  strategy: 'fedavg',
  strategyOptions: { serverLearningRate: 1, nested: { betas: [0.9, 0.99] } },
  rounds: 5,
  clientsPerRound: 3,
  fractionFit: null,
  minClients: 2,
  roundDeadlineMs: 30_000,
  localEpochs: 1,
  batchSize: 32,
  learningRate: 0.05,
  seed: 42,
  data: { dataset: 'mnist', partition: { kind: 'dirichlet', alpha: 0.5 } },
  keepUpdates: false,
  updateStorageLimitMb: 1024,
  secureAggregation: null,
  localDp: null,
  ...overrides,
});

function at<T>(items: T[], index: number): T {
  const item = items[index];
  if (item === undefined) throw new Error(`no item at ${index}`);
  return item;
}

function float32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode): Promise<Error> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error, `expected ${code}`).toBeInstanceOf(Error);
  expect(error).toMatchObject({ code });
  return error as Error;
}

async function migrationRows(db: Database) {
  return db.prisma.$queryRawUnsafe<
    {
      migration_name: string;
      checksum: string;
      finished_at: Date | null;
      rolled_back_at: Date | null;
      applied_steps_count: number;
      started_at: Date;
    }[]
  >(
    'SELECT migration_name, checksum, finished_at, rolled_back_at, applied_steps_count, started_at FROM _prisma_migrations ORDER BY migration_name',
  );
}

async function tableExists(db: Database, table: string): Promise<boolean> {
  const rows = await db.prisma.$queryRawUnsafe<{ present: boolean }[]>(
    `SELECT to_regclass('"${table}"') IS NOT NULL AS present`,
  );
  return rows[0]?.present === true;
}

const localMigrations = async () =>
  (await readdir(defaultMigrationsDir(), { withFileTypes: true }))
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort();

describe.each(backends)('$name', (backend) => {
  describe('migrations', () => {
    it('apply on an empty database, then a reopen applies nothing and the data persists', async () => {
      const store = await backend.createStore();
      try {
        const names = await localMigrations();
        const first = await store.open();
        expect(first.kind).toBe(backend.kind);
        expect(first.migrations).toEqual({ applied: names, alreadyApplied: [] });
        const rows = await migrationRows(first);
        expect(rows.map((row) => row.migration_name)).toEqual(names);
        for (const row of rows) {
          const script = await readFile(
            join(defaultMigrationsDir(), row.migration_name, 'migration.sql'),
          );
          expect(row.checksum).toBe(sha256(script));
          expect(row.finished_at).not.toBeNull();
          expect(row.rolled_back_at).toBeNull();
          expect(Number(row.applied_steps_count)).toBe(1);
        }
        const federation = await first.federations.create({ name: 'persisted' });
        await first.close();

        const second = await store.open();
        try {
          expect(second.migrations).toEqual({ applied: [], alreadyApplied: names });
          expect(await migrationRows(second)).toEqual(rows);
          expect(await second.federations.get(federation.id)).toEqual(federation);
        } finally {
          await second.close();
        }
      } finally {
        await store.dispose();
      }
    });

    it('applies only new migrations, rolls back a failing one, refuses an edited one', async () => {
      const store = await backend.createStore();
      const dir = await mkdtemp(join(tmpdir(), 'tessera-migrations-'));
      try {
        await cp(defaultMigrationsDir(), dir, { recursive: true });
        const shipped = await localMigrations();
        const [init] = shipped;
        await (await store.open({ migrationsDir: dir })).close();

        const addMigration = async (name: string, sql: string) => {
          await mkdir(join(dir, name));
          await writeFile(join(dir, name, 'migration.sql'), sql);
        };
        await addMigration('29990101000000_extra', 'CREATE TABLE "Extra" ("id" TEXT NOT NULL);\n');
        const withExtra = await store.open({ migrationsDir: dir });
        expect(withExtra.migrations.applied).toEqual(['29990101000000_extra']);
        expect(await tableExists(withExtra, 'Extra')).toBe(true);
        await withExtra.close();

        // The first statement succeeds, the second fails: neither may remain.
        await addMigration(
          '29990102000000_broken',
          'CREATE TABLE "Broken" ("id" TEXT);\nSELECT * FROM "NoSuchTable";\n',
        );
        const failure = await rejectsWith(store.open({ migrationsDir: dir }), ErrorCode.INTERNAL);
        expect(failure.message).toContain('29990102000000_broken');
        await rm(join(dir, '29990102000000_broken'), { recursive: true });
        const afterFailure = await store.open({ migrationsDir: dir });
        expect(afterFailure.migrations.applied).toEqual([]);
        expect(await tableExists(afterFailure, 'Broken')).toBe(false);
        expect((await migrationRows(afterFailure)).map((row) => row.migration_name)).toEqual([
          ...shipped,
          '29990101000000_extra',
        ]);
        await afterFailure.close();

        await appendFile(join(dir, String(init), 'migration.sql'), '\n-- edited\n');
        const tampered = await rejectsWith(store.open({ migrationsDir: dir }), ErrorCode.CONFLICT);
        expect(tampered.message).toContain(String(init));
      } finally {
        await store.dispose();
        await rm(dir, { recursive: true, force: true });
      }
    });

    it.runIf(backend.kind === 'postgres')(
      'two processes opening at once migrate once (advisory lock)',
      async () => {
        const store = await backend.createStore();
        try {
          const [a, b] = await Promise.all([store.open(), store.open()]);
          try {
            const names = await localMigrations();
            expect([...a.migrations.applied, ...b.migrations.applied]).toEqual(names);
            expect(await migrationRows(a)).toHaveLength(names.length);
          } finally {
            await a.close();
            await b.close();
          }
        } finally {
          await store.dispose();
        }
      },
    );
  });

  describe('repositories', () => {
    let db: Database;
    let dispose: () => Promise<void>;
    let counter = 0;
    const unique = (prefix: string) => `${prefix}-${++counter}-${randomBytes(3).toString('hex')}`;

    beforeAll(async () => {
      ({ db, dispose } = await backend.openFresh());
    });
    afterAll(async () => {
      await dispose();
    });

    /** A federation with `clientCount` clients and a run. */
    async function fixture(clientCount = 3, overrides: Partial<RunConfigInput> = {}) {
      const federation = await db.federations.create({ name: unique('federation') });
      const clients: ClientRecord[] = [];
      for (let i = 0; i < clientCount; i++) {
        clients.push(
          (await db.clients.issueToken({ federationId: federation.id, organisation: `org ${i}` }))
            .client,
        );
      }
      const run = await db.runs.create({ federationId: federation.id, config: config(overrides) });
      return { federation, clients, run };
    }

    function roundCommit(
      run: RunRecord,
      clients: ClientRecord[],
      round: number,
      checkpoint: Uint8Array,
    ): RoundCommit {
      const [first, second, third] = clients.map((client) => client.id);
      if (first === undefined || second === undefined || third === undefined) {
        throw new Error('roundCommit needs 3 clients');
      }
      return {
        runId: run.id,
        round,
        startedAt: new Date(Date.UTC(2026, 0, 1, 12, 0, round)),
        finishedAt: new Date(Date.UTC(2026, 0, 1, 12, 0, round, 750)),
        selectedClientIds: [first, second, third],
        participantClientIds: [second, first],
        droppedClientIds: [third],
        numExamples: 300,
        trainLoss: 0.25,
        trainAccuracy: 0.875,
        metrics: { aggregationMs: 12.5 },
        updates: [
          {
            clientId: second,
            arrivalIndex: 0,
            numExamples: 100,
            durationMs: 400,
            sizeBytes: 4096,
            sha256: sha256('update-b'),
            metrics: { loss: 0.3 },
          },
          {
            clientId: first,
            arrivalIndex: 1,
            numExamples: 200,
            durationMs: 650,
            sizeBytes: 4096,
            sha256: sha256('update-a'),
            metrics: { loss: 0.2, accuracy: 0.9 },
          },
        ],
        checkpoint,
      };
    }

    describe('federations', () => {
      it('creates, lists and gets; refuses a duplicate name; NOT_FOUND for an unknown id', async () => {
        const name = unique('fed');
        const created = await db.federations.create({ name, description: 'hospitals' });
        expect(created).toEqual({
          id: expect.any(String),
          name,
          description: 'hospitals',
          createdAt: expect.any(Date),
        });
        expect(await db.federations.get(created.id)).toEqual(created);
        expect(await db.federations.list()).toContainEqual(created);
        await rejectsWith(db.federations.create({ name }), ErrorCode.CONFLICT);
        await rejectsWith(db.federations.get('no-such-federation'), ErrorCode.NOT_FOUND);
      });
    });

    describe('clients', () => {
      it('issues a token that authenticates, stored only as its sha256', async () => {
        const federation = await db.federations.create({ name: unique('fed') });
        const { client, token } = await db.clients.issueToken({
          federationId: federation.id,
          organisation: 'St. Elsewhere',
          label: 'ward 3',
        });
        expect(token).toMatch(/^tsr_[A-Za-z0-9_-]{43}$/);
        expect(client).toEqual({
          id: expect.any(String),
          federationId: federation.id,
          organisation: 'St. Elsewhere',
          label: 'ward 3',
          createdAt: expect.any(Date),
          revokedAt: null,
          lastSeenAt: null,
        });
        expect(await db.clients.authenticate(token)).toEqual(client);

        const [stored] = await db.prisma.client.findMany({
          where: { id: client.id },
          select: { tokenHash: true },
        });
        expect(stored?.tokenHash).toBe(hashToken(token));
        expect(stored?.tokenHash).toBe(sha256(token));
        expect(stored?.tokenHash).not.toBe(token);

        // Neither the token nor its random part appears in any table.
        const secret = token.slice('tsr_'.length);
        for (const table of [
          'Federation',
          'Client',
          'Run',
          'Round',
          'ClientUpdate',
          'Checkpoint',
        ]) {
          const rows = await db.prisma.$queryRawUnsafe<{ row: string }[]>(
            `SELECT to_jsonb(t)::text AS row FROM "${table}" t`,
          );
          for (const { row } of rows) expect(row).not.toContain(secret);
        }
      });

      it('returns null for unknown, malformed and revoked tokens', async () => {
        const federation = await db.federations.create({ name: unique('fed') });
        const { client, token } = await db.clients.issueToken({
          federationId: federation.id,
          organisation: 'org',
        });
        expect(await db.clients.authenticate(`tsr_${randomBytes(32).toString('base64url')}`)).toBe(
          null,
        );
        expect(await db.clients.authenticate('')).toBeNull();
        expect(await db.clients.authenticate('not-a-token')).toBeNull();
        expect(await db.clients.authenticate(`${token}x`)).toBeNull();

        const revoked = await db.clients.revoke(client.id);
        expect(revoked.revokedAt).toBeInstanceOf(Date);
        expect(await db.clients.authenticate(token)).toBeNull();
        // Revoking twice keeps the first time.
        expect((await db.clients.revoke(client.id)).revokedAt).toEqual(revoked.revokedAt);
      });

      it('lists a federation’s clients and records when one was last seen', async () => {
        const federation = await db.federations.create({ name: unique('fed') });
        const a = await db.clients.issueToken({ federationId: federation.id, organisation: 'a' });
        const b = await db.clients.issueToken({ federationId: federation.id, organisation: 'b' });
        await db.clients.revoke(b.client.id);
        expect((await db.clients.list(federation.id)).map((client) => client.id)).toEqual([
          a.client.id,
          b.client.id,
        ]);
        const before = Date.now();
        const touched = await db.clients.touch(a.client.id);
        expect(touched.lastSeenAt?.getTime()).toBeGreaterThanOrEqual(before - 1000);
      });

      it('NOT_FOUND for unknown federations and clients', async () => {
        await rejectsWith(
          db.clients.issueToken({ federationId: 'nope', organisation: 'org' }),
          ErrorCode.NOT_FOUND,
        );
        await rejectsWith(db.clients.list('nope'), ErrorCode.NOT_FOUND);
        await rejectsWith(db.clients.revoke('nope'), ErrorCode.NOT_FOUND);
        await rejectsWith(db.clients.touch('nope'), ErrorCode.NOT_FOUND);
      });
    });

    describe('runs', () => {
      it('creates a run with its whole config and reads it back unchanged', async () => {
        const federation = await db.federations.create({ name: unique('fed') });
        const runConfig = config({ clientsPerRound: null, fractionFit: 0.5, learningRate: 0.001 });
        const run = await db.runs.create({
          federationId: federation.id,
          name: 'baseline',
          config: runConfig,
        });
        expect(run).toEqual({
          id: expect.any(String),
          federationId: federation.id,
          name: 'baseline',
          status: 'created',
          // The model names its built-in task, stored (by the migration) and resolved here.
          config: {
            ...runConfig,
            task: {
              name: 'mnist-mlp',
              version: 1,
              sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
            },
          },
          currentRound: 0,
          origin: 'live',
          sourceRunId: null,
          keptUpdateBytes: 0,
          updatesTruncatedAtRound: null,
          seedDerivation: 2,
          statistics: null,
          resolvedTask: null,
          error: null,
          endReason: null,
          createdAt: expect.any(Date),
          startedAt: null,
          finishedAt: null,
        });
        expect(await db.runs.get(run.id)).toEqual(run);
        expect(await db.runs.list({ federationId: federation.id })).toEqual([run]);
        // Secure aggregation's settings are stored and read back as given (defaults filled in).
        const secure = await db.runs.create({
          federationId: federation.id,
          config: config({ minClients: 2, secureAggregation: { clipRange: 0.25 } }),
        });
        expect((await db.runs.get(secure.id)).config.secureAggregation).toEqual({
          clipRange: 0.25,
          maxExamplesPerClient: 10_000,
          thresholdFraction: 2 / 3,
          stepDeadlineMs: 30_000,
        });
        expect(await db.runs.list()).toContainEqual(run);
        const unnamed = await db.runs.create({ federationId: federation.id, config: config() });
        expect(unnamed.name).toBe('mlp/fedavg');
      });

      it.each<[string, Record<string, unknown>]>([
        ['config.rounds', { rounds: 0 }],
        ['config.rounds', { rounds: 1.5 }],
        ['config.rounds', { rounds: undefined }],
        ['config.clientsPerRound', { clientsPerRound: 0 }],
        ['config.fractionFit', { fractionFit: 1.5 }],
        ['config.fractionFit', { fractionFit: 0 }],
        ['config.minClients', { minClients: 0 }],
        ['config.clientsPerRound', { minClients: 4, clientsPerRound: 3 }],
        ['config.roundDeadlineMs', { roundDeadlineMs: -1 }],
        ['config.localEpochs', { localEpochs: 0 }],
        ['config.batchSize', { batchSize: 2 ** 31 }],
        ['config.learningRate', { learningRate: 0 }],
        ['config.learningRate', { learningRate: Number.NaN }],
        ['config.seed', { seed: -1 }],
        ['config.model', { model: '' }],
        ['config.strategy', { strategy: '  ' }],
        ['config.strategyOptions.mu', { strategyOptions: { mu: Number.POSITIVE_INFINITY } }],
        ['config.data', { data: [] }],
        ['config.keepUpdates', { keepUpdates: 'yes' }],
        ['config.updateStorageLimitMb', { updateStorageLimitMb: -1 }],
      ])('refuses a bad %s with INVALID_ARGUMENT naming it', async (field, overrides) => {
        const federation = await db.federations.create({ name: unique('fed') });
        const error = await rejectsWith(
          db.runs.create({
            federationId: federation.id,
            config: config(overrides as Partial<RunConfigInput>),
          }),
          ErrorCode.INVALID_ARGUMENT,
        );
        expect(error.message).toContain(field);
        expect(error).toMatchObject({ data: { field } });
        expect(await db.runs.list({ federationId: federation.id })).toEqual([]);
      });

      it('fills in the schema defaults, and refuses a config that is not an object', async () => {
        const federation = await db.federations.create({ name: unique('fed') });
        const run = await db.runs.create({
          federationId: federation.id,
          config: { model: 'fedavg-2nn', rounds: 3 },
        });
        expect(run.config).toEqual({
          task: { name: 'mnist-2nn', version: 1, sha256: expect.any(String) },
          model: 'fedavg-2nn',
          strategy: 'fedavg',
          strategyOptions: {},
          rounds: 3,
          clientsPerRound: null,
          fractionFit: null,
          minClients: 1,
          roundDeadlineMs: 600_000,
          localEpochs: 1,
          batchSize: 10,
          learningRate: 0.05,
          seed: 0,
          data: { dataset: 'mnist' },
          keepUpdates: false,
          updateStorageLimitMb: DEFAULT_UPDATE_STORAGE_LIMIT_MB,
          secureAggregation: null,
          localDp: null,
        });
        const error = await rejectsWith(
          db.runs.create({ federationId: federation.id, config: null as never }),
          ErrorCode.INVALID_ARGUMENT,
        );
        expect(error).toMatchObject({ data: { field: 'config' } });
        // A task that is not stored, or a version it does not have: refused, nothing stored.
        const unknown = await rejectsWith(
          db.runs.create({
            federationId: federation.id,
            config: { task: { name: 'nope' }, rounds: 1 },
          }),
          ErrorCode.INVALID_ARGUMENT,
        );
        expect(unknown).toMatchObject({ data: { field: 'config.task' } });
        const version = await rejectsWith(
          db.runs.create({
            federationId: federation.id,
            config: { task: { name: 'mnist-2nn', version: 99 }, rounds: 1 },
          }),
          ErrorCode.INVALID_ARGUMENT,
        );
        expect(version).toMatchObject({ data: { field: 'config.task.version' } });
        const wrongHash = await rejectsWith(
          db.runs.create({
            federationId: federation.id,
            config: { task: { name: 'mnist-2nn', sha256: '0'.repeat(64) }, rounds: 1 },
          }),
          ErrorCode.INVALID_ARGUMENT,
        );
        expect(wrongHash).toMatchObject({ data: { field: 'config.task.sha256' } });
        expect(await db.runs.list({ federationId: federation.id })).toEqual([run]);
      });

      it('moves through its statuses, setting startedAt and finishedAt', async () => {
        const { run } = await fixture(0);
        const running = await db.runs.setStatus(run.id, 'running');
        expect(running.status).toBe('running');
        expect(running.startedAt).toBeInstanceOf(Date);
        expect(running.finishedAt).toBeNull();
        expect((await db.runs.listByStatus('running')).map((r) => r.id)).toContain(run.id);
        // Idempotent: a restarted coordinator marks its runs running again.
        expect(await db.runs.setStatus(run.id, 'running')).toEqual(running);

        const failed = await db.runs.setStatus(run.id, 'failed', { error: 'too few clients' });
        expect(failed).toMatchObject({ status: 'failed', error: 'too few clients' });
        expect(failed.startedAt).toEqual(running.startedAt);
        expect(failed.finishedAt).toBeInstanceOf(Date);
        expect((await db.runs.listByStatus('running')).map((r) => r.id)).not.toContain(run.id);
        expect((await db.runs.listByStatus('failed')).map((r) => r.id)).toContain(run.id);
        await rejectsWith(db.runs.setStatus(run.id, 'running'), ErrorCode.CONFLICT);

        const { run: other } = await fixture(0);
        await db.runs.setStatus(other.id, 'running');
        // Paused between rounds: not finished, resumable, and not resumed at a restart.
        const paused = await db.runs.setStatus(other.id, 'paused');
        expect(paused).toMatchObject({ status: 'paused', finishedAt: null });
        expect((await db.runs.listByStatus('running')).map((r) => r.id)).not.toContain(other.id);
        await rejectsWith(db.runs.setStatus(other.id, 'completed'), ErrorCode.CONFLICT);
        const resumed = await db.runs.setStatus(other.id, 'running');
        expect(resumed).toMatchObject({ status: 'running', finishedAt: null, error: null });
        await db.runs.setStatus(other.id, 'completed');
        await rejectsWith(db.runs.setStatus(other.id, 'stopped'), ErrorCode.CONFLICT);
        // Stopped is final, like completed: no resume.
        const { run: third } = await fixture(0);
        await db.runs.setStatus(third.id, 'running');
        const stopped = await db.runs.setStatus(third.id, 'stopped');
        expect(stopped.finishedAt).toBeInstanceOf(Date);
        await rejectsWith(db.runs.setStatus(third.id, 'running'), ErrorCode.CONFLICT);
        await rejectsWith(db.runs.setStatus(third.id, 'paused'), ErrorCode.CONFLICT);
        expect((await db.runs.get(third.id)).status).toBe('stopped');
      });

      it('NOT_FOUND for unknown runs and federations', async () => {
        await rejectsWith(db.runs.get('nope'), ErrorCode.NOT_FOUND);
        await rejectsWith(db.runs.setStatus('nope', 'running'), ErrorCode.NOT_FOUND);
        await rejectsWith(db.runs.list({ federationId: 'nope' }), ErrorCode.NOT_FOUND);
        await rejectsWith(
          db.runs.create({ federationId: 'nope', config: config() }),
          ErrorCode.NOT_FOUND,
        );
      });
    });

    describe('rounds', () => {
      it('commits a round, its updates, its checkpoint and currentRound together', async () => {
        const { run, clients } = await fixture();
        const initial = float32Bytes([0.5, -1.25, 3, 0]);
        const saved = await db.rounds.saveInitialCheckpoint(run.id, initial);
        expect(saved).toMatchObject({ round: 0, sha256: sha256(initial), paramCount: 4 });

        const weights = float32Bytes([1, 2, 3, 4]);
        const commit = roundCommit(run, clients, 1, weights);
        const record = await db.rounds.commit(commit);
        expect(record).toEqual({
          id: expect.any(String),
          runId: run.id,
          number: 1,
          status: 'committed',
          startedAt: commit.startedAt,
          finishedAt: commit.finishedAt,
          durationMs: 750,
          selectedClientIds: commit.selectedClientIds,
          participantClientIds: commit.participantClientIds,
          droppedClientIds: commit.droppedClientIds,
          numExamples: 300,
          trainLoss: 0.25,
          trainAccuracy: 0.875,
          federatedLoss: null,
          federatedAccuracy: null,
          federatedNumExamples: null,
          centralLoss: null,
          centralAccuracy: null,
          centralNumExamples: null,
          centralMetrics: null,
          metrics: { aggregationMs: 12.5 },
          outcomes: [],
          privacy: null,
          phases: null,
        });
        expect(await db.rounds.list(run.id)).toEqual([record]);
        expect(await db.rounds.get(run.id, 1)).toEqual(record);
        await rejectsWith(db.rounds.get(run.id, 2), ErrorCode.NOT_FOUND);
        expect((await db.runs.get(run.id)).currentRound).toBe(1);

        const updates = await db.rounds.updates(run.id, 1);
        expect(updates).toEqual(
          commit.updates.map((update) => ({
            ...update,
            id: expect.any(String),
            roundId: record.id,
            round: 1,
            runtime: null,
            backend: null,
            kept: false,
            controlDeltaSha256: null,
          })),
        );

        const checkpoint = await db.rounds.checkpoint(run.id, 1);
        expect(checkpoint).toEqual({
          round: 1,
          weights,
          sha256: sha256(weights),
          paramCount: 4,
          strategyState: null,
        });
        expect(await db.rounds.latestCheckpoint(run.id)).toEqual(checkpoint);
        expect((await db.rounds.checkpoint(run.id, 0)).weights).toEqual(initial);
      });

      it("stores a DP round's privacy record, refuses a malformed one writing nothing, and keeps a run's endReason", async () => {
        const { run, clients } = await fixture();
        await db.rounds.saveInitialCheckpoint(run.id, float32Bytes([0]));
        for (const [privacy, field] of [
          [{ epsilon: Number.NaN }, 'privacy.epsilon'],
          [{ nested: { epsilon: 1 } }, 'privacy.nested'],
          [[1, 2], 'privacy'],
        ] as const) {
          const refused = await rejectsWith(
            db.rounds.commit({
              ...roundCommit(run, clients, 1, float32Bytes([1])),
              privacy: privacy as never,
            }),
            ErrorCode.INVALID_ARGUMENT,
          );
          expect(refused).toMatchObject({ data: { field } });
        }
        expect(await db.rounds.list(run.id)).toEqual([]);
        expect((await db.runs.get(run.id)).currentRound).toBe(0);
        const privacy = {
          mechanism: 'sampled-gaussian',
          epsilon: 1.5,
          delta: 1e-5,
          steps: 1,
          countNoiseStd: null,
          adaptiveClipping: false,
        };
        const record = await db.rounds.commit({
          ...roundCommit(run, clients, 1, float32Bytes([1])),
          privacy,
        });
        expect(record.privacy).toEqual(privacy);
        expect((await db.rounds.get(run.id, 1)).privacy).toEqual(privacy);
        await db.runs.setStatus(run.id, 'running');
        const ended = await db.runs.setStatus(run.id, 'completed', {
          endReason: 'privacy budget: x',
        });
        expect(ended.endReason).toBe('privacy budget: x');
        expect((await db.runs.get(run.id)).endReason).toBe('privacy budget: x');
      });

      it("stores a round's phases in two steps (before and after the commit), refusing bad ones and writing nothing", async () => {
        const { run, clients } = await fixture();
        await db.rounds.saveInitialCheckpoint(run.id, float32Bytes([0]));
        const before = { waitingMs: 5, distributionMs: 40, trainingMs: 1200, aggregationMs: 30 };
        for (const [phases, field] of [
          [{ ...before, trainingMs: -1 }, 'phases.trainingMs'],
          [{ ...before, aggregationMs: 1.5 }, 'phases.aggregationMs'],
          [{ waitingMs: 5, distributionMs: 40, trainingMs: 1200 }, 'phases.aggregationMs'],
          [[1, 2], 'phases'],
        ] as const) {
          const refused = await rejectsWith(
            db.rounds.commit({
              ...roundCommit(run, clients, 1, float32Bytes([1])),
              phases: phases as never,
            }),
            ErrorCode.INVALID_ARGUMENT,
          );
          expect(refused).toMatchObject({ data: { field } });
        }
        expect(await db.rounds.list(run.id)).toEqual([]);
        expect((await db.runs.get(run.id)).currentRound).toBe(0);

        const committed = await db.rounds.commit({
          ...roundCommit(run, clients, 1, float32Bytes([1])),
          phases: before,
        });
        expect(committed.phases).toEqual({
          ...before,
          commitMs: null,
          evaluationMs: null,
          centralEvaluationMs: null,
        });

        const bad = await rejectsWith(
          db.rounds.recordPhases(run.id, 1, { commitMs: 80, evaluationMs: Number.NaN }),
          ErrorCode.INVALID_ARGUMENT,
        );
        expect(bad).toMatchObject({ data: { field: 'phases.evaluationMs' } });
        expect((await db.rounds.get(run.id, 1)).phases).toEqual(committed.phases);

        const full = { ...before, commitMs: 80, evaluationMs: 900, centralEvaluationMs: 4_000 };
        expect((await db.rounds.recordPhases(run.id, 1, full)).phases).toEqual(full);
        // A retry writes the same again; the round's other fields are untouched.
        const again = await db.rounds.recordPhases(run.id, 1, full);
        expect(again).toEqual({ ...committed, phases: full });
        expect((await db.rounds.get(run.id, 1)).phases).toEqual(full);

        await rejectsWith(
          db.rounds.recordPhases(run.id, 2, { commitMs: 1, evaluationMs: 1 }),
          ErrorCode.NOT_FOUND,
        );
        await db.rounds.commit(roundCommit(run, clients, 2, float32Bytes([2])));
        const withoutPhases = await rejectsWith(
          db.rounds.recordPhases(run.id, 2, { commitMs: 1, evaluationMs: 1 }),
          ErrorCode.INVALID_ARGUMENT,
        );
        expect(withoutPhases).toMatchObject({ data: { field: 'phases' } });
        expect((await db.rounds.get(run.id, 2)).phases).toBeNull();
      });

      it('refuses a round that is not currentRound + 1, writing nothing', async () => {
        const { run, clients } = await fixture();
        await db.rounds.commit(roundCommit(run, clients, 1, float32Bytes([1])));
        const again = await rejectsWith(
          db.rounds.commit(roundCommit(run, clients, 1, float32Bytes([9]))),
          ErrorCode.CONFLICT,
        );
        expect(again.message).toContain('committed round 1 with another checkpoint');
        expect(again).toMatchObject({ data: { field: 'checkpoint' } });
        const ahead = await rejectsWith(
          db.rounds.commit(roundCommit(run, clients, 3, float32Bytes([9]))),
          ErrorCode.CONFLICT,
        );
        expect(ahead.message).toContain('expected 2');
        expect((await db.rounds.list(run.id)).map((round) => round.number)).toEqual([1]);
        expect((await db.runs.get(run.id)).currentRound).toBe(1);
        expect(await db.rounds.latestCheckpoint(run.id)).toMatchObject({
          round: 1,
          weights: float32Bytes([1]),
        });
        await rejectsWith(db.rounds.checkpoint(run.id, 3), ErrorCode.NOT_FOUND);
        expect(await db.prisma.clientUpdate.count({ where: { round: { runId: run.id } } })).toBe(2);
      });

      it('commits a round once when the same commit is retried (an answer lost in an outage)', async () => {
        const { run, clients } = await fixture();
        const commit = roundCommit(run, clients, 1, float32Bytes([1, 2]));
        const first = await db.rounds.commit(commit);
        // The retry of a commit whose COMMIT landed: the round is there, with this checkpoint.
        const retried = await db.rounds.commit(roundCommit(run, clients, 1, float32Bytes([1, 2])));
        expect(retried).toEqual(first);
        // Also after the next round was committed, and after the round was evaluated.
        await db.rounds.recordEvaluation(run.id, 1, {
          federated: { loss: 0.5, accuracy: 0.75, numExamples: 100 },
        });
        await db.rounds.commit(roundCommit(run, clients, 2, float32Bytes([3, 4])));
        expect(await db.rounds.commit(commit)).toMatchObject({
          id: first.id,
          number: 1,
          status: 'evaluated',
        });
        expect((await db.rounds.list(run.id)).map((round) => round.number)).toEqual([1, 2]);
        expect((await db.runs.get(run.id)).currentRound).toBe(2);
        expect(await db.prisma.checkpoint.count({ where: { runId: run.id } })).toBe(2);
        expect(await db.prisma.clientUpdate.count({ where: { round: { runId: run.id } } })).toBe(4);
      });

      it('commits once when the same commit runs twice concurrently (a retry racing its first try)', async () => {
        const { run, clients } = await fixture();
        const results = await Promise.all([
          db.rounds.commit(roundCommit(run, clients, 1, float32Bytes([5]))),
          db.rounds.commit(roundCommit(run, clients, 1, float32Bytes([5]))),
        ]);
        expect(results[0]).toEqual(results[1]);
        expect(await db.rounds.list(run.id)).toHaveLength(1);
        expect(await db.prisma.clientUpdate.count({ where: { round: { runId: run.id } } })).toBe(2);
      });

      it('records an evaluation once: the same values again are a no-op, others a CONFLICT', async () => {
        const { run, clients } = await fixture();
        await db.rounds.commit(roundCommit(run, clients, 1, float32Bytes([1])));
        const federated = { loss: 0.4, accuracy: 0.8, numExamples: 500 };
        const first = await db.rounds.recordEvaluation(run.id, 1, { federated });
        expect(
          await db.rounds.recordEvaluation(run.id, 1, { federated: { ...federated } }),
        ).toEqual(first);
        const changed = await rejectsWith(
          db.rounds.recordEvaluation(run.id, 1, { federated: { ...federated, loss: 0.3 } }),
          ErrorCode.CONFLICT,
        );
        expect(changed).toMatchObject({ data: { field: 'federated' } });
        // Two parts, one of them recorded with other values: refused whole.
        const central = { loss: 0.35, accuracy: 0.85, numExamples: 10_000 };
        const both = await rejectsWith(
          db.rounds.recordEvaluation(run.id, 1, {
            federated: { ...federated, accuracy: 0.9 },
            central,
          }),
          ErrorCode.CONFLICT,
        );
        expect(both).toMatchObject({ data: { field: 'federated' } });
        // Nothing of the refused calls was written.
        expect(await db.rounds.get(run.id, 1)).toMatchObject({
          federatedLoss: 0.4,
          federatedAccuracy: 0.8,
          centralLoss: null,
        });
        const whole = await db.rounds.recordEvaluation(run.id, 1, { central });
        expect(await db.rounds.recordEvaluation(run.id, 1, { federated, central })).toEqual(whole);
      });

      it('lets only one of two concurrent commits of the same round win', async () => {
        const { run, clients } = await fixture();
        const results = await Promise.allSettled([
          db.rounds.commit(roundCommit(run, clients, 1, float32Bytes([1]))),
          db.rounds.commit(roundCommit(run, clients, 1, float32Bytes([2]))),
        ]);
        expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
        const [rejected] = results.filter((result) => result.status === 'rejected');
        expect(rejected?.reason).toMatchObject({ code: ErrorCode.CONFLICT });
        expect(await db.rounds.list(run.id)).toHaveLength(1);
        expect(await db.prisma.clientUpdate.count({ where: { round: { runId: run.id } } })).toBe(2);
      });

      it('leaves nothing behind when the transaction fails midway (unknown client)', async () => {
        const { run, clients } = await fixture();
        await db.rounds.commit(roundCommit(run, clients, 1, float32Bytes([1, 1])));
        const commit = roundCommit(run, clients, 2, float32Bytes([2, 2]));
        // Selected and took part as far as the input says, but no such client exists: the
        // round row is inserted, then the update's foreign key fails.
        commit.selectedClientIds.push('ghost');
        commit.participantClientIds.push('ghost');
        commit.updates.push({ ...at(commit.updates, 0), clientId: 'ghost', arrivalIndex: 2 });
        const error = await rejectsWith(db.rounds.commit(commit), ErrorCode.INVALID_ARGUMENT);
        expect(error.message).toContain('unknown client');

        expect((await db.rounds.list(run.id)).map((round) => round.number)).toEqual([1]);
        expect((await db.runs.get(run.id)).currentRound).toBe(1);
        expect((await db.rounds.latestCheckpoint(run.id))?.round).toBe(1);
        expect(await db.prisma.clientUpdate.count({ where: { round: { runId: run.id } } })).toBe(2);
        // And the same round commits fine once the input is right.
        expect(
          (await db.rounds.commit(roundCommit(run, clients, 2, float32Bytes([2, 2])))).number,
        ).toBe(2);
      });

      it('round-trips checkpoint bytes exactly, with their sha256', async () => {
        const { run } = await fixture(0);
        // Arbitrary bytes (NaN payloads, denormals...) and a view that does not start at 0.
        const backing = randomBytes(4 * 25_000 + 8);
        const weights = new Uint8Array(backing.buffer, backing.byteOffset + 4, 4 * 25_000);
        const saved = await db.rounds.saveInitialCheckpoint(run.id, weights);
        expect(saved.sha256).toBe(sha256(weights));
        const loaded = await db.rounds.checkpoint(run.id, 0);
        expect(loaded.weights).toBeInstanceOf(Uint8Array);
        expect(loaded.weights.constructor).toBe(Uint8Array);
        expect(Buffer.from(loaded.weights).equals(Buffer.from(weights))).toBe(true);
        expect(loaded).toMatchObject({ round: 0, sha256: sha256(weights), paramCount: 25_000 });
      });

      it('keeps latestCheckpoint, shapes and initial checkpoints consistent', async () => {
        const { run, clients } = await fixture();
        expect(await db.rounds.latestCheckpoint(run.id)).toBeNull();
        await db.rounds.saveInitialCheckpoint(run.id, float32Bytes([0, 0]));
        expect((await db.rounds.latestCheckpoint(run.id))?.round).toBe(0);
        // Saving the same initial model again (a retry) is that checkpoint; other weights conflict.
        expect(await db.rounds.saveInitialCheckpoint(run.id, float32Bytes([0, 0]))).toMatchObject({
          round: 0,
          sha256: sha256(float32Bytes([0, 0])),
        });
        const other = await rejectsWith(
          db.rounds.saveInitialCheckpoint(run.id, float32Bytes([0, 1])),
          ErrorCode.CONFLICT,
        );
        expect(other).toMatchObject({ data: { field: 'weights' } });
        expect((await db.rounds.checkpoint(run.id, 0)).weights).toEqual(float32Bytes([0, 0]));
        await rejectsWith(
          db.rounds.saveInitialCheckpoint(run.id, new Uint8Array(3)),
          ErrorCode.INVALID_ARGUMENT,
        );
        await rejectsWith(
          db.rounds.commit(roundCommit(run, clients, 1, float32Bytes([1, 2, 3]))),
          ErrorCode.INVALID_ARGUMENT,
        );
        await db.rounds.commit(roundCommit(run, clients, 1, float32Bytes([1, 2])));
        await db.rounds.commit(roundCommit(run, clients, 2, float32Bytes([3, 4])));
        expect(await db.rounds.latestCheckpoint(run.id)).toMatchObject({
          round: 2,
          weights: float32Bytes([3, 4]),
        });
      });

      it('refuses rounds beyond the run’s configured number', async () => {
        const { run, clients } = await fixture(3, { rounds: 1 });
        await db.rounds.commit(roundCommit(run, clients, 1, float32Bytes([1])));
        await rejectsWith(
          db.rounds.commit(roundCommit(run, clients, 2, float32Bytes([1]))),
          ErrorCode.CONFLICT,
        );
      });

      it('refuses inconsistent commits with INVALID_ARGUMENT naming the field', async () => {
        const { run, clients } = await fixture();
        const base = () => roundCommit(run, clients, 1, float32Bytes([1]));
        const cases: Array<[string, (commit: RoundCommit) => void]> = [
          ['finishedAt', (c) => (c.finishedAt = new Date(c.startedAt.getTime() - 1))],
          ['droppedClientIds', (c) => c.droppedClientIds.push(at(c.participantClientIds, 0))],
          ['participantClientIds', (c) => c.participantClientIds.push('not-selected')],
          ['updates[1].arrivalIndex', (c) => (at(c.updates, 1).arrivalIndex = 0)],
          ['updates[0].sha256', (c) => (at(c.updates, 0).sha256 = 'ABC')],
          ['metrics.loss', (c) => (c.metrics = { loss: Number.NaN })],
          ['checkpoint', (c) => (c.checkpoint = new Uint8Array(0))],
        ];
        for (const [field, mutate] of cases) {
          const commit = base();
          mutate(commit);
          const error = await rejectsWith(db.rounds.commit(commit), ErrorCode.INVALID_ARGUMENT);
          expect(error).toMatchObject({ data: { field } });
        }
        expect(await db.rounds.list(run.id)).toEqual([]);
      });

      it("records each selected client's outcome with its reason, and reads it back", async () => {
        const { run, clients } = await fixture();
        const commit = roundCommit(run, clients, 1, float32Bytes([1]));
        const [first, second, third] = commit.selectedClientIds as [string, string, string];
        commit.outcomes = [
          { clientId: first, outcome: 'updated', code: null, reason: null },
          { clientId: second, outcome: 'updated', code: null, reason: null },
          { clientId: third, outcome: 'failed', code: null, reason: 'ünïcode 😀, "quotes", a; b' },
        ];
        const record = await db.rounds.commit(commit);
        expect(record.outcomes).toEqual(commit.outcomes);
        expect((await db.rounds.get(run.id, 1)).outcomes).toEqual(commit.outcomes);
        expect((await db.rounds.list(run.id))[0]?.outcomes).toEqual(commit.outcomes);
      });

      it('refuses bad outcomes with INVALID_ARGUMENT naming the field, writing nothing', async () => {
        const { run, clients } = await fixture();
        const base = () => {
          const commit = roundCommit(run, clients, 1, float32Bytes([1]));
          const [first, second, third] = commit.selectedClientIds as [string, string, string];
          commit.outcomes = [
            { clientId: first, outcome: 'updated', code: null, reason: null },
            { clientId: second, outcome: 'updated', code: null, reason: null },
            { clientId: third, outcome: 'timed-out', code: null, reason: 'deadline passed' },
          ];
          return commit;
        };
        const outcomeAt = (c: RoundCommit, index: number) => at(c.outcomes ?? [], index);
        const cases: Array<[string, (commit: RoundCommit) => void]> = [
          ['outcomes[2].clientId', (c) => (outcomeAt(c, 2).clientId = 'not-selected')],
          ['outcomes[1].clientId', (c) => (outcomeAt(c, 1).clientId = outcomeAt(c, 0).clientId)],
          // @ts-expect-error: an outcome the database does not know
          ['outcomes[2].outcome', (c) => (outcomeAt(c, 2).outcome = 'vanished')],
          // A dropped client cannot have been aggregated, and a participant cannot have failed.
          ['outcomes[2].outcome', (c) => (outcomeAt(c, 2).outcome = 'updated')],
          ['outcomes[0].outcome', (c) => (outcomeAt(c, 0).outcome = 'failed')],
          ['outcomes[2].reason', (c) => (outcomeAt(c, 2).reason = 'x'.repeat(501))],
          ['outcomes[2].reason', (c) => (outcomeAt(c, 2).reason = 'a\u0000b')],
          ['outcomes[2].code', (c) => (outcomeAt(c, 2).code = 'C'.repeat(65))],
        ];
        for (const [field, mutate] of cases) {
          const commit = base();
          mutate(commit);
          const error = await rejectsWith(db.rounds.commit(commit), ErrorCode.INVALID_ARGUMENT);
          expect(error).toMatchObject({ data: { field } });
        }
        expect(await db.rounds.list(run.id)).toEqual([]);
        expect((await db.runs.get(run.id)).currentRound).toBe(0);
      });

      it('records federated and central evaluations', async () => {
        const { run, clients } = await fixture();
        await db.rounds.commit(roundCommit(run, clients, 1, float32Bytes([1])));
        const federated = await db.rounds.recordEvaluation(run.id, 1, {
          federated: { loss: 0.4, accuracy: 0.8, numExamples: 500 },
        });
        expect(federated).toMatchObject({
          status: 'evaluated',
          federatedLoss: 0.4,
          federatedAccuracy: 0.8,
          federatedNumExamples: 500,
          centralLoss: null,
        });
        await db.rounds.recordEvaluation(run.id, 1, {
          central: { loss: 0.35, accuracy: 0.85, numExamples: 10_000 },
        });
        const [round] = await db.rounds.list(run.id);
        expect(round).toMatchObject({
          status: 'evaluated',
          federatedLoss: 0.4,
          federatedAccuracy: 0.8,
          federatedNumExamples: 500,
          centralLoss: 0.35,
          centralAccuracy: 0.85,
          centralNumExamples: 10_000,
        });
        await rejectsWith(
          db.rounds.recordEvaluation(run.id, 1, {
            central: { loss: 0.1, accuracy: 1.5, numExamples: 1 },
          }),
          ErrorCode.INVALID_ARGUMENT,
        );
        await rejectsWith(
          db.rounds.recordEvaluation(run.id, 2, {
            federated: { loss: 0.1, accuracy: 0.5, numExamples: 1 },
          }),
          ErrorCode.NOT_FOUND,
        );
      });

      it('NOT_FOUND for unknown runs, rounds and checkpoints', async () => {
        const { run, clients } = await fixture();
        await rejectsWith(db.rounds.list('nope'), ErrorCode.NOT_FOUND);
        await rejectsWith(db.rounds.latestCheckpoint('nope'), ErrorCode.NOT_FOUND);
        await rejectsWith(db.rounds.checkpoint('nope', 0), ErrorCode.NOT_FOUND);
        await rejectsWith(db.rounds.checkpoint(run.id, 0), ErrorCode.NOT_FOUND);
        await rejectsWith(db.rounds.updates(run.id, 1), ErrorCode.NOT_FOUND);
        await rejectsWith(
          db.rounds.saveInitialCheckpoint('nope', float32Bytes([1])),
          ErrorCode.NOT_FOUND,
        );
        await rejectsWith(
          db.rounds.commit({ ...roundCommit(run, clients, 1, float32Bytes([1])), runId: 'nope' }),
          ErrorCode.NOT_FOUND,
        );
        expect(await db.rounds.list(run.id)).toEqual([]);
      });

      /** roundCommit with real update bytes (2 parameters each) and the clients' runtimes. */
      function keptCommit(run: RunRecord, clients: ClientRecord[], round: number): RoundCommit {
        const commit = roundCommit(run, clients, round, float32Bytes([round, -round]));
        return {
          ...commit,
          updates: commit.updates.map((update, index) => {
            const weights = float32Bytes([round + index, index - round]);
            return {
              ...update,
              sizeBytes: weights.byteLength,
              sha256: sha256(weights),
              weights,
              runtime: index === 0 ? 'browser' : 'node',
              backend: index === 0 ? 'webgpu' : 'wasm',
            };
          }),
        };
      }

      it('keeps update bytes for a run with keepUpdates and gives them back in arrival order', async () => {
        const { run, clients } = await fixture(3, { keepUpdates: true });
        await db.rounds.saveInitialCheckpoint(run.id, float32Bytes([0, 0]));
        const commit = keptCommit(run, clients, 1);
        await db.rounds.commit(commit);
        const kept = await db.rounds.updatesWithWeights(run.id, 1);
        expect(kept).toEqual(
          commit.updates.map(({ clientId, arrivalIndex, numExamples, sha256, weights }) => ({
            clientId,
            arrivalIndex,
            numExamples,
            sha256,
            weights,
            controlDelta: null,
          })),
        );
        const listed = await db.rounds.updates(run.id, 1);
        expect(listed.map((u) => [u.runtime, u.backend, u.kept])).toEqual([
          ['browser', 'webgpu', true],
          ['node', 'wasm', true],
        ]);
        expect((await db.runs.get(run.id)).keptUpdateBytes).toBe(16);
        expect((await db.rounds.allUpdates(run.id)).map((u) => u.round)).toEqual([1, 1]);
      });

      it("keeps SCAFFOLD's Δc_i with a kept update, hashed, counted against the storage limit, and checked on the way out", async () => {
        const { run, clients } = await fixture(3, { keepUpdates: true });
        await db.rounds.saveInitialCheckpoint(run.id, float32Bytes([0, 0]));
        const deltaOf = (index: number) => float32Bytes([0.5 + index, -index]);
        const base = keptCommit(run, clients, 1);
        const withDeltas = {
          ...base,
          updates: base.updates.map((update, index) => ({
            ...update,
            controlDelta: deltaOf(index),
          })),
        };

        // A Δc_i of another length than the model is refused, and nothing is written.
        const short = {
          ...withDeltas,
          updates: withDeltas.updates.map((update, index) =>
            index === 1 ? { ...update, controlDelta: float32Bytes([1]) } : update,
          ),
        };
        const refused = await rejectsWith(db.rounds.commit(short), ErrorCode.INVALID_ARGUMENT);
        expect(refused.message).toMatch(/updates\[1\]\.controlDelta has 1 values/);
        expect(await db.rounds.list(run.id)).toEqual([]);
        expect((await db.runs.get(run.id)).keptUpdateBytes).toBe(0);

        await db.rounds.commit(withDeltas);
        const kept = await db.rounds.updatesWithWeights(run.id, 1);
        expect(kept.map((update) => update.controlDelta)).toEqual([deltaOf(0), deltaOf(1)]);
        // Alone, without the updates' bytes (what the REST route serves).
        expect(await db.rounds.controlDeltas(run.id, 1)).toEqual(
          kept.map(({ clientId, arrivalIndex, controlDelta }) => ({
            clientId,
            arrivalIndex,
            controlDelta,
          })),
        );
        const rows = await db.prisma.clientUpdate.findMany({
          where: { round: { runId: run.id } },
          orderBy: { arrivalIndex: 'asc' },
          select: { controlDeltaSha256: true },
        });
        expect(rows.map((row) => row.controlDeltaSha256)).toEqual([
          sha256(deltaOf(0)),
          sha256(deltaOf(1)),
        ]);
        // The update records carry the hash (what a reader over REST checks the bytes by).
        for (const records of [
          await db.rounds.updates(run.id, 1),
          await db.rounds.allUpdates(run.id),
        ]) {
          expect(records.map((record) => record.controlDeltaSha256)).toEqual([
            sha256(deltaOf(0)),
            sha256(deltaOf(1)),
          ]);
        }
        // Two updates of 8 bytes and two Δc_i of 8 bytes.
        expect((await db.runs.get(run.id)).keptUpdateBytes).toBe(32);

        // A stored Δc_i that no longer hashes to its record is named, with its round.
        await db.prisma.$executeRawUnsafe(
          `UPDATE "ClientUpdate" SET "controlDelta" = $1 WHERE "clientId" = $2 AND "roundId" IN (SELECT "id" FROM "Round" WHERE "runId" = $3)`,
          Buffer.from(float32Bytes([9, 9])),
          at(withDeltas.updates, 1).clientId,
          run.id,
        );
        const corrupt = await rejectsWith(
          db.rounds.updatesWithWeights(run.id, 1),
          ErrorCode.INTERNAL,
        );
        expect(corrupt.message).toMatch(/controlDelta of update 1 of round 1 of run .* is corrupt/);
        const corruptAlone = await rejectsWith(
          db.rounds.controlDeltas(run.id, 1),
          ErrorCode.INTERNAL,
        );
        expect(corruptAlone.message).toBe(corrupt.message);
        // A round not committed, and a run that is not there, are NOT_FOUND.
        await rejectsWith(db.rounds.controlDeltas(run.id, 2), ErrorCode.NOT_FOUND);
        await rejectsWith(db.rounds.controlDeltas(randomUUID(), 1), ErrorCode.NOT_FOUND);
      });

      it('keeps no Δc_i for a run without keepUpdates', async () => {
        const { run, clients } = await fixture();
        const base = keptCommit(run, clients, 1);
        await db.rounds.commit({
          ...base,
          updates: base.updates.map((update) => ({
            ...update,
            controlDelta: float32Bytes([1, 2]),
          })),
        });
        expect(
          await db.prisma.clientUpdate.count({
            where: {
              round: { runId: run.id },
              OR: [{ controlDelta: { not: null } }, { controlDeltaSha256: { not: null } }],
            },
          }),
        ).toBe(0);
        const refused = await rejectsWith(db.rounds.controlDeltas(run.id, 1), ErrorCode.NOT_FOUND);
        expect(refused.message).toContain('it was created without keepUpdates');
      });

      it('stores large kept updates over several INSERTs in one transaction, hashing bytes sent without a sha256', async () => {
        // 9 MB updates, each in an INSERT of its own: the round takes several statements.
        const params = 9 * 1024 * 256;
        const bytesOf = (seed: number) => {
          const values = new Float32Array(params);
          for (let i = 0; i < params; i += 997) values[i] = seed + i;
          return new Uint8Array(values.buffer);
        };
        const { run, clients } = await fixture(3, { keepUpdates: true });
        await db.rounds.saveInitialCheckpoint(run.id, bytesOf(0));
        const base = roundCommit(run, clients, 1, bytesOf(10));
        const withBytes = (commit: RoundCommit): RoundCommit => ({
          ...commit,
          updates: commit.updates.map(({ sha256: _left, ...update }, index) => ({
            ...update,
            sizeBytes: params * 4,
            weights: bytesOf(index + 1),
          })),
          strategyState: bytesOf(20),
        });

        // The second INSERT fails (no such client): the first one's row goes with the round.
        const ghost = withBytes(base);
        ghost.selectedClientIds = [...ghost.selectedClientIds, 'ghost'];
        ghost.participantClientIds = [...ghost.participantClientIds, 'ghost'];
        ghost.updates = [
          ...ghost.updates,
          { ...at(ghost.updates, 0), clientId: 'ghost', arrivalIndex: 2 },
        ];
        await rejectsWith(db.rounds.commit(ghost), ErrorCode.INVALID_ARGUMENT);
        expect(await db.prisma.clientUpdate.count({ where: { round: { runId: run.id } } })).toBe(0);
        expect((await db.runs.get(run.id)).keptUpdateBytes).toBe(0);

        const commit = withBytes(base);
        await db.rounds.commit(commit);
        const kept = await db.rounds.updatesWithWeights(run.id, 1);
        expect(kept.map((update) => update.sha256)).toEqual(
          commit.updates.map((update) => sha256(update.weights ?? new Uint8Array())),
        );
        for (const [index, update] of kept.entries()) {
          expect(Buffer.from(update.weights).equals(Buffer.from(bytesOf(index + 1)))).toBe(true);
        }
        const checkpoint = await db.rounds.checkpoint(run.id, 1);
        expect(checkpoint.sha256).toBe(sha256(bytesOf(10)));
        expect(Buffer.from(checkpoint.strategyState ?? []).equals(Buffer.from(bytesOf(20)))).toBe(
          true,
        );
        expect((await db.runs.get(run.id)).keptUpdateBytes).toBe(2 * params * 4);
      });

      it('records runtime and backend but no bytes for a run without keepUpdates', async () => {
        const { run, clients } = await fixture();
        await db.rounds.commit(keptCommit(run, clients, 1));
        expect((await db.rounds.updates(run.id, 1)).map((u) => [u.backend, u.kept])).toEqual([
          ['webgpu', false],
          ['wasm', false],
        ]);
        const error = await rejectsWith(
          db.rounds.updatesWithWeights(run.id, 1),
          ErrorCode.NOT_FOUND,
        );
        expect(error.message).toMatch(/created without keepUpdates/);
        expect(
          await db.prisma.clientUpdate.count({
            where: { round: { runId: run.id }, weights: { not: null } },
          }),
        ).toBe(0);
      });

      it('stops keeping bytes at the round that would pass the storage limit, and says so', async () => {
        // 0 MiB: the very first round's 16 bytes pass the limit.
        const { run, clients } = await fixture(3, { keepUpdates: true, updateStorageLimitMb: 0 });
        await db.rounds.commit(keptCommit(run, clients, 1));
        await db.rounds.commit(keptCommit(run, clients, 2));
        const after = await db.runs.get(run.id);
        expect(after.updatesTruncatedAtRound).toBe(1);
        expect(after.keptUpdateBytes).toBe(0);
        expect(after.currentRound).toBe(2);
        const error = await rejectsWith(
          db.rounds.updatesWithWeights(run.id, 2),
          ErrorCode.NOT_FOUND,
        );
        expect(error.message).toMatch(/storage limit was reached at round 1/);
      });

      it('refuses update bytes that do not match their sha256, or missing ones, writing nothing', async () => {
        const { run, clients } = await fixture(3, { keepUpdates: true });
        const commit = keptCommit(run, clients, 1);
        const [first, second] = commit.updates;
        if (!first || !second) throw new Error('two updates expected');
        const tampered = { ...commit, updates: [{ ...first, sha256: sha256('x') }, second] };
        const mismatch = await rejectsWith(db.rounds.commit(tampered), ErrorCode.INVALID_ARGUMENT);
        expect(mismatch.message).toMatch(/updates\[0\]\.weights/);
        const { weights: _dropped, ...withoutBytes } = first;
        const missing = await rejectsWith(
          db.rounds.commit({ ...commit, updates: [withoutBytes, second] }),
          ErrorCode.INVALID_ARGUMENT,
        );
        expect(missing.message).toMatch(/updates\[0\]\.weights is required/);
        expect(await db.rounds.list(run.id)).toEqual([]);
        expect((await db.runs.get(run.id)).keptUpdateBytes).toBe(0);
      });

      it('links a replay to its source run and checks the link', async () => {
        const { federation, run } = await fixture();
        const replay = await db.runs.create({
          federationId: federation.id,
          config: config({ strategy: 'fedmedian' }),
          origin: 'replay',
          sourceRunId: run.id,
        });
        expect(replay).toMatchObject({ origin: 'replay', sourceRunId: run.id });
        await rejectsWith(
          db.runs.create({ federationId: federation.id, config: config(), origin: 'replay' }),
          ErrorCode.INVALID_ARGUMENT,
        );
        const other = await db.federations.create({ name: unique('fed') });
        const crossed = await rejectsWith(
          db.runs.create({
            federationId: other.id,
            config: config(),
            origin: 'replay',
            sourceRunId: run.id,
          }),
          ErrorCode.INVALID_ARGUMENT,
        );
        expect(crossed.message).toMatch(/another federation/);
        // Deleting the source keeps the replay, unlinked.
        await db.prisma.run.delete({ where: { id: run.id } });
        expect((await db.runs.get(replay.id)).sourceRunId).toBeNull();
      });

      it('deleting a federation cascades to its clients, runs, rounds and checkpoints', async () => {
        const { federation, run, clients } = await fixture();
        await db.rounds.saveInitialCheckpoint(run.id, float32Bytes([1]));
        await db.rounds.commit(roundCommit(run, clients, 1, float32Bytes([2])));
        await db.prisma.federation.delete({ where: { id: federation.id } });
        await rejectsWith(db.runs.get(run.id), ErrorCode.NOT_FOUND);
        expect(await db.prisma.round.count({ where: { runId: run.id } })).toBe(0);
        expect(await db.prisma.checkpoint.count({ where: { runId: run.id } })).toBe(0);
        expect(await db.prisma.client.count({ where: { federationId: federation.id } })).toBe(0);
        expect(
          await db.prisma.clientUpdate.count({
            where: { clientId: { in: clients.map((c) => c.id) } },
          }),
        ).toBe(0);
      });
    });
  });
});

describe('openDatabase', () => {
  it('refuses contradictory options', async () => {
    await rejectsWith(
      openDatabase({ url: 'postgresql://localhost/x', inMemory: true }),
      ErrorCode.INVALID_ARGUMENT,
    );
    await rejectsWith(openDatabase({ inMemory: true, schema: 'x' }), ErrorCode.INVALID_ARGUMENT);
    await rejectsWith(
      openDatabase({ url: 'postgresql://localhost/x', schema: 'Bad-Name' }),
      ErrorCode.INVALID_ARGUMENT,
    );
    await rejectsWith(openDatabase({ url: 'mysql://localhost/x' }), ErrorCode.INVALID_ARGUMENT);
  });

  it('defaults to PGlite in .tessera/pglite under the cwd without DATABASE_URL', async () => {
    const cwd = process.cwd();
    const dir = await mkdtemp(join(tmpdir(), 'tessera-cwd-'));
    vi.stubEnv('DATABASE_URL', undefined);
    process.chdir(dir);
    try {
      const db = await openDatabase();
      expect(db.kind).toBe('pglite');
      await db.close();
      await db.close(); // idempotent
      expect(existsSync(join(dir, DEFAULT_PGLITE_DIR, 'PG_VERSION'))).toBe(true);
    } finally {
      process.chdir(cwd);
      vi.unstubAllEnvs();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it.runIf(testDatabaseUrl !== undefined && testDatabaseUrl !== '')(
    'honours DATABASE_URL and Prisma’s ?schema= parameter',
    async () => {
      const schema = `tessera_test_${process.pid}_${randomBytes(6).toString('hex')}`;
      const url = new URL(String(testDatabaseUrl));
      url.searchParams.set('schema', schema);
      vi.stubEnv('DATABASE_URL', url.toString());
      const admin = new pg.Client({ connectionString: testDatabaseUrl });
      await admin.connect();
      try {
        const db = await openDatabase();
        expect(db.kind).toBe('postgres');
        await db.federations.create({ name: 'in its schema' });
        await db.close();
        const { rows } = await admin.query<{ count: string }>(
          `SELECT count(*) FROM "${schema}"."Federation"`,
        );
        expect(rows[0]?.count).toBe('1');
      } finally {
        vi.unstubAllEnvs();
        await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        await admin.end();
      }
    },
  );
});
