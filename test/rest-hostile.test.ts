// Hostile REST input against a real coordinator (issue 12, item 4): strings the database cannot
// store, bodies nested or wide enough to hurt, paths that try to leave the static folders, run
// configs that cannot run, and concurrent starts of one run.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { STRATEGY_NAMES } from '@tessera/aggregation';
import { Coordinator, createApi, createLogger } from '@tessera/coordinator';
import { type Database, openDatabase } from '@tessera/db';
import type { WireError } from '@tessera/protocol';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ConsoleFixture, SERVICE_TOKEN, startConsoleFixture } from './console-fixtures.js';
import { waitFor } from './harness.js';

let fx: ConsoleFixture;
let federationId: string;

const runBody = (overrides: Record<string, unknown> = {}) => ({
  federationId,
  model: 'fedavg-2nn',
  rounds: 2,
  minClients: 1,
  roundDeadlineMs: 60_000,
  ...overrides,
});

type ErrorBody = { error: WireError };
const issuesOf = (body: ErrorBody) =>
  (body.error.data?.['issues'] ?? []) as Array<{ field: string; message: string }>;

/** Every row a REST body can create, counted. */
async function rowCounts() {
  const federations = await fx.db.federations.list();
  let clients = 0;
  for (const federation of federations) clients += (await fx.db.clients.list(federation.id)).length;
  return {
    federations: federations.length,
    clients,
    runs: (await fx.db.runs.list()).length,
    users: (await fx.db.accounts.listUsers()).length,
  };
}

beforeAll(async () => {
  fx = await startConsoleFixture();
  const federation = await fx.call<{ id: string }>('POST', '/federations', {
    body: { name: 'hostile' },
  });
  federationId = federation.body.id;
});
afterAll(() => fx?.dispose());

describe('strings the database cannot store', () => {
  it('refuses NUL bytes and lone surrogates in names with a field error, storing nothing', async () => {
    const before = await rowCounts();
    for (const bad of ['St\u0000Mary', 'half \ud800 a pair', '\udc00']) {
      const cases: Array<[string, unknown, string]> = [
        ['/federations', { name: bad }, 'name'],
        ['/federations', { name: 'ok', description: bad }, 'description'],
        [`/federations/${federationId}/clients`, { organisation: bad }, 'organisation'],
        [`/federations/${federationId}/clients`, { organisation: 'ok', label: bad }, 'label'],
        ['/runs', runBody({ name: bad }), 'name'],
        ['/runs', runBody({ data: { dataset: bad } }), 'data.dataset'],
        ['/runs', runBody({ data: { [bad]: 1 } }), `data.${bad}`],
        ['/users', { email: 'a@b.c', role: 'admin', password: `long enough ${bad}` }, 'password'],
      ];
      for (const [path, body, field] of cases) {
        const answer = await fx.call<ErrorBody>('POST', path, { body });
        expect(answer.status, `${path} ${JSON.stringify(body)}`).toBe(400);
        expect(answer.body.error.code).toBe('INVALID_ARGUMENT');
        expect(issuesOf(answer.body).map((issue) => issue.field)).toContain(field);
      }
    }
    expect(await rowCounts()).toEqual(before);
  });
});

describe('the shape of a JSON body', () => {
  it('refuses a body nested 2,000 deep with 400 (no stack overflow), and too many keys with 413', async () => {
    const before = await rowCounts();
    const deep = `${'['.repeat(2000)}${']'.repeat(2000)}`;
    const deepObject = `{"name":"x","description":${'{"a":'.repeat(2000)}1${'}'.repeat(2000)}}`;
    for (const raw of [deep, deepObject, `{"federationId":"x","data":${deep}}`]) {
      for (const path of ['/federations', '/runs', '/auth/login']) {
        const answer = await fx.call<ErrorBody>('POST', path, {
          raw: new TextEncoder().encode(raw),
          contentType: 'application/json',
        });
        expect(answer.status, path).toBe(400);
        expect(answer.body.error.message).toMatch(/nests deeper than 32 levels/);
      }
    }
    const wide = JSON.stringify({
      name: 'x',
      ...Object.fromEntries(Array.from({ length: 5000 }, (_, k) => [`k${k}`, k])),
    });
    const tooWide = await fx.call<ErrorBody>('POST', '/federations', {
      raw: new TextEncoder().encode(wide),
      contentType: 'application/json',
    });
    expect(tooWide.status).toBe(413);
    expect(tooWide.body.error.code).toBe('PAYLOAD_TOO_LARGE');
    expect(tooWide.body.error.message).toMatch(/too many keys/);
    // Brackets and colons inside strings are text, not structure.
    const inString = await fx.call<{ name: string }>('POST', '/federations', {
      body: { name: 'brackets', description: `${'[{'.repeat(900)}:::` },
    });
    expect(inString.status).toBe(201);
    expect(await rowCounts()).toEqual({ ...before, federations: before.federations + 1 });
  });
});

describe('static paths', () => {
  it('answers traversal, NUL and broken encodings under the static routes with 4xx, never 5xx', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-console-dist-'));
    mkdirSync(join(dir, 'assets'));
    writeFileSync(join(dir, 'index.html'), '<!doctype html><title>console</title>');
    writeFileSync(join(dir, 'assets', 'app.js'), 'console.log(1)');
    const server = createServer(createApi(fx.coordinator, { adminToken: 'x', consoleDir: dir }));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      for (const path of [
        '/assets/..%2f..%2fpackage.json',
        '/assets/..%2findex.html',
        '/assets/%2e%2e%2f%2e%2e%2fetc%2fpasswd',
        '/assets/..%5c..%5cpackage.json',
        '/assets/%00',
        '/assets/app.js%00.png',
        '/assets/%E0%A4%A',
        '/assets/%ED%A0%80',
        '/..%2f..%2fpackage.json',
        '/%00',
        '/runs/%00',
        '/join/..%2f..%2fpackage.json',
        '/join/%00',
        '/join/%E0%A4%A',
        '/api/runs/%E0%A4%A',
        '/api/runs/%00',
        '/api/runs/..%2f..%2fusers',
      ]) {
        const answer = await fetch(`${base}${path}`, { headers: { accept: 'text/html' } });
        expect(answer.status, path).toBeGreaterThanOrEqual(400);
        expect(answer.status, path).toBeLessThan(500);
        expect(await answer.text(), path).not.toContain('console.log');
      }
      expect((await fetch(`${base}/assets/app.js`)).status).toBe(200);
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('run configs that cannot run', () => {
  it('refuses strategy options the strategy does not take, at creation, naming the field', async () => {
    const before = await rowCounts();
    for (const [strategyOptions, strategy, field] of [
      [{ mu: 1 }, 'fedavg', 'strategyOptions'],
      [{ beta: 0.9 }, 'trimmed-mean', 'strategyOptions.beta'],
      [{ beta: 'high' }, 'trimmed-mean', 'strategyOptions.beta'],
      [{ momentum: 2 }, 'fedavgm', 'strategyOptions.momentum'],
      [{ beta: 0.1 }, 'fedmedian', 'strategyOptions'],
    ] as const) {
      const answer = await fx.call<ErrorBody>('POST', '/runs', {
        body: runBody({ strategy, strategyOptions }),
      });
      expect(answer.status, `${strategy} ${JSON.stringify(strategyOptions)}`).toBe(400);
      expect(issuesOf(answer.body).map((issue) => issue.field)).toContain(field);
      expect(answer.body.error.message).toContain(strategy);
    }
    // A rule that needs more updates a round than minClients guarantees (Krum: 2f + 3).
    const krum = await fx.call<ErrorBody>('POST', '/runs', {
      body: runBody({ strategy: 'krum', strategyOptions: { f: 1 }, minClients: 4 }),
    });
    expect(krum.status).toBe(400);
    expect(issuesOf(krum.body)).toEqual([
      {
        field: 'minClients',
        message: 'krum aggregates rounds of at least 5 updates; minClients must be at least 5',
      },
    ]);
    expect(await rowCounts()).toEqual(before);
    const good = await fx.call<{ status: string }>('POST', '/runs', {
      body: runBody({ strategy: 'trimmed-mean', strategyOptions: { beta: 0.2 } }),
    });
    expect(good.status).toBe(201);
    const enough = await fx.call('POST', '/runs', {
      body: runBody({ strategy: 'krum', strategyOptions: { f: 1 }, minClients: 5 }),
    });
    expect(enough.status).toBe(201);
  });

  it('publishes each strategy option schema in /api/meta', async () => {
    const meta = await fx.call<{
      strategyOptions: Record<string, { properties?: Record<string, unknown> }>;
    }>('GET', '/meta');
    // Every registered strategy (the list grows with @tessera/aggregation).
    expect(Object.keys(meta.body.strategyOptions)).toEqual(STRATEGY_NAMES);
    expect(STRATEGY_NAMES).toEqual(
      expect.arrayContaining(['fedavg', 'fedavgm', 'fedmedian', 'trimmed-mean', 'krum']),
    );
    expect(meta.body.strategyOptions['trimmed-mean']?.properties?.['beta']).toMatchObject({
      type: 'number',
      minimum: 0,
      exclusiveMaximum: 0.5,
    });
  });

  it('stores the options the strategy ran with, its defaults filled in', async () => {
    const created = await fx.call<{ id: string; config: { strategyOptions: unknown } }>(
      'POST',
      '/runs',
      { body: runBody({ strategy: 'fedavgm', strategyOptions: { momentum: 0.5 } }) },
    );
    expect(created.status).toBe(201);
    // A run created now records its arithmetic, the default one (docs/research.md).
    const expected = { serverLearningRate: 1, momentum: 0.5, arithmetic: 'float64-sequential' };
    expect(created.body.config.strategyOptions).toEqual(expected);
    expect((await fx.db.runs.get(created.body.id)).config.strategyOptions).toEqual(expected);
  });

  it('never marks a run running that cannot start: refused naming the field, it stays created', async () => {
    // Rows written straight into the database, as an older version or a script could have:
    // the start parses them with the same schema as POST /api/runs before anything changes.
    for (const [columns, field] of [
      [{ strategy: 'fedavgm', strategyOptions: { momentum: 2 } }, 'strategyOptions.momentum'],
      [{ strategy: 'trimmed-mean', strategyOptions: { beta: 0.9 } }, 'strategyOptions.beta'],
      [{ strategyOptions: { mu: 1 } }, 'strategyOptions'],
      [{ model: 'retired-net' }, 'model'],
      [{ strategy: 'retired-strategy' }, 'strategy'],
      [{ learningRate: 0 }, 'learningRate'],
      [{ clientsPerRound: 1, minClients: 2 }, 'clientsPerRound'],
      [{ strategy: 'bulyan', strategyOptions: { f: 1 }, minClients: 6 }, 'minClients'],
    ] as const) {
      const id = await storeRunRow(fx.db, federationId, columns);
      const start = await fx.call<ErrorBody>('POST', `/runs/${id}/start`);
      expect(start.status, JSON.stringify(columns)).toBe(400);
      expect(start.body.error.code).toBe('INVALID_ARGUMENT');
      expect(start.body.error.data?.['field']).toBe(field);
      const run = await fx.db.runs.get(id);
      expect(run).toMatchObject({ status: 'created', startedAt: null, error: null });
      expect(fx.coordinator.isRunning(id)).toBe(false);
    }
  });
});

/** A run row as the database's own guard would refuse it, written with Prisma directly. */
async function storeRunRow(
  db: Database,
  federationId: string,
  columns: Record<string, unknown>,
  status: 'created' | 'running' = 'created',
): Promise<string> {
  // Every run row names the task it trains (a foreign key): the 2NN's built-in task here.
  const { sha256: taskSha256 } = await db.tasks.byName('mnist-2nn');
  const row = await db.prisma.run.create({
    data: {
      federationId,
      name: 'stored by an older version',
      model: 'fedavg-2nn',
      taskSha256,
      strategy: 'fedavg',
      strategyOptions: {},
      rounds: 2,
      clientsPerRound: null,
      fractionFit: null,
      minClients: 1,
      roundDeadlineMs: 60_000,
      localEpochs: 1,
      batchSize: 10,
      learningRate: 0.05,
      seed: 0,
      data: {},
      status,
      ...columns,
    } as Parameters<Database['prisma']['run']['create']>[0]['data'],
  });
  return row.id;
}

describe('run control', () => {
  it('lets one of 5 concurrent starts of a run win; the others get CONFLICT; a stopped run refuses every start', async () => {
    const created = await fx.call<{ id: string }>('POST', '/runs', { body: runBody() });
    const id = created.body.id;
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => fx.call<ErrorBody>('POST', `/runs/${id}/start`)),
    );
    const statuses = answers.map((answer) => answer.status).sort();
    expect(statuses).toEqual([202, 409, 409, 409, 409]);
    for (const answer of answers.filter((a) => a.status === 409)) {
      expect(answer.body.error.code).toBe('CONFLICT');
    }
    expect(fx.coordinator.isRunning(id)).toBe(true);
    // A start of a running run is a conflict too, not a silent second engine.
    expect((await fx.call('POST', `/runs/${id}/start`)).status).toBe(409);
    const stopped = await fx.call<{ status: string }>('POST', `/runs/${id}/stop`);
    expect(stopped.body.status).toBe('stopped');
    // A stopped run is final: every start is refused by name and nothing changes.
    const again = await Promise.all(
      Array.from({ length: 5 }, () => fx.call<ErrorBody>('POST', `/runs/${id}/start`)),
    );
    for (const answer of again) {
      expect(answer.status).toBe(409);
      expect(answer.body.error.code).toBe('CONFLICT');
      expect(answer.body.error.message).toBe(`run ${id} was stopped; create a new run`);
    }
    expect(fx.coordinator.isRunning(id)).toBe(false);
    expect((await fx.db.runs.get(id)).status).toBe('stopped');
  });

  it('refuses a start in a second coordinator on the same database while the first runs it', async () => {
    const second = await Coordinator.start({
      db: fx.db,
      logger: createLogger('error', () => {}),
      centralEvaluation: false,
      resume: false,
      port: 0,
    });
    try {
      const created = await fx.call<{ id: string }>('POST', '/runs', { body: runBody() });
      const id = created.body.id;
      const starts = await Promise.all([
        fx.call('POST', `/runs/${id}/start`),
        fetch(`${second.url}/api/runs/${id}/start`, { method: 'POST' }).then(async (r) => ({
          status: r.status,
          body: (await r.json()) as ErrorBody,
        })),
      ]);
      expect(starts.map((answer) => answer.status).sort()).toEqual([202, 409]);
      // And one after the other: the database says running, so the other one refuses.
      const firstRuns = fx.coordinator.isRunning(id);
      const later = firstRuns
        ? await fetch(`${second.url}/api/runs/${id}/start`, { method: 'POST' })
        : await fetch(`${fx.url}/api/runs/${id}/start`, {
            method: 'POST',
            headers: { authorization: `Bearer ${SERVICE_TOKEN}` },
          });
      expect(later.status).toBe(409);
      expect(((await later.json()) as ErrorBody).error.message).toMatch(/already running/);
      expect([fx.coordinator.isRunning(id), second.isRunning(id)].filter(Boolean)).toHaveLength(1);
      await (firstRuns ? fx.coordinator : second).stopRun(id);
    } finally {
      await second.close();
    }
  });
});

describe('a coordinator with a bad run left running', () => {
  it('starts anyway, and marks that run failed with the reason', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'tessera-bad-resume-'));
    const logs: string[] = [];
    const db = await openDatabase({ dataDir: join(dataDir, 'pglite') });
    let coordinator: Coordinator | undefined;
    try {
      const federation = await db.federations.create({ name: 'resume' });
      const config = {
        model: 'fedavg-2nn',
        strategy: 'fedavg',
        strategyOptions: { mu: 1 },
        rounds: 2,
        clientsPerRound: null,
        fractionFit: null,
        minClients: 1,
        roundDeadlineMs: 60_000,
        localEpochs: 1,
        batchSize: 10,
        learningRate: 0.05,
        seed: 0,
        data: {},
      };
      const bad = await db.runs.create({ federationId: federation.id, config });
      await db.runs.setStatus(bad.id, 'running');
      // Rows the database's own guard would refuse, written straight into it.
      const raw = [
        [{ strategy: 'fedavgm', strategyOptions: { momentum: 2 } }, 'strategyOptions.momentum'],
        [{ model: 'retired-net' }, 'model'],
        [{ rounds: 0 }, 'rounds'],
      ] as const;
      const rawIds: string[] = [];
      for (const [columns] of raw) {
        rawIds.push(await storeRunRow(db, federation.id, columns, 'running'));
      }
      const good = await db.runs.create({
        federationId: federation.id,
        config: { ...config, strategyOptions: {} },
      });
      await db.runs.setStatus(good.id, 'running');
      coordinator = await Coordinator.start({
        db,
        logger: createLogger('info', (line) => logs.push(line)),
        centralEvaluation: false,
        port: 0,
      });
      const failed = await db.runs.get(bad.id);
      expect(failed.status).toBe('failed');
      expect(failed.error).toBe(
        'cannot be resumed: strategyOptions: fedavg takes arithmetic; got mu',
      );
      expect(logs.join('\n')).toContain('run cannot be resumed; marked failed');
      for (const [index, [, field]] of raw.entries()) {
        const run = await db.runs.get(rawIds[index] as string);
        expect(run.status).toBe('failed');
        expect(run.error).toMatch(new RegExp(`^cannot be resumed: ${field}: `));
        expect(coordinator.isRunning(run.id)).toBe(false);
      }
      // The other run is resumed as before.
      expect(coordinator.isRunning(good.id)).toBe(true);
      expect((await fetch(`${coordinator.url}/healthz`)).status).toBe(200);
    } finally {
      await coordinator?.close();
      await db.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('the login limiter', () => {
  it('checks only 5 of 40 concurrent wrong logins against the password; the rest get 429', async () => {
    const email = 'concurrent@example.org';
    await fx.db.accounts.createUser({ email, role: 'admin', password: 'the right password' });
    // Counts the real password checks (the slow scrypt), calling through to them.
    const { accounts } = fx.db;
    const verifyLogin = accounts.verifyLogin.bind(accounts);
    let passwordChecks = 0;
    accounts.verifyLogin = (...args) => {
      passwordChecks++;
      return verifyLogin(...args);
    };
    const answers = await Promise.all(
      Array.from({ length: 40 }, (_, k) =>
        fx.call<ErrorBody>('POST', '/auth/login', {
          as: 'none',
          body: { email, password: `guess ${k} is wrong` },
        }),
      ),
    );
    const statuses = answers.map((answer) => answer.status);
    expect(statuses.filter((status) => status === 401)).toHaveLength(5);
    expect(statuses.filter((status) => status === 429)).toHaveLength(35);
    accounts.verifyLogin = verifyLogin;
    expect(passwordChecks).toBe(5);
  }, 120_000);

  it('behind --trust-proxy, a new X-Forwarded-For per attempt does not get around it', async () => {
    const email = 'spoofed@example.org';
    await fx.db.accounts.createUser({ email, role: 'admin', password: 'the right password' });
    const server = createServer(createApi(fx.coordinator, { adminToken: 'x', trustProxy: true }));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const statuses: number[] = [];
      for (let k = 0; k < 30; k++) {
        const answer = await fetch(`${base}/api/auth/login`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-forwarded-for': `198.51.100.${k}` },
          body: JSON.stringify({ email, password: `guess ${k} is wrong` }),
        });
        statuses.push(answer.status);
      }
      // Each attempt looks like a new address (one trusted hop), but the email's own limit
      // (20 from anywhere) still holds; before, all 30 were checked against the password.
      expect(statuses.filter((status) => status === 401)).toHaveLength(20);
      expect(statuses.slice(20).every((status) => status === 429)).toBe(true);
    } finally {
      server.close();
    }
  }, 120_000);
});

describe('predict under load', () => {
  it('rate-limits one session’s concurrent large uploads, and /healthz stays responsive', async () => {
    const created = await fx.call<{ id: string }>('POST', '/runs', { body: runBody() });
    const id = created.body.id;
    expect((await fx.call('POST', `/runs/${id}/start`)).status).toBe(202);
    // The initial model is saved when the run starts; no clients, so it stays at round 0.
    await waitFor(() => fx.db.rounds.latestCheckpoint(id), 'the initial checkpoint');
    const side = 4096;
    const png = new PNG({ width: side, height: side });
    png.data.fill(0);
    for (let y = 1000; y < 3000; y++) {
      for (let x = 1800; x < 2300; x++)
        png.data.fill(255, 4 * (y * side + x), 4 * (y * side + x) + 4);
    }
    const image = PNG.sync.write(png);
    expect(image.length).toBeLessThan(2 * 1024 * 1024);

    const healthLatencies: number[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const began = performance.now();
        const health = await fetch(`${fx.url}/healthz`);
        expect(health.status).toBe(200);
        healthLatencies.push(performance.now() - began);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();
    const answers = await Promise.all(
      Array.from({ length: 64 }, () =>
        fx.call<ErrorBody & { class: number }>('POST', `/runs/${id}/predict`, {
          raw: image,
          contentType: 'image/png',
        }),
      ),
    );
    polling = false;
    await poller;
    const statuses = answers.map((answer) => answer.status);
    // Two at a time per session: the others are refused at once, with a Retry-After.
    expect(statuses.filter((status) => status === 200).length).toBeGreaterThanOrEqual(2);
    const limited = answers.filter((answer) => answer.status === 429);
    expect(limited.length).toBeGreaterThanOrEqual(32);
    for (const answer of limited) {
      expect(answer.body.error.code).toBe('RATE_LIMITED');
      expect(answer.body.error.data?.['retryAfterSeconds']).toBeGreaterThan(0);
    }
    expect(statuses.every((status) => status === 200 || status === 429)).toBe(true);
    // The decodes ran on the worker thread: the loop kept answering (a generous bound).
    expect(healthLatencies.length).toBeGreaterThan(0);
    expect(Math.max(...healthLatencies)).toBeLessThan(2000);
    await fx.call('POST', `/runs/${id}/stop`);
  }, 180_000);
});
