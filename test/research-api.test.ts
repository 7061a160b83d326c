// Researchers over the REST API with their own API tokens, against a real coordinator (port 0,
// PGlite on disk): creating, listing and revoking tokens, the read scope (every read route
// answers, every write route refuses with a coded 403 and changes nothing), and the research
// routes the CLI's API mode reads (update records, checkpoints, a round's kept update bytes).
import { createHash } from 'node:crypto';
import type { WireError } from '@tessera/protocol';
import { parseCsv, ROUND_COLUMNS } from '@tessera/research';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ConsoleFixture, type Session, startConsoleFixture } from './console-fixtures.js';
import { PARAMS, type RecordedRuns, recordRuns } from './recorded-runs.js';

let fx: ConsoleFixture;
let researcher: Session;
let admin: Session;
let runs: RecordedRuns;
let token: string;

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** A request with `Authorization: Bearer <bearer>` and nothing else. */
async function withBearer(bearer: string, method: string, path: string, body?: unknown) {
  const response = await fetch(`${fx.url}/api${path}`, {
    method,
    headers: {
      authorization: `Bearer ${bearer}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const bytes = new Uint8Array(await response.arrayBuffer());
  let json: unknown = null;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    // bytes or CSV
  }
  return { status: response.status, headers: response.headers, bytes, json: json as never };
}

interface TokenAnswer {
  token: string;
  apiToken: { id: string; name: string; scope: string; expiresAt: string | null };
}

async function createToken(as: Session, body: unknown) {
  return fx.call<TokenAnswer & { error: WireError }>('POST', '/me/tokens', { as, body });
}

beforeAll(async () => {
  fx = await startConsoleFixture();
  runs = await recordRuns(fx.db);
  researcher = await fx.login('researcher');
  admin = await fx.login('admin');
  const created = await createToken(researcher, { name: 'laptop', expiresInDays: 30 });
  expect(created.status).toBe(201);
  token = created.body.token;
});
afterAll(() => fx?.dispose());

/** Every route of the OpenAPI document, with path parameters filled in. */
async function everyRoute(tokenId: string) {
  const doc = await fx.call<{
    paths: Record<string, Record<string, { 'x-tessera-access': string }>>;
  }>('GET', '/openapi.json', { as: 'none' });
  const federation = runs.federationId;
  const clientId = (await fx.db.clients.list(federation))[0]?.id ?? '';
  const userId = (await fx.db.accounts.listUsers())[0]?.id ?? '';
  const task = (await fx.db.tasks.list())[0];
  const routes: Array<{ method: string; path: string; access: string }> = [];
  // What only a stateful strategy's run has (SCAFFOLD's c and Δc_i) is read from that run.
  const runFor = (path: string) =>
    /control-deltas|strategy-state/.test(path) ? runs.scaffold : runs.faithful;
  for (const [path, methods] of Object.entries(doc.body.paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      routes.push({
        method: method.toUpperCase(),
        path: path
          .replace(/^\/api/, '')
          .replace('/federations/{id}', `/federations/${federation}`)
          .replace('/clients/{id}', `/clients/${clientId}`)
          .replace('/users/{id}', `/users/${userId}`)
          .replace('/runs/{id}', `/runs/${runFor(path)}`)
          .replace('{tokenId}', tokenId)
          .replace('{sha256}', task?.sha256 ?? '')
          .replace('/tasks/{name}', `/tasks/${task?.name ?? ''}`)
          .replace('{round}', '1'),
        access: operation['x-tessera-access'],
      });
    }
  }
  return routes;
}

describe('API tokens', () => {
  it('answers the token once and stores only its sha256', async () => {
    expect(token).toMatch(/^tsa_[A-Za-z0-9_-]{43}$/);
    const rows = await fx.db.prisma.apiToken.findMany();
    expect(rows.map((row) => row.tokenHash)).toContain(sha256(new TextEncoder().encode(token)));
    expect(JSON.stringify(rows)).not.toContain(token.slice(4));
    const listed = await fx.call<Array<Record<string, unknown>>>('GET', '/me/tokens', {
      as: researcher,
    });
    expect(listed.status).toBe(200);
    expect(listed.body).toHaveLength(1);
    expect(listed.body[0]).toMatchObject({ name: 'laptop', scope: 'read', revokedAt: null });
    expect(Object.keys(listed.body[0] ?? {}).sort()).toEqual(
      ['createdAt', 'expiresAt', 'id', 'lastUsedAt', 'name', 'revokedAt', 'scope'].sort(),
    );
    // Someone else's list does not show it.
    expect((await fx.call<unknown[]>('GET', '/me/tokens', { as: admin })).body).toEqual([]);
  });

  it('refuses bad input with the field, and stores nothing', async () => {
    const before = await fx.db.prisma.apiToken.count();
    const cases: Array<[unknown, string]> = [
      [{}, 'name'],
      [{ name: '   ' }, 'name'],
      [{ name: 'x'.repeat(101) }, 'name'],
      [{ name: 'n', expiresInDays: 0 }, 'expiresInDays'],
      [{ name: 'n', expiresInDays: 1.5 }, 'expiresInDays'],
      [{ name: 'n', expiresInDays: 367 }, 'expiresInDays'],
      [{ name: 'n', expiresInDays: '30' }, 'expiresInDays'],
      [{ name: 'n', scope: 'admin' }, '(body)'],
    ];
    for (const [body, field] of cases) {
      const refused = await createToken(researcher, body);
      expect(refused.status, JSON.stringify(body)).toBe(400);
      expect(refused.body.error.code).toBe('INVALID_ARGUMENT');
      const issues = refused.body.error.data?.['issues'] as Array<{ field: string }>;
      expect(
        issues.map((issue) => issue.field),
        JSON.stringify(body),
      ).toContain(field);
    }
    // A session needs its CSRF token to create one, as for every write.
    const noCsrf = await fx.call<{ error: WireError }>('POST', '/me/tokens', {
      as: researcher,
      csrf: null,
      body: { name: 'n' },
    });
    expect(noCsrf.status).toBe(403);
    // The admin bearer token has no user to own one.
    const service = await fx.call<{ error: WireError }>('POST', '/me/tokens', {
      as: 'service',
      body: { name: 'n' },
    });
    expect(service.status).toBe(403);
    expect(service.body.error.data).toEqual({ reason: 'no-user' });
    expect(await fx.db.prisma.apiToken.count()).toBe(before);
  });

  it('authenticates as a researcher with the read scope, whoever made it', async () => {
    const adminMade = await createToken(admin, { name: 'admin script' });
    for (const bearer of [token, adminMade.body.token]) {
      const session = await withBearer(bearer, 'GET', '/auth/session');
      expect(session.status).toBe(200);
      expect(session.json).toMatchObject({ user: { role: 'researcher' }, scope: 'read' });
    }
    expect((await withBearer(adminMade.body.token, 'GET', '/users')).status).toBe(403);
  });

  it('reads every read route and refuses every write route (403 read-only-token), changing nothing', async () => {
    const routes = await everyRoute('00000000-0000-4000-8000-000000000000');
    const reads = routes.filter((r) => r.method === 'GET' && r.access !== 'admin');
    expect(reads.map((r) => r.path)).toEqual(
      expect.arrayContaining([
        `/runs/${runs.faithful}/export/rounds`,
        `/runs/${runs.faithful}/checkpoints`,
      ]),
    );
    for (const route of reads) {
      const read = await withBearer(token, route.method, route.path);
      expect(read.status, `${route.method} ${route.path}`).toBe(200);
    }
    const writes = routes.filter((r) => r.method !== 'GET' && r.access !== 'public');
    expect(writes.length).toBeGreaterThanOrEqual(12);
    const before = {
      federations: await fx.db.prisma.federation.count(),
      users: await fx.db.prisma.user.count(),
      tokens: await fx.db.prisma.apiToken.count(),
      run: (await fx.db.runs.get(runs.created)).status,
    };
    for (const route of writes) {
      const path = route.path.replace(runs.faithful, runs.created);
      const refused = await withBearer(token, route.method, path, {
        name: 'written by a token',
        email: 'token@example.org',
        role: 'admin',
        password: 'a long enough password',
        organisation: 'org',
      });
      expect(refused.status, `${route.method} ${path}`).toBe(403);
      expect(refused.json).toMatchObject({
        error: { code: 'FORBIDDEN', data: { reason: 'read-only-token', scope: 'read' } },
      });
    }
    expect({
      federations: await fx.db.prisma.federation.count(),
      users: await fx.db.prisma.user.count(),
      tokens: await fx.db.prisma.apiToken.count(),
      run: (await fx.db.runs.get(runs.created)).status,
    }).toEqual(before);
  });

  it('keeps the admin token working, and refuses an unknown, revoked or expired token', async () => {
    expect((await fx.call('GET', '/runs', { as: 'service' })).status).toBe(200);
    expect(
      (await fx.call('POST', '/federations', { as: 'service', body: { name: 'still admin' } }))
        .status,
    ).toBe(201);
    const unknown = await withBearer(`tsa_${'A'.repeat(43)}`, 'GET', '/runs');
    expect(unknown.status).toBe(401);
    expect(unknown.json).toMatchObject({
      error: { code: 'UNAUTHORIZED', data: { reason: 'api-token' } },
    });

    const short = await createToken(researcher, { name: 'short-lived' });
    expect((await withBearer(short.body.token, 'GET', '/runs')).status).toBe(200);
    // Another user cannot revoke it (nor learn it exists); its owner can.
    const foreign = await fx.call<{ error: WireError }>(
      'POST',
      `/me/tokens/${short.body.apiToken.id}/revoke`,
      { as: admin },
    );
    expect(foreign.status).toBe(404);
    expect((await withBearer(short.body.token, 'GET', '/runs')).status).toBe(200);
    const revoked = await fx.call<{ revokedAt: string | null }>(
      'POST',
      `/me/tokens/${short.body.apiToken.id}/revoke`,
      { as: researcher },
    );
    expect(revoked.status).toBe(200);
    expect(revoked.body.revokedAt).not.toBeNull();
    expect((await withBearer(short.body.token, 'GET', '/runs')).status).toBe(401);

    const expiring = await createToken(researcher, { name: 'expiring', expiresInDays: 1 });
    await fx.db.prisma.apiToken.update({
      where: { id: expiring.body.apiToken.id },
      data: { expiresAt: new Date(Date.now() - 1000) },
    });
    expect((await withBearer(expiring.body.token, 'GET', '/runs')).status).toBe(401);
  });
});

describe('research routes', () => {
  it("serves a checkpoint's bytes with their sha256, and the checkpoint list", async () => {
    const list = await withBearer(token, 'GET', `/runs/${runs.faithful}/checkpoints`);
    expect(list.json).toEqual(
      (await fx.db.rounds.checkpointHashes(runs.faithful)).map((c) => ({ ...c })),
    );
    for (const round of [0, 2]) {
      const weights = await withBearer(
        token,
        'GET',
        `/runs/${runs.faithful}/checkpoints/${round}/weights`,
      );
      expect(weights.status).toBe(200);
      expect(weights.headers.get('content-type')).toBe('application/octet-stream');
      expect(weights.bytes.byteLength).toBe(PARAMS * 4);
      const stored = await fx.db.rounds.checkpoint(runs.faithful, round);
      expect(sha256(weights.bytes)).toBe(stored.sha256);
      expect(weights.headers.get('x-tessera-sha256')).toBe(stored.sha256);
    }
    const missing = await withBearer(token, 'GET', `/runs/${runs.faithful}/checkpoints/3/weights`);
    expect(missing.status).toBe(404);
    const bad = await withBearer(token, 'GET', `/runs/${runs.faithful}/checkpoints/-1/weights`);
    expect(bad.status).toBe(400);
    expect(bad.json).toMatchObject({
      error: { code: 'INVALID_ARGUMENT', data: { field: 'round' } },
    });
  });

  it("serves a round's kept update bytes back to back in arrival order, and 404 where none were kept", async () => {
    const bytes = await withBearer(token, 'GET', `/runs/${runs.faithful}/rounds/2/updates/weights`);
    expect(bytes.status).toBe(200);
    expect(bytes.headers.get('x-tessera-updates')).toBe('2');
    expect(bytes.headers.get('x-tessera-update-bytes')).toBe(String(PARAMS * 4));
    const records = await fx.db.rounds.updates(runs.faithful, 2);
    for (const [index, record] of records.entries()) {
      expect(sha256(bytes.bytes.subarray(index * PARAMS * 4, (index + 1) * PARAMS * 4))).toBe(
        record.sha256,
      );
    }
    const plain = await withBearer(token, 'GET', `/runs/${runs.plain}/rounds/1/updates/weights`);
    expect(plain.status).toBe(404);
    expect(plain.json).toMatchObject({ error: { code: 'NOT_FOUND' } });
    expect(JSON.stringify(plain.json)).toContain('created without keepUpdates');
  });

  it("serves a SCAFFOLD round's kept Δc_i in arrival order and each checkpoint's strategy state; 404 where there are none", async () => {
    for (const round of [1, 2]) {
      const deltas = await withBearer(
        token,
        'GET',
        `/runs/${runs.scaffold}/rounds/${round}/updates/control-deltas`,
      );
      expect(deltas.status).toBe(200);
      expect(deltas.headers.get('x-tessera-updates')).toBe('2');
      expect(deltas.headers.get('x-tessera-update-bytes')).toBe(String(PARAMS * 4));
      expect(deltas.headers.get('x-tessera-arrival-indexes')).toBe('0,1');
      const kept = await fx.db.rounds.updatesWithWeights(runs.scaffold, round);
      const records = await fx.db.rounds.updates(runs.scaffold, round);
      for (const [index, update] of kept.entries()) {
        const served = deltas.bytes.subarray(index * PARAMS * 4, (index + 1) * PARAMS * 4);
        expect(served).toEqual(update.controlDelta);
        expect(sha256(served)).toBe(records[index]?.controlDeltaSha256);
      }
    }
    for (const round of [0, 1, 2]) {
      const state = await withBearer(
        token,
        'GET',
        `/runs/${runs.scaffold}/checkpoints/${round}/strategy-state`,
      );
      const stored = await fx.db.rounds.checkpoint(runs.scaffold, round);
      if (round === 0) {
        // The initial checkpoint: no round has run, so there is no state yet.
        expect(state.status).toBe(404);
        continue;
      }
      expect(state.status).toBe(200);
      expect(state.headers.get('content-type')).toBe('application/octet-stream');
      expect(state.bytes).toEqual(stored.strategyState);
    }
    // FedAvg keeps neither: a coded 404 that says why.
    const none = await withBearer(
      token,
      'GET',
      `/runs/${runs.faithful}/rounds/1/updates/control-deltas`,
    );
    expect(none.status).toBe(404);
    expect(none.json).toMatchObject({ error: { code: 'NOT_FOUND' } });
    expect(JSON.stringify(none.json)).toContain('kept no control-variate changes');
    const stateless = await withBearer(
      token,
      'GET',
      `/runs/${runs.faithful}/checkpoints/1/strategy-state`,
    );
    expect(stateless.status).toBe(404);
    expect(JSON.stringify(stateless.json)).toContain('without a strategy state');
    // A run that kept no update bytes kept no Δc_i either; a round not committed is 404 too.
    const plain = await withBearer(
      token,
      'GET',
      `/runs/${runs.plain}/rounds/1/updates/control-deltas`,
    );
    expect(plain.status).toBe(404);
    expect(JSON.stringify(plain.json)).toContain('created without keepUpdates');
    const nowhere = '00000000-0000-4000-8000-000000000000';
    for (const path of [
      `/runs/${runs.scaffold}/rounds/3/updates/control-deltas`,
      `/runs/${runs.scaffold}/checkpoints/3/strategy-state`,
      `/runs/${nowhere}/rounds/1/updates/control-deltas`,
      `/runs/${nowhere}/checkpoints/1/strategy-state`,
    ]) {
      expect((await withBearer(token, 'GET', path)).status, path).toBe(404);
    }
    const bad = await withBearer(
      token,
      'GET',
      `/runs/${runs.scaffold}/rounds/0/updates/control-deltas`,
    );
    expect(bad.status).toBe(400);
    expect(bad.json).toMatchObject({
      error: { code: 'INVALID_ARGUMENT', data: { field: 'round' } },
    });
  });

  it("exports one round's rows with ?round=N, and NOT_FOUND for a round not committed", async () => {
    const csv = await withBearer(token, 'GET', `/runs/${runs.faithful}/export/rounds?round=2`);
    expect(csv.status).toBe(200);
    expect(csv.headers.get('content-disposition')).toBe(
      `attachment; filename="${runs.faithful}-round-2-rounds.csv"`,
    );
    const [header, ...rows] = parseCsv(new TextDecoder().decode(csv.bytes));
    expect(header).toEqual([...ROUND_COLUMNS]);
    expect(rows.map((row) => row[1])).toEqual(['2']);
    const updates = await withBearer(
      token,
      'GET',
      `/runs/${runs.faithful}/export/updates?round=1&format=jsonl`,
    );
    const lines = new TextDecoder().decode(updates.bytes).trim().split('\n');
    expect(lines.map((line) => JSON.parse(line).round)).toEqual([1, 1]);
    expect(
      (await withBearer(token, 'GET', `/runs/${runs.faithful}/export/rounds?round=3`)).status,
    ).toBe(404);
    expect(
      (await withBearer(token, 'GET', `/runs/${runs.faithful}/export/rounds?round=0`)).status,
    ).toBe(400);
  });

  it('publishes the token routes, the byte routes and the apiToken scheme in OpenAPI', async () => {
    const doc = await fx.call<{
      paths: Record<string, Record<string, { 'x-tessera-access': string }>>;
      components: { securitySchemes: Record<string, unknown> };
    }>('GET', '/openapi.json', { as: 'none' });
    for (const path of [
      '/api/me/tokens',
      '/api/me/tokens/{tokenId}/revoke',
      '/api/runs/{id}/updates',
      '/api/runs/{id}/checkpoints',
      '/api/runs/{id}/checkpoints/{round}/weights',
      '/api/runs/{id}/rounds/{round}/updates/weights',
      '/api/runs/{id}/rounds/{round}/updates/control-deltas',
      '/api/runs/{id}/checkpoints/{round}/strategy-state',
    ]) {
      expect(doc.body.paths[path], path).toBeDefined();
    }
    expect(doc.body.components.securitySchemes['apiToken']).toMatchObject({ scheme: 'bearer' });
  });
});
