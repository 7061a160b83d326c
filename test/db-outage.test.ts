// Database outages (issue 12, item 2): a coordinator on the shared PostgreSQL through a TCP
// proxy that resets or black-holes every connection, with real client processes. The run must
// wait out an outage and go on, commit every round exactly once, say so on /healthz and
// /readyz, and end `failed` (stored) only when the outage outlasts the retry bound.
import { Coordinator, type CoordinatorOptions, createLogger } from '@tessera/coordinator';
import {
  type Database,
  isTransientDatabaseError,
  openDatabase,
  type RoundRecord,
  type RunRecord,
  withRetries,
} from '@tessera/db';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { verifyRun } from '@tessera/research';
import pg from 'pg';
import type { Browser } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from './chromium.js';
import { spawnClientProcess } from './coordinator-processes.js';
import { quickRun, waitFor } from './harness.js';
import {
  createTestSchema,
  type ProxyMode,
  postgresTarget,
  startTcpProxy,
  type TcpProxy,
} from './tcp-proxy.js';

const { TEST_DATABASE_URL: databaseUrl } = process.env;
const hasPostgres = databaseUrl !== undefined && databaseUrl !== '';
if (!hasPostgres) {
  console.warn('db-outage.test.ts skipped: set TEST_DATABASE_URL to a PostgreSQL (CI does)');
}

const OUTAGE_MS = 10_000;

interface Federation {
  proxy: TcpProxy;
  db: Database;
  coordinator: Coordinator;
  /** Closes the coordinator and starts another on the same port and database. */
  restart(): Promise<void>;
  logs: string[];
  federationId: string;
  drop(): Promise<void>;
}

/** A coordinator on PostgreSQL through a proxy, with `clients` real client processes connected. */
async function startFederation(
  options: Partial<CoordinatorOptions>,
  clients = 2,
): Promise<Federation> {
  const url = databaseUrl as string;
  const proxy = await startTcpProxy(postgresTarget(url));
  const schema = await createTestSchema(url, proxy);
  const db = await openDatabase({ url: schema.url });
  const logs: string[] = [];
  const start = (port: number) =>
    Coordinator.start({
      db,
      port,
      centralEvaluation: false,
      logger: createLogger('info', (line) => logs.push(line)),
      databaseProbeIntervalMs: 500,
      ...options,
    });
  const coordinator = await start(0);
  const { port } = coordinator;
  const federation = await db.federations.create({ name: `outage ${schema.schema}` });
  // Each client's SIGKILL, run by drop().
  const kills: Array<() => unknown> = [];
  for (let k = 0; k < clients; k++) {
    const { token } = await db.clients.issueToken({
      federationId: federation.id,
      organisation: `org-${k}`,
    });
    spawnClientProcess({
      coordinator: coordinator.url,
      token,
      args: ['--mnist', `${k}/${clients}`, '--max-examples', '300'],
      cleanups: kills,
    });
  }
  await waitFor(
    () => coordinator.registry.list().length === clients,
    'the clients to connect',
    90_000,
  );
  const federationFixture: Federation = {
    proxy,
    db,
    coordinator,
    async restart() {
      await federationFixture.coordinator.close();
      federationFixture.coordinator = await start(port);
    },
    logs,
    federationId: federation.id,
    async drop() {
      for (const kill of kills) kill();
      proxy.setMode('pass');
      await federationFixture.coordinator.close();
      await db.close();
      await proxy.close();
      await schema.drop();
    },
  };
  return federationFixture;
}

/** Creates a run through the REST API (which fills in the config's defaults). */
async function createRun(f: Federation, rounds: number): Promise<RunRecord> {
  const response = await fetch(`${f.coordinator.url}/api/runs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...runConfig, rounds, federationId: f.federationId }),
  });
  expect(response.status).toBe(201);
  return (await response.json()) as RunRecord;
}

async function getJson<T>(url: string): Promise<{ status: number; body: T }> {
  const response = await fetch(url);
  return { status: response.status, body: (await response.json()) as T };
}

interface Health {
  ok: boolean;
  status: 'ok' | 'degraded';
  down: Array<{ component: string; since: string | null; error: string | null }>;
}

/**
 * Cuts the database off (`mode`) for OUTAGE_MS, checking meanwhile that /healthz says degraded
 * (and since when) and /readyz 503; resolves with when the outage ended.
 */
async function outage(f: Federation, mode: ProxyMode): Promise<number> {
  const startedAt = Date.now();
  f.proxy.setMode(mode);
  const degraded = await waitFor(
    async () => {
      const health = await getJson<Health>(`${f.coordinator.url}/healthz`);
      return health.body.status === 'degraded' && health;
    },
    '/healthz to say degraded',
    OUTAGE_MS,
  );
  expect(degraded.status).toBe(200);
  expect(degraded.body).toMatchObject({ ok: false, down: [{ component: 'database' }] });
  const since = Date.parse(degraded.body.down[0]?.since ?? '');
  expect(since).toBeGreaterThanOrEqual(startedAt - 1000);
  expect((await fetch(`${f.coordinator.url}/readyz`)).status).toBe(503);
  if (mode === 'reset') {
    // REST is not retried: the caller hears 503 UNAVAILABLE with Retry-After, never a 500.
    const response = await fetch(`${f.coordinator.url}/api/runs`);
    expect(response.status).toBe(503);
    expect(response.headers.get('retry-after')).toBe('5');
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('UNAVAILABLE');
  }
  const left = OUTAGE_MS - (Date.now() - startedAt);
  if (left > 0) await new Promise((resolve) => setTimeout(resolve, left));
  f.proxy.setMode('pass');
  return Date.now();
}

/** Every round 1..n committed exactly once, each checkpoint replayed bit-identically. */
async function expectCommittedOnce(f: Federation, runId: string, rounds: number): Promise<void> {
  const records = await f.db.rounds.list(runId);
  expect(records.map((record) => record.number)).toEqual(
    Array.from({ length: rounds }, (_, k) => k + 1),
  );
  const checkpoints = await f.db.rounds.checkpointHashes(runId);
  expect(checkpoints.map((checkpoint) => checkpoint.round)).toEqual(
    Array.from({ length: rounds + 1 }, (_, k) => k),
  );
  for (const record of records) {
    expect(record.status).toBe('evaluated');
    expect((await f.db.rounds.updates(runId, record.number)).length).toBe(
      record.participantClientIds.length,
    );
  }
  const report = await verifyRun(f.db, runId);
  expect(report.identical).toBe(true);
  expect(report.checks).toHaveLength(rounds);
}

const runConfig = { ...quickRun, minClients: 2, keepUpdates: true, roundDeadlineMs: 60_000 };

describe.skipIf(!hasPostgres)('database outages, through a TCP proxy to PostgreSQL', () => {
  let f: Federation;

  beforeAll(async () => {
    f = await startFederation({
      databaseRetry: { retryForMs: 60_000, maxDelayMs: 1_000, attemptTimeoutMs: 3_000 },
    });
  });
  afterEach(() => f?.proxy.setMode('pass'));
  afterAll(async () => {
    await f?.drop();
  });

  /** Runs `rounds` rounds, calling `during(round, phase)` as each round starts and commits. */
  async function runWith(
    rounds: number,
    during: (event: { round: number; phase: 'started' | 'committed' }) => void,
  ): Promise<{
    run: RunRecord;
    committedAt: Map<number, number>;
    evaluatedAt: Map<number, number>;
  }> {
    const created = await createRun(f, rounds);
    const committedAt = new Map<number, number>();
    const evaluatedAt = new Map<number, number>();
    const onStarted = (e: { runId: string; round: number }) => {
      if (e.runId === created.id) during({ round: e.round, phase: 'started' });
    };
    const onCommitted = (e: { runId: string; round: number }) => {
      if (e.runId !== created.id) return;
      committedAt.set(e.round, Date.now());
      during({ round: e.round, phase: 'committed' });
    };
    const onEvaluated = (e: { runId: string; round: number }) => {
      if (e.runId === created.id) evaluatedAt.set(e.round, Date.now());
    };
    f.coordinator.on('round-started', onStarted);
    f.coordinator.on('round-committed', onCommitted);
    f.coordinator.on('round-evaluated', onEvaluated);
    try {
      const finished = new Promise<{ status: string; error?: string }>((resolve) =>
        f.coordinator.on('run-finished', (e) => {
          if (e.runId === created.id) resolve(e);
        }),
      );
      await f.coordinator.startRun(created.id);
      expect(await finished).toMatchObject({ status: 'completed' });
    } finally {
      f.coordinator.off('round-started', onStarted);
      f.coordinator.off('round-committed', onCommitted);
      f.coordinator.off('round-evaluated', onEvaluated);
    }
    return { run: await f.db.runs.get(created.id), committedAt, evaluatedAt };
  }

  it('waits out connection resets during a commit, then commits the round once', async () => {
    let ended: Promise<number> | undefined;
    const { run, committedAt } = await runWith(3, ({ round, phase }) => {
      // Round 2's commit comes a second or two after it starts: inside the outage.
      if (round === 2 && phase === 'started') ended = outage(f, 'reset');
    });
    const endedAt = await (ended as Promise<number>);
    expect(committedAt.get(2)).toBeGreaterThanOrEqual(endedAt);
    expect(run.status).toBe('completed');
    await expectCommittedOnce(f, run.id, 3);
    expect(f.logs.some((line) => line.includes('database unavailable; retrying'))).toBe(true);
    expect(f.logs.some((line) => line.includes('database back'))).toBe(true);
    expect(f.logs.some((line) => line.includes('run failed'))).toBe(false);
    const after = await getJson<Health>(`${f.coordinator.url}/healthz`);
    expect(after.body).toMatchObject({ ok: true, status: 'ok', down: [] });
    expect((await fetch(`${f.coordinator.url}/readyz`)).status).toBe(200);
  }, 180_000);

  it('waits out connection resets during an evaluation record, then records it once', async () => {
    let ended: Promise<number> | undefined;
    const { run, evaluatedAt } = await runWith(3, ({ round, phase }) => {
      // Right after round 2's commit: its evaluation record is written inside the outage.
      if (round === 2 && phase === 'committed') ended = outage(f, 'reset');
    });
    const endedAt = await (ended as Promise<number>);
    expect(evaluatedAt.get(2)).toBeGreaterThanOrEqual(endedAt);
    await expectCommittedOnce(f, run.id, 3);
    const round2 = (await f.db.rounds.get(run.id, 2)) as RoundRecord;
    expect(round2.federatedNumExamples).toBeGreaterThan(0);
  }, 180_000);

  it('waits out a black-holed database (nothing answers) during a commit', async () => {
    let ended: Promise<number> | undefined;
    const { run, committedAt } = await runWith(3, ({ round, phase }) => {
      if (round === 2 && phase === 'started') ended = outage(f, 'blackhole');
    });
    const endedAt = await (ended as Promise<number>);
    expect(committedAt.get(2)).toBeGreaterThanOrEqual(endedAt);
    await expectCommittedOnce(f, run.id, 3);
  }, 180_000);
});

/** Resets every database connection as round 2 of `runId` starts (once). */
function cutAtRound2(f: Federation, runId: string): void {
  const onStarted = (e: { runId: string; round: number }) => {
    if (e.runId !== runId || e.round !== 2) return;
    f.coordinator.off('round-started', onStarted);
    f.proxy.setMode('reset');
  };
  f.coordinator.on('round-started', onStarted);
}

const count = (lines: string[], text: string) => lines.filter((line) => line.includes(text)).length;

describe.skipIf(!hasPostgres)('a database outage longer than the retry bound', () => {
  let f: Federation;

  beforeAll(async () => {
    f = await startFederation({
      databaseRetry: { retryForMs: 3_000, maxDelayMs: 500, attemptTimeoutMs: 2_000 },
    });
  });
  afterAll(async () => {
    await f?.drop();
  });

  it('fails the run, storing the reason once the database is back; stop reaches it meanwhile', async () => {
    const created = await createRun(f, 3);
    cutAtRound2(f, created.id);
    const finished = new Promise<{ status: string; error?: string }>((resolve) =>
      f.coordinator.on('run-finished', (e) => {
        if (e.runId === created.id) resolve(e);
      }),
    );
    await f.coordinator.startRun(created.id);
    // The commit gives up after the 3 s bound: the run failed. Its write of `failed` is
    // retried for the bound too, and gives up as well while the outage lasts...
    await waitFor(
      () => f.logs.some((line) => line.includes('run failed')),
      'the run to fail',
      60_000,
    );
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    // ...and the engine is still registered, trying again (before: it was gone while the
    // database still said `running`, and stop answered 409 "not running").
    expect(f.coordinator.isRunning(created.id)).toBe(true);
    expect(f.logs.some((line) => line.includes('could not store that the run failed'))).toBe(true);
    // An admin's stop reaches the run (not 409 "not running") and waits for the database.
    const stopped = f.coordinator.stopRun(created.id);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    f.proxy.setMode('pass');
    await stopped;
    const event = await finished;
    expect(event).toMatchObject({ status: 'failed' });
    expect(event.error).toContain('database unavailable');
    const run = await f.db.runs.get(created.id);
    expect(run.status).toBe('failed');
    expect(run.error).toContain('database unavailable');
    expect(f.coordinator.isRunning(created.id)).toBe(false);
    // Round 1 stays committed once; round 2 never was.
    expect((await f.db.rounds.list(created.id)).map((round) => round.number)).toEqual([1]);
  }, 180_000);

  it('leaves a run it could not mark failed to the next coordinator, which resumes it', async () => {
    const created = await createRun(f, 3);
    const failedBefore = count(f.logs, 'could not store that the run failed; trying again');
    cutAtRound2(f, created.id);
    await f.coordinator.startRun(created.id);
    await waitFor(
      () => count(f.logs, 'could not store that the run failed; trying again') > failedBefore,
      'the failed write to give up once',
      60_000,
    );
    // Shutting down during the outage does not wait it out: the waiting calls give up, and
    // the run stays `running` in the database (the next process resumes it).
    await f.coordinator.close();
    f.proxy.setMode('pass');
    expect((await f.db.runs.get(created.id)).status).toBe('running');
    await f.restart();
    // Resumed at start (the run may not have finished yet when this line runs).
    await waitFor(
      async () => (await f.db.runs.get(created.id)).status === 'completed',
      'the resumed run to complete',
      120_000,
    );
    await expectCommittedOnce(f, created.id, 3);
  }, 180_000);
});

describe.skipIf(!hasPostgres)('withRetries, on PostgreSQL through the proxy', () => {
  let proxy: TcpProxy;
  let raw: Database;
  let drop: () => Promise<void>;

  beforeAll(async () => {
    proxy = await startTcpProxy(postgresTarget(databaseUrl as string));
    const schema = await createTestSchema(databaseUrl as string, proxy);
    raw = await openDatabase({ url: schema.url });
    drop = schema.drop;
  });
  afterEach(() => proxy.setMode('pass'));
  afterAll(async () => {
    await raw?.close();
    await proxy?.close();
    await drop?.();
  });

  it('retries a call through connection resets and answers once the database is back', async () => {
    const db = withRetries(raw, { policy: { retryForMs: 60_000, maxDelayMs: 200 } });
    const federation = await db.federations.create({ name: 'through resets' });
    proxy.setMode('reset');
    const pending = db.federations.get(federation.id);
    await waitFor(
      () => db.health.snapshot().status === 'unavailable' && db.health.waitingCalls === 1,
      'the call to wait for the database',
    );
    expect(db.health.snapshot().lastError).toContain('closed the connection');
    proxy.setMode('pass');
    expect(await pending).toEqual(federation);
    expect(db.health.snapshot()).toMatchObject({ status: 'ok', waitingCalls: 0 });
  });

  it('does not retry refusals: a CONFLICT or NOT_FOUND is thrown at the first answer', async () => {
    // A retry would first wait the 30 s initial backoff: longer than this test may take.
    const db = withRetries(raw, { policy: { initialDelayMs: 30_000 }, random: () => 1 });
    await db.federations.create({ name: 'taken' });
    await expect(db.federations.create({ name: 'taken' })).rejects.toMatchObject({
      code: ErrorCode.CONFLICT,
    });
    await expect(db.runs.get('no-such-run')).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    expect(db.health.waitingCalls).toBe(0);
  }, 20_000);

  it('gives up after retryForMs with UNAVAILABLE, naming the call; nothing is written', async () => {
    const db = withRetries(raw, { policy: { retryForMs: 1_000, maxDelayMs: 100 } });
    proxy.setMode('reset');
    const error = await db.federations.create({ name: 'never stored' }).catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: ErrorCode.UNAVAILABLE,
      data: { call: 'federations.create' },
    });
    expect((error as Error).message).toContain('retry bound');
    proxy.setMode('pass');
    expect((await raw.federations.list()).map((f) => f.name)).not.toContain('never stored');
  });

  it('treats an attempt that never answers (black hole) as transient, then succeeds', async () => {
    const db = withRetries(raw, {
      policy: { retryForMs: 60_000, maxDelayMs: 200, attemptTimeoutMs: 1_000 },
    });
    proxy.setMode('blackhole');
    const pending = db.federations.list();
    await waitFor(() => db.health.snapshot().lastError?.includes('did not answer'), 'a timeout');
    proxy.setMode('pass');
    expect(Array.isArray(await pending)).toBe(true);
  });

  it('cancelRetries makes a waiting call give up at once with UNAVAILABLE', async () => {
    const db = withRetries(raw, { policy: { retryForMs: 600_000, maxDelayMs: 200 } });
    proxy.setMode('reset');
    const pending = db.runs.listByStatus('running').catch((e: unknown) => e);
    await waitFor(() => db.health.waitingCalls === 1, 'the call to wait');
    db.cancelRetries();
    expect(await pending).toMatchObject({ code: ErrorCode.UNAVAILABLE });
  });

  it('classifies real errors: lost connections are transient, refusals are not', async () => {
    proxy.setMode('reset');
    const reset = await raw.federations.list().catch((e: unknown) => e);
    proxy.setMode('pass');
    expect(isTransientDatabaseError(reset)).toBe(true);
    const closedPort = await startTcpProxy(postgresTarget(databaseUrl as string));
    await closedPort.close();
    const refused = await new pg.Client({ host: '127.0.0.1', port: closedPort.port, user: 'x' })
      .connect()
      .catch((e: unknown) => e);
    expect(isTransientDatabaseError(refused)).toBe(true);
    const unique = await raw.prisma.federation
      .createMany({ data: [{ name: 'twice' }, { name: 'twice' }] })
      .catch((e: unknown) => e);
    expect(isTransientDatabaseError(unique)).toBe(false);
    const conflict = await raw.federations.create({ name: 'taken' }).catch((e: unknown) => e);
    expect(isTransientDatabaseError(conflict)).toBe(false);
    expect(isTransientDatabaseError(new TesseraError(ErrorCode.UNAVAILABLE, 'down'))).toBe(true);
    expect(isTransientDatabaseError(new Error('something else'))).toBe(false);
  });
});

describe.skipIf(!hasPostgres)('the console during a database outage', () => {
  let f: Federation;
  let browser: Browser;

  beforeAll(async () => {
    f = await startFederation({}, 0);
    browser = await launchChromium('no-gpu');
  });
  afterAll(async () => {
    await browser?.close();
    await f?.drop();
  });

  it('says "database unavailable" in its header while /healthz is degraded, and not after', async () => {
    const page = await (await browser.newContext()).newPage();
    page.setDefaultTimeout(60_000);
    // The fixture's coordinator has no admin token: the console needs no login.
    await page.goto(f.coordinator.url);
    await page.getByTestId('who').waitFor();
    expect(await page.getByTestId('database-down').count()).toBe(0);

    f.proxy.setMode('reset');
    const banner = page.getByTestId('database-down');
    await banner.waitFor();
    expect(await banner.textContent()).toMatch(/database unavailable since .*; runs are waiting/);
    f.proxy.setMode('pass');
    await banner.waitFor({ state: 'detached' });
  }, 120_000);
});
