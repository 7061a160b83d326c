// The console's REST API and live namespace against a real coordinator: sessions, CSRF, roles,
// login rate limiting, field-level validation, predict uploads and tfjs model downloads.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { createApi } from '@tessera/coordinator';
import { openDatabase } from '@tessera/db';
import { createMsgpackParser, type WireError } from '@tessera/protocol';
import { PNG } from 'pngjs';
import { io, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ConsoleFixture,
  PASSWORD,
  type Session,
  startConsoleFixture,
} from './console-fixtures.js';

let fx: ConsoleFixture;
let admin: Session;
let researcher: Session;
let federationId: string;
let runId: string;
let clientId: string;
let researcherId: string;

const runBody = (overrides: Record<string, unknown> = {}) => ({
  federationId,
  model: 'fedavg-2nn',
  rounds: 2,
  minClients: 1,
  roundDeadlineMs: 60_000,
  localEpochs: 1,
  batchSize: 20,
  learningRate: 0.05,
  seed: 3,
  ...overrides,
});

beforeAll(async () => {
  fx = await startConsoleFixture();
  admin = await fx.login('admin');
  researcher = await fx.login('researcher');
  const federation = await fx.call<{ id: string }>('POST', '/federations', {
    as: admin,
    body: { name: 'console api' },
  });
  expect(federation.status).toBe(201);
  federationId = federation.body.id;
  const run = await fx.call<{ id: string }>('POST', '/runs', { as: admin, body: runBody() });
  expect(run.status).toBe(201);
  const issued = await fx.call<{ client: { id: string } }>(
    'POST',
    `/federations/${federationId}/clients`,
    {
      as: admin,
      body: { organisation: 'org' },
    },
  );
  clientId = issued.body.client.id;
  researcherId =
    (await fx.db.accounts.listUsers()).find((u) => u.email === researcher.email)?.id ?? '';
  runId = run.body.id;
});
afterAll(() => fx?.dispose());

interface OpenApi {
  paths: Record<string, Record<string, { 'x-tessera-access': 'public' | 'read' | 'admin' }>>;
}

/** Every route of the published document, with its path parameters filled in. */
async function everyRoute() {
  const ids: Record<string, string> = {
    runs: runId,
    federations: federationId,
    clients: clientId,
    users: researcherId,
  };
  const doc = await fx.call<OpenApi>('GET', '/openapi.json', { as: 'none' });
  expect(doc.status).toBe(200);
  const routes: Array<{ method: string; path: string; access: string }> = [];
  for (const [path, methods] of Object.entries(doc.body.paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      routes.push({
        method: method.toUpperCase(),
        path: path
          .replace(/^\/api/, '')
          .replace(
            /^\/(\w+)\/\{id\}/,
            (_match, collection: string) => `/${collection}/${ids[collection] ?? runId}`,
          )
          .replace('{round}', '1'),
        access: operation['x-tessera-access'],
      });
    }
  }
  return routes;
}

interface RunResponseSchema {
  properties: Record<string, { properties: Record<string, unknown>; required: string[] }>;
}

describe('who may call what', () => {
  it('publishes every route in OpenAPI, built from the validating schemas', async () => {
    const doc = await fx.call<{
      openapi: string;
      paths: Record<
        string,
        Record<
          string,
          {
            requestBody?: {
              content: Record<
                string,
                { schema: { properties: Record<string, unknown>; required: string[] } }
              >;
            };
          }
        >
      >;
    }>('GET', '/openapi.json', { as: 'none' });
    expect(doc.body.openapi).toBe('3.1.0');
    const createRun =
      doc.body.paths['/api/runs']?.['post']?.requestBody?.content['application/json']?.schema;
    // A run names a task, or a zoo model as the alias of its built-in task: neither is required
    // on its own.
    expect(createRun?.required).toEqual(expect.arrayContaining(['federationId', 'rounds']));
    expect(Object.keys(createRun?.properties ?? {})).toEqual(
      expect.arrayContaining(['task', 'model']),
    );
    expect(createRun?.properties['rounds']).toMatchObject({ type: 'integer', maximum: 100000 });
    expect(createRun?.properties['learningRate']).toMatchObject({ default: 0.05 });
    // A run's config in responses: the same schema's fields, every one present once stored.
    const getRun = doc.body.paths['/api/runs/{id}']?.['get'] as unknown as
      | { responses: Record<string, { content: Record<string, { schema: RunResponseSchema }> }> }
      | undefined;
    const runSchema = getRun?.responses['200']?.content['application/json']?.schema;
    const configSchema = runSchema?.properties['config'];
    expect(Object.keys(configSchema?.properties ?? {}).sort()).toEqual(
      Object.keys(createRun?.properties ?? {})
        .filter((field) => field !== 'federationId' && field !== 'name')
        .sort(),
    );
    expect(configSchema?.required).toEqual(expect.arrayContaining(['localEpochs', 'seed']));
    const predict = doc.body.paths['/api/runs/{id}/predict']?.['post']?.requestBody?.content;
    expect(Object.keys(predict ?? {}).sort()).toEqual([
      'application/json',
      'image/jpeg',
      'image/png',
    ]);
    expect((await everyRoute()).length).toBeGreaterThanOrEqual(22);
  });

  it('refuses every non-public route without a session (401), or with a wrong one (401)', async () => {
    for (const route of await everyRoute()) {
      if (route.access === 'public') continue;
      const none = await fx.call<{ error: WireError }>(route.method, route.path, { as: 'none' });
      expect(none.status, `${route.method} ${route.path}`).toBe(401);
      expect(none.body.error.code).toBe('UNAUTHORIZED');
      const forged = await fx.call(route.method, route.path, {
        as: 'none',
        cookie: 'tessera_session=forged-session-token',
      });
      expect(forged.status, `${route.method} ${route.path} (forged cookie)`).toBe(401);
      const wrongBearer = await fetch(`${fx.url}/api${route.path}`, {
        method: route.method,
        headers: { authorization: 'Bearer wrong' },
      });
      expect(wrongBearer.status, `${route.method} ${route.path} (wrong bearer)`).toBe(401);
    }
  });

  it('refuses every admin route to a researcher (403) before looking at the input', async () => {
    const adminRoutes = (await everyRoute()).filter((route) => route.access === 'admin');
    const anyId = new RegExp(`${runId}|${federationId}|${clientId}|${researcherId}`);
    expect(adminRoutes.map((r) => `${r.method} ${r.path.replace(anyId, ':id')}`)).toEqual(
      expect.arrayContaining([
        'POST /federations',
        'POST /federations/:id/clients',
        'POST /clients/:id/revoke',
        'POST /runs',
        'POST /runs/:id/start',
        'POST /runs/:id/stop',
        'POST /users',
      ]),
    );
    for (const route of adminRoutes) {
      const refused = await fx.call<{ error: WireError }>(route.method, route.path, {
        as: researcher,
        body: {},
      });
      expect(refused.status, `${route.method} ${route.path}`).toBe(403);
      expect(refused.body.error.code).toBe('FORBIDDEN');
      expect(refused.body.error.message).toContain('researcher role may not');
    }
    // Nothing happened: the run was not started.
    expect((await fx.call<{ status: string }>('GET', `/runs/${runId}`)).body.status).toBe(
      'created',
    );
  });

  it('lets a researcher call every read route (any answer but 401 or 403)', async () => {
    for (const route of await everyRoute()) {
      if (route.access !== 'read' || route.method !== 'GET') continue;
      const read = await fx.call(route.method, route.path, { as: researcher });
      expect([401, 403], `${route.method} ${route.path}`).not.toContain(read.status);
    }
    // Listing is plainly allowed.
    expect((await fx.call('GET', '/runs', { as: researcher })).status).toBe(200);
    expect((await fx.call('GET', `/runs/${runId}`, { as: researcher })).status).toBe(200);
  });

  it('requires the CSRF token of the session on state-changing requests', async () => {
    const missing = await fx.call<{ error: WireError }>('POST', '/federations', {
      as: admin,
      csrf: null,
      body: { name: 'no csrf' },
    });
    expect(missing.status).toBe(403);
    expect(missing.body.error.data).toEqual({ reason: 'csrf' });
    const other = await fx.call('POST', '/federations', {
      as: admin,
      csrf: researcher.csrfToken,
      body: { name: 'csrf of another session' },
    });
    expect(other.status).toBe(403);
    const ok = await fx.call('POST', '/federations', { as: admin, body: { name: 'with csrf' } });
    expect(ok.status).toBe(201);
  });

  it('keeps the bearer admin token working for machines (no CSRF needed)', async () => {
    const created = await fx.call('POST', '/federations', { as: 'service', body: { name: 'svc' } });
    expect(created.status).toBe(201);
  });
});

describe('logging in and out', () => {
  it('sets an httpOnly SameSite=Strict cookie and never stores the token', async () => {
    await fx.db.accounts.createUser({
      email: 'cookie@example.org',
      role: 'admin',
      password: PASSWORD,
    });
    const response = await fetch(`${fx.url}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'Cookie@Example.org', password: PASSWORD }),
    });
    expect(response.status).toBe(200);
    const cookie = response.headers.get('set-cookie') ?? '';
    expect(cookie).toMatch(
      /^tessera_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=43200$/,
    );
    const token = cookie.split(';')[0]?.split('=')[1] ?? '';
    const stored = await fx.db.prisma.session.findMany({ select: { id: true } });
    expect(stored.some((row) => row.id === token)).toBe(false);
    const body = (await response.json()) as { user: Record<string, unknown>; csrfToken: string };
    expect(body.user).not.toHaveProperty('passwordHash');
    expect(body.user['role']).toBe('admin');
  });

  it('answers a wrong password and an unknown email alike, with field errors for empty input', async () => {
    const wrong = await fx.call<{ error: WireError }>('POST', '/auth/login', {
      as: 'none',
      body: { email: admin.email, password: 'not the password' },
    });
    const unknown = await fx.call<{ error: WireError }>('POST', '/auth/login', {
      as: 'none',
      body: { email: 'nobody@example.org', password: 'not the password' },
    });
    expect([wrong.status, unknown.status]).toEqual([401, 401]);
    expect(wrong.body.error.message).toBe(unknown.body.error.message);
    const empty = await fx.call<{ error: WireError }>('POST', '/auth/login', {
      as: 'none',
      body: { email: '', password: '' },
    });
    expect(empty.status).toBe(400);
    expect(empty.body.error.data?.['issues']).toEqual([
      { field: 'email', message: 'required' },
      { field: 'password', message: 'required' },
    ]);
  });

  it('rate-limits failed logins per address and account, with Retry-After', async () => {
    const email = 'target@example.org';
    await fx.db.accounts.createUser({ email, role: 'admin', password: PASSWORD });
    const attempt = (password: string) =>
      fx.call<{ error: WireError }>('POST', '/auth/login', {
        as: 'none',
        body: { email, password },
      });
    for (let k = 0; k < 5; k++) expect((await attempt(`guess number ${k}`)).status).toBe(401);
    const limited = await attempt('guess number 6');
    expect(limited.status).toBe(429);
    expect(limited.body.error.code).toBe('RATE_LIMITED');
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    // Even the right password waits now: the limiter is checked before the password.
    expect((await attempt(PASSWORD)).status).toBe(429);
    // Another account from the same address is not locked out by this one.
    expect((await fx.login('researcher')).cookie).toMatch(/^tessera_session=/);
  });

  it('ends the session on logout', async () => {
    const session = await fx.login('admin');
    expect((await fx.call('GET', '/auth/session', { as: session })).status).toBe(200);
    const out = await fx.call('POST', '/auth/logout', { as: session });
    expect(out.status).toBe(204);
    expect(out.headers.get('set-cookie')).toContain('Max-Age=0');
    expect((await fx.call('GET', '/auth/session', { as: session })).status).toBe(401);
    expect((await fx.call('GET', '/federations', { as: session })).status).toBe(401);
  });
});

describe('validation', () => {
  it('rejects a run with every bad field named', async () => {
    const bad = await fx.call<{ error: WireError }>('POST', '/runs', {
      as: admin,
      body: runBody({ rounds: 0, learningRate: -1, model: 'resnet', fractionFit: 2 }),
    });
    expect(bad.status).toBe(400);
    const fields = ((bad.body.error.data?.['issues'] ?? []) as Array<{ field: string }>).map(
      (i) => i.field,
    );
    expect(fields.sort()).toEqual(['fractionFit', 'learningRate', 'model', 'rounds']);
    const cross = await fx.call<{ error: WireError }>('POST', '/runs', {
      as: admin,
      body: runBody({ clientsPerRound: 1, minClients: 2 }),
    });
    expect(cross.body.error.data?.['field']).toBe('clientsPerRound');
  });

  it('rejects a weak password and a bad role for new users', async () => {
    const bad = await fx.call<{ error: WireError }>('POST', '/users', {
      as: admin,
      body: { email: 'x', role: 'owner', password: 'short' },
    });
    expect(bad.status).toBe(400);
    const fields = ((bad.body.error.data?.['issues'] ?? []) as Array<{ field: string }>).map(
      (i) => i.field,
    );
    expect(fields.sort()).toEqual(['email', 'password', 'role']);
  });
});

function pngOfDigit(width: number, height: number): Uint8Array {
  const png = new PNG({ width, height });
  png.data.fill(0);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const index = 4 * (y * width + x);
      // A vertical bar: a "1", white on black, opaque.
      const lit = Math.abs(x - width / 2) < width / 10 && y > height / 5 && y < (4 * height) / 5;
      png.data[index] = png.data[index + 1] = png.data[index + 2] = lit ? 255 : 0;
      png.data[index + 3] = 255;
    }
  }
  return new Uint8Array(PNG.sync.write(png));
}

describe('serving the model', () => {
  let started = false;
  const ensureStarted = async () => {
    if (started) return;
    const run = await fx.call('POST', `/runs/${runId}/start`, { as: admin });
    expect(run.status).toBe(202);
    // The initial model (round 0) is saved when the run starts.
    for (let k = 0; k < 200; k++) {
      if (await fx.db.rounds.latestCheckpoint(runId)) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    started = true;
  };

  it('says when a run has no model yet', async () => {
    const other = await fx.call<{ id: string }>('POST', '/runs', { as: admin, body: runBody() });
    const early = await fx.call<{ error: WireError }>('POST', `/runs/${other.body.id}/predict`, {
      as: researcher,
      body: { pixels: new Array(784).fill(0) },
    });
    expect(early.status).toBe(409);
  });

  it('predicts from a JSON tensor and from a PNG, for researchers too', async () => {
    await ensureStarted();
    const tensor = await fx.call<{ class: number; probabilities: number[]; round: number }>(
      'POST',
      `/runs/${runId}/predict`,
      { as: researcher, body: { pixels: new Array(784).fill(0.5) } },
    );
    expect(tensor.status).toBe(200);
    expect(tensor.body.round).toBe(0);
    expect(tensor.body.probabilities).toHaveLength(10);
    expect(tensor.body.probabilities.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 4);
    expect(tensor.body.class).toBe(
      tensor.body.probabilities.indexOf(Math.max(...tensor.body.probabilities)),
    );
    const image = await fx.call<{ class: number; probabilities: number[] }>(
      'POST',
      `/runs/${runId}/predict?round=0`,
      { as: researcher, raw: pngOfDigit(280, 280), contentType: 'image/png' },
    );
    expect(image.status).toBe(200);
    expect(image.body.probabilities).toHaveLength(10);
  });

  it('refuses wrong types, lying content types, oversized uploads and bad tensors', async () => {
    await ensureStarted();
    const path = `/runs/${runId}/predict`;
    const text = await fx.call<{ error: WireError }>('POST', path, {
      as: admin,
      raw: new TextEncoder().encode('hello'),
      contentType: 'text/plain',
    });
    expect(text.status).toBe(415);
    const lying = await fx.call<{ error: WireError }>('POST', path, {
      as: admin,
      raw: new TextEncoder().encode('GIF89a not a png at all'),
      contentType: 'image/png',
    });
    expect(lying.status).toBe(415);
    expect(lying.body.error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    const jpegAsPng = await fx.call('POST', path, {
      as: admin,
      raw: new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 0]),
      contentType: 'image/png',
    });
    expect(jpegAsPng.status).toBe(415);
    const huge = new Uint8Array(3 * 1024 * 1024);
    huge.set(pngOfDigit(28, 28));
    const tooLarge = await fx.call<{ error: WireError }>('POST', path, {
      as: admin,
      raw: huge,
      contentType: 'image/png',
    });
    expect(tooLarge.status).toBe(413);
    // A small file that claims 100000 x 100000 pixels is refused before it is inflated.
    const header = pngOfDigit(28, 28);
    const view = new DataView(header.buffer);
    view.setUint32(16, 100_000);
    view.setUint32(20, 100_000);
    const bomb = await fx.call<{ error: WireError }>('POST', path, {
      as: admin,
      raw: header,
      contentType: 'image/png',
    });
    expect(bomb.status).toBe(413);
    const truncated = await fx.call<{ error: WireError }>('POST', path, {
      as: admin,
      raw: pngOfDigit(28, 28).subarray(0, 40),
      contentType: 'image/png',
    });
    expect(truncated.status).toBe(400);
    const short = await fx.call<{ error: WireError }>('POST', path, {
      as: admin,
      body: { pixels: new Array(783).fill(0) },
    });
    expect(short.status).toBe(400);
    expect(short.body.error.data?.['field']).toBe('pixels');
    const outOfRange = await fx.call<{ error: WireError }>('POST', path, {
      as: admin,
      body: { pixels: [...new Array(783).fill(0), 7] },
    });
    expect(outOfRange.body.error.data?.['field']).toBe('pixels.783');
    const noRound = await fx.call('POST', `${path}?round=99`, {
      as: admin,
      body: { pixels: new Array(784).fill(0) },
    });
    expect(noRound.status).toBe(404);
    const badRound = await fx.call<{ error: WireError }>('POST', `${path}?round=x`, {
      as: admin,
      body: { pixels: new Array(784).fill(0) },
    });
    expect(badRound.status).toBe(400);
    expect(badRound.body.error.data?.['field']).toBe('round');
  });

  it('downloads the model in tfjs format that loads and predicts the same', async () => {
    await ensureStarted();
    const json = await fx.call<{
      format: string;
      modelTopology: object;
      weightsManifest: Array<{ paths: string[]; weights: tf.io.WeightsManifestEntry[] }>;
    }>('GET', `/runs/${runId}/model/model.json`, { as: researcher });
    expect(json.status).toBe(200);
    expect(json.body.format).toBe('layers-model');
    expect(json.body.weightsManifest[0]?.paths).toEqual(['weights.bin?round=0']);
    const weights = await fetch(`${fx.url}/api/runs/${runId}/model/weights.bin?round=0`, {
      headers: { cookie: researcher.cookie },
    });
    expect(weights.status).toBe(200);
    const bytes = new Uint8Array(await weights.arrayBuffer());
    expect(bytes.byteLength).toBe(199_210 * 4);

    const model = await tfl.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: json.body.modelTopology,
        weightSpecs: json.body.weightsManifest[0]?.weights ?? [],
        weightData: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
      }),
    );
    const pixels = Array.from({ length: 784 }, (_, k) => (k % 7) / 7);
    const local = tf.tidy(() =>
      Array.from((model.predict(tf.tensor2d([pixels])) as tf.Tensor).dataSync()),
    );
    model.dispose();
    const served = await fx.call<{ probabilities: number[] }>('POST', `/runs/${runId}/predict`, {
      as: admin,
      body: { pixels },
    });
    for (let k = 0; k < 10; k++)
      expect(served.body.probabilities[k]).toBeCloseTo(local[k] ?? -1, 5);
  });
});

describe('pausing', () => {
  it('pauses only a running run, and a stop cancels the pause', async () => {
    const run = await fx.call<{ id: string }>('POST', '/runs', { as: admin, body: runBody() });
    const early = await fx.call<{ error: WireError }>('POST', `/runs/${run.body.id}/pause`, {
      as: admin,
    });
    expect(early.status).toBe(409);
    expect(early.body.error.message).toContain('not running');
    expect((await fx.call('POST', `/runs/${run.body.id}/start`, { as: admin })).status).toBe(202);
    const pausing = await fx.call<{ pausing: boolean; status: string }>(
      'POST',
      `/runs/${run.body.id}/pause`,
      { as: admin },
    );
    expect(pausing.status).toBe(202);
    expect(pausing.body).toMatchObject({ status: 'running', pausing: true });
    // No clients: no round ends, so the run waits, still running, with the pause pending.
    const seen = await fx.call<{ pausing: boolean }>('GET', `/runs/${run.body.id}`, {
      as: researcher,
    });
    expect(seen.body.pausing).toBe(true);
    const stopped = await fx.call<{ status: string }>('POST', `/runs/${run.body.id}/stop`, {
      as: admin,
    });
    expect(stopped.body.status).toBe('stopped');
    const after = await fx.call<{ pausing: boolean }>('GET', `/runs/${run.body.id}`);
    expect(after.body.pausing).toBe(false);
  });
});

describe('the /admin live namespace', () => {
  type AdminSocket = Socket;
  const open: AdminSocket[] = [];
  afterAll(() => {
    for (const socket of open) socket.disconnect();
  });
  const connect = (cookie?: string) => {
    const socket = io(`${fx.url}/admin`, {
      parser: createMsgpackParser(),
      transports: ['websocket'],
      reconnection: false,
      ...(cookie ? { extraHeaders: { cookie } } : {}),
    });
    open.push(socket);
    return new Promise<{ socket: AdminSocket; error?: WireError; snapshot?: unknown }>(
      (resolve) => {
        socket.on('snapshot', (snapshot: unknown) => resolve({ socket, snapshot }));
        socket.on('connect_error', (error: Error & { data?: WireError }) =>
          resolve({ socket, ...(error.data ? { error: error.data } : {}) }),
        );
      },
    );
  };

  it('refuses a connection without a session, or with a wrong one (UNAUTHORIZED)', async () => {
    expect((await connect()).error?.code).toBe('UNAUTHORIZED');
    expect((await connect('tessera_session=nope')).error?.code).toBe('UNAUTHORIZED');
  });

  it('lets a researcher watch, but not control a run (FORBIDDEN)', async () => {
    const { socket, snapshot } = await connect(researcher.cookie);
    expect(snapshot).toMatchObject({ clients: [], openRounds: expect.any(Array) });
    const answer = await socket
      .timeout(10_000)
      .emitWithAck('run-control', { runId, action: 'stop' });
    expect(answer).toMatchObject({ ok: false, error: { code: 'FORBIDDEN' } });
  });

  it('lets an admin control a run, validates the request, and drops the socket at logout', async () => {
    const session = await fx.login('admin');
    const { socket } = await connect(session.cookie);
    const invalid = await socket
      .timeout(10_000)
      .emitWithAck('run-control', { runId, action: 'explode' });
    expect(invalid).toMatchObject({
      ok: false,
      error: { code: 'INVALID_ARGUMENT', data: { field: 'action' } },
    });
    const other = await fx.call<{ id: string }>('POST', '/runs', { as: admin, body: runBody() });
    const statuses: string[] = [];
    socket.on('run-status', (run: { id: string; status: string }) => {
      if (run.id === other.body.id) statuses.push(run.status);
    });
    const started = await socket
      .timeout(10_000)
      .emitWithAck('run-control', { runId: other.body.id, action: 'start' });
    expect(started).toMatchObject({ ok: true, run: { status: 'running' } });
    const stopped = await socket
      .timeout(10_000)
      .emitWithAck('run-control', { runId: other.body.id, action: 'stop' });
    expect(stopped).toMatchObject({ ok: true, run: { status: 'stopped' } });
    expect(statuses).toEqual(['running', 'stopped']);
    // Stopped is final on the live feed too, with the same refusal as REST.
    const restart = await socket
      .timeout(10_000)
      .emitWithAck('run-control', { runId: other.body.id, action: 'start' });
    expect(restart).toMatchObject({
      ok: false,
      error: { code: 'CONFLICT', message: `run ${other.body.id} was stopped; create a new run` },
    });

    const closed = new Promise<string>((resolve) => socket.on('disconnect', resolve));
    await fx.call('POST', '/auth/logout', { as: session });
    expect(await closed).toBe('io server disconnect');
    expect((await connect(session.cookie)).error?.code).toBe('UNAUTHORIZED');
  });
});

describe('the first admin', () => {
  const mainSource = fileURLToPath(new URL('../apps/coordinator/src/main.ts', import.meta.url));
  const cli = (args: string[], stdin: string) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', '--conditions=@tessera/source', mainSource, ...args],
        { stdio: ['pipe', 'pipe', 'pipe'] },
      );
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
      });
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      child.on('close', (code) => resolve({ code, stdout, stderr }));
      child.stdin.end(stdin);
    });

  it('is created by `tessera-coordinator create-admin --password-stdin`, and can log in', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-create-admin-'));
    try {
      const dataDir = join(dir, 'pglite');
      const created = await cli(
        ['create-admin', '--email', 'First@Example.org', '--password-stdin', '--data-dir', dataDir],
        `${PASSWORD}\n`,
      );
      expect(created.stderr).toBe('');
      expect(created.stdout).toMatch(/^created admin first@example\.org \(/);
      expect(created.code).toBe(0);
      const again = await cli(
        ['create-admin', '--email', 'first@example.org', '--password-stdin', '--data-dir', dataDir],
        PASSWORD,
      );
      expect(again.code).toBe(1);
      expect(again.stderr).toContain(
        'CONFLICT: a user with email first@example.org already exists',
      );
      const weak = await cli(
        ['create-admin', '--email', 'weak@example.org', '--password-stdin', '--data-dir', dataDir],
        'short',
      );
      expect(weak.stderr).toContain('password must be at least 10 characters');
      const noStdin = await cli(['create-admin', '--email', 'x@example.org'], '');
      expect(noStdin.stderr).toContain('needs --email and --password-stdin');

      const db = await openDatabase({ dataDir });
      try {
        const user = await db.accounts.verifyLogin('first@example.org', PASSWORD);
        expect(user?.role).toBe('admin');
      } finally {
        await db.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});

describe('serving the console', () => {
  it('serves index.html for the console routes only, with a CSP, and 404 for missing assets', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-console-dist-'));
    mkdirSync(join(dir, 'assets'));
    writeFileSync(join(dir, 'index.html'), '<!doctype html><title>console</title>');
    writeFileSync(join(dir, 'assets', 'app-1234.js'), 'console.log(1)');
    const server = createServer(
      createApi(fx.coordinator, { adminToken: 'another-token', consoleDir: dir }),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const get = (path: string) => fetch(`${base}${path}`, { headers: { accept: 'text/html' } });
    try {
      for (const path of ['/', '/runs', `/runs/${runId}/rounds/2`, '/federations/x', '/clients']) {
        const page = await get(path);
        expect(page.status, path).toBe(200);
        expect(await page.text()).toContain('<title>console</title>');
        expect(page.headers.get('content-security-policy')).toContain("default-src 'self'");
      }
      const asset = await get('/assets/app-1234.js');
      expect(asset.status).toBe(200);
      expect(asset.headers.get('cache-control')).toContain('immutable');
      expect((await get('/assets/missing.js')).status).toBe(404);
      expect((await get('/not-a-console-page')).status).toBe(404);
      const api = await get('/api/no-such-route');
      expect(api.status).toBe(404);
      expect(((await api.json()) as { error: WireError }).error.code).toBe('NOT_FOUND');
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
