// Tasks over REST, as an admin and a researcher meet them: a real coordinator (port 0, PGlite
// on disk), task definitions whose topologies tfjs writes in the test, and every refusal shown
// with its code and field and with the task table unchanged.
import { createHash } from 'node:crypto';
import { Coordinator, createLogger } from '@tessera/coordinator';
import { taskSha256 } from '@tessera/tasks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ConsoleFixture,
  SERVICE_TOKEN,
  type Session,
  startConsoleFixture,
} from './console-fixtures.js';
import { flowersTask, tabularParams, tabularTopology, weightsBin } from './task-fixtures.js';

/** Low enough that a model of a few thousand weights is "too large". */
const MAX_PARAMS = 10_000;

let fx: ConsoleFixture;
let researcher: Session;

interface TaskBody {
  name: string;
  version: number;
  sha256: string;
  paramCount: number;
  hasWeights: boolean;
  builtin: boolean;
  definition: Record<string, unknown>;
  notes?: string[];
  model?: {
    inputShape: number[];
    layers: { name: string; className: string; outputShape: number[]; paramCount: number }[];
  };
}
interface ErrorBody {
  error: { code: string; message: string; data?: { field?: string } };
}

beforeAll(async () => {
  fx = await startConsoleFixture({ maxTaskParams: MAX_PARAMS });
  researcher = await fx.login('researcher');
});
afterAll(async () => {
  await fx?.dispose();
});

const rowCount = async () => (await fx.db.tasks.list()).length;

/** A multipart create, as `curl -F definition=@task.json -F weights=@weights.bin` sends it. */
async function upload(
  path: string,
  parts: { definition?: unknown; weights?: Uint8Array; extra?: string },
): Promise<{ status: number; body: TaskBody & ErrorBody }> {
  const form = new FormData();
  if (parts.definition !== undefined) {
    form.append(
      'definition',
      new Blob([JSON.stringify(parts.definition)], { type: 'application/json' }),
      'task.json',
    );
  }
  if (parts.weights !== undefined)
    form.append('weights', new Blob([new Uint8Array(parts.weights)]), 'weights.bin');
  if (parts.extra !== undefined) form.append(parts.extra, 'x');
  const response = await fetch(`${fx.url}/api${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${SERVICE_TOKEN}` },
    body: form,
  });
  return { status: response.status, body: (await response.json()) as TaskBody & ErrorBody };
}

/** Expects a refusal with this status, code and field, and no row added. */
async function refused(
  request: Promise<{ status: number; body: unknown }>,
  status: number,
  code: string,
  field: string | undefined,
): Promise<ErrorBody> {
  const before = await rowCount();
  const { status: got, body } = await request;
  const error = body as ErrorBody;
  expect({ status: got, code: error.error?.code, field: error.error?.data?.field }).toEqual({
    status,
    code,
    field,
  });
  expect(await rowCount()).toBe(before);
  return error;
}

describe('built-in tasks', () => {
  it('are stored at start as tasks, once, even by two coordinators starting at once', async () => {
    const list = await fx.call<TaskBody[]>('GET', '/tasks', { as: researcher });
    expect(list.status).toBe(200);
    const builtins = list.body.filter((task) => task.builtin);
    expect(builtins.map((task) => `${task.name}@${task.version}`).sort()).toEqual([
      'mnist-2nn@1',
      'mnist-cnn@1',
      'mnist-mlp@1',
      'mnist-small-cnn@1',
      'penguins@1',
      'spam@1',
    ]);
    for (const task of builtins) expect(task.sha256).toBe(taskSha256(task.definition));

    // Two more coordinators on the same database, started together: still one row each.
    const logger = createLogger('error', () => {});
    const both = await Promise.all(
      [0, 1].map(() =>
        Coordinator.start({ db: fx.db, logger, port: 0, centralEvaluation: false, resume: false }),
      ),
    );
    await Promise.all(both.map((coordinator) => coordinator.close()));
    const after = (await fx.db.tasks.list()).filter((task) => task.builtin);
    expect(after).toHaveLength(6);
  });

  it("a built-in's parameter count is what its layers add up to", async () => {
    const detail = await fx.call<TaskBody>('GET', '/tasks/mnist-cnn', { as: researcher });
    expect(detail.status).toBe(200);
    expect(detail.body.paramCount).toBe(1_663_370);
    const layers = detail.body.model?.layers ?? [];
    expect(layers.reduce((sum, layer) => sum + layer.paramCount, 0)).toBe(1_663_370);
    // The spam task's Transformer layers are @tessera/ml's own classes: built all the same.
    const spam = await fx.call<TaskBody>('GET', '/tasks/spam', { as: researcher });
    expect(spam.body.paramCount).toBe(139_713);
    const spamLayers = spam.body.model?.layers ?? [];
    expect(spamLayers.reduce((sum, layer) => sum + layer.paramCount, 0)).toBe(139_713);
    expect(detail.body.model?.inputShape).toEqual([28, 28, 1]);
    expect(layers.at(-1)).toMatchObject({ className: 'Dense', outputShape: [10] });
  });
});

describe('POST /api/tasks', () => {
  it('creates version 1: checked, hashed, stored, then readable by name, sha256 and in the list', async () => {
    const definition = flowersTask();
    const created = await fx.call<TaskBody>('POST', '/tasks', { body: definition });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      name: 'flowers',
      version: 1,
      sha256: taskSha256(definition),
      paramCount: tabularParams(),
      hasWeights: false,
      builtin: false,
      notes: [],
    });

    const byName = await fx.call<TaskBody>('GET', '/tasks/flowers', { as: researcher });
    expect(byName.status).toBe(200);
    expect(byName.body.sha256).toBe(created.body.sha256);
    expect(byName.body.model).toEqual({
      inputShape: [6],
      layers: [
        expect.objectContaining({ className: 'Dense', outputShape: [16], paramCount: 6 * 16 + 16 }),
        expect.objectContaining({ className: 'Dense', outputShape: [3], paramCount: 16 * 3 + 3 }),
      ],
    });
    const bySha = await fx.call<TaskBody>('GET', `/tasks/by-sha256/${created.body.sha256}`, {
      as: researcher,
    });
    expect(bySha.status).toBe(200);
    expect(bySha.body.name).toBe('flowers');
    const list = await fx.call<TaskBody[]>('GET', '/tasks', { as: researcher });
    expect(list.body.map((task) => task.name)).toContain('flowers');
  });

  it('says when the input width could only be checked against its least value', async () => {
    const created = await fx.call<TaskBody>('POST', '/tasks', {
      body: flowersTask({ name: 'flowers-open', categories: false }),
    });
    expect(created.status).toBe(201);
    expect(created.body.notes).toEqual([expect.stringContaining('soil')]);
    expect(created.body.notes?.[0]).toContain('least');
  });

  it('takes a definition larger than the API-wide 1 MB JSON limit', async () => {
    const width = 1500;
    const columns = Array.from({ length: width }, (_, i) => ({
      name: `c${i}-${'x'.repeat(900)}`,
      type: 'numeric',
    }));
    const definition = {
      ...flowersTask({ name: 'wide', topology: tabularTopology(width, 3, 1) }),
      input: { kind: 'tabular', label: 'species', columns },
    };
    expect(JSON.stringify(definition).length).toBeGreaterThan(1_300_000);
    const created = await fx.call<TaskBody>('POST', '/tasks', { body: definition });
    expect(created.status).toBe(201);
    expect(created.body.paramCount).toBe(tabularParams(width, 3, 1));
  });

  it('refuses a body over 8 MB with 413', async () => {
    const huge = { ...flowersTask({ name: 'huge' }), description: 'x'.repeat(9 * 1024 * 1024) };
    await refused(fx.call('POST', '/tasks', { body: huge }), 413, 'PAYLOAD_TOO_LARGE', '(body)');
  });

  it('refuses each bad definition with its field, storing nothing', async () => {
    const post = (body: unknown) => fx.call('POST', '/tasks', { body });
    // Malformed topology: not a layers topology at all.
    await refused(
      post(flowersTask({ name: 'bad-1', topology: { layers: [] } })),
      400,
      'INVALID_ARGUMENT',
      'model.topology',
    );
    // An unknown layer, named with its place.
    const unknown = await refused(
      post(flowersTask({ name: 'bad-2', topology: tabularTopology(6, 3, 16, 'Dense3000') })),
      400,
      'INVALID_ARGUMENT',
      'model.topology.config.layers.1.class_name',
    );
    expect(unknown.error.message).toContain('Dense3000');
    // The model takes 5 features; the schema gives 6.
    const shape = await refused(
      post(flowersTask({ name: 'bad-3', topology: tabularTopology(5) })),
      400,
      'INVALID_ARGUMENT',
      'model.topology',
    );
    expect(shape.error.message).toContain('[5]');
    // 4 outputs for 3 classes.
    const output = await refused(
      post(flowersTask({ name: 'bad-4', topology: tabularTopology(6, 4) })),
      400,
      'INVALID_ARGUMENT',
      'model.topology',
    );
    expect(output.error.message).toContain('[3]');
    // Over --max-task-params.
    const large = await refused(
      post(flowersTask({ name: 'bad-5', topology: tabularTopology(6, 3, 2000) })),
      400,
      'INVALID_ARGUMENT',
      'model.topology',
    );
    expect(large.error.message).toContain(`${MAX_PARAMS}`);
    // A bad schema: the label column is also a feature.
    const schema = flowersTask({ name: 'bad-6' });
    (schema['input'] as { label: string }).label = 'width';
    await refused(post(schema), 400, 'INVALID_ARGUMENT', 'input.columns.1.name');
    // A bad name.
    await refused(post(flowersTask({ name: 'Bad Name' })), 400, 'INVALID_ARGUMENT', 'name');
    // Not JSON at all.
    await refused(
      fx.call('POST', '/tasks', {
        raw: new TextEncoder().encode('{"schemaVersion":'),
        contentType: 'application/json',
      }),
      400,
      'INVALID_ARGUMENT',
      '(body)',
    );
  });

  it('refuses a taken name with 409, and a researcher with 403', async () => {
    await fx.call('POST', '/tasks', { body: flowersTask({ name: 'taken' }) });
    const other = flowersTask({ name: 'taken', description: 'other content' });
    await refused(fx.call('POST', '/tasks', { body: other }), 409, 'CONFLICT', 'name');
    const asResearcher = await fx.call<ErrorBody>('POST', '/tasks', {
      as: researcher,
      body: flowersTask({ name: 'by-researcher' }),
    });
    expect(asResearcher.status).toBe(403);
    expect(await fx.db.tasks.byName('by-researcher').catch(() => null)).toBeNull();
  });
});

describe('POST /api/tasks/{name}/versions', () => {
  it('adds the next version; GET ?version= reads an older one; the same content twice is 409', async () => {
    const v1 = await fx.call<TaskBody>('POST', '/tasks', { body: flowersTask({ name: 'iris' }) });
    expect(v1.body.version).toBe(1);
    const next = flowersTask({ name: 'iris', topology: tabularTopology(6, 3, 8) });
    const v2 = await fx.call<TaskBody>('POST', '/tasks/iris/versions', { body: next });
    expect(v2.status).toBe(201);
    expect(v2.body).toMatchObject({ version: 2, paramCount: tabularParams(6, 3, 8) });
    expect((await fx.call<TaskBody>('GET', '/tasks/iris')).body.version).toBe(2);
    const old = await fx.call<TaskBody>('GET', '/tasks/iris?version=1');
    expect(old.body.sha256).toBe(v1.body.sha256);
    await refused(fx.call('POST', '/tasks/iris/versions', { body: next }), 409, 'CONFLICT', 'name');
    await refused(fx.call('GET', '/tasks/iris?version=0'), 400, 'INVALID_ARGUMENT', 'version');
    expect((await fx.call<ErrorBody>('GET', '/tasks/iris?version=9')).status).toBe(404);
  });

  it('refuses a definition of another name, and an unknown name', async () => {
    await refused(
      fx.call('POST', '/tasks/iris/versions', { body: flowersTask({ name: 'lily' }) }),
      400,
      'INVALID_ARGUMENT',
      'name',
    );
    await refused(
      fx.call('POST', '/tasks/nobody/versions', { body: flowersTask({ name: 'nobody' }) }),
      404,
      'NOT_FOUND',
      'name',
    );
  });
});

describe('initial weights (multipart)', () => {
  const params = tabularParams();
  const weights = weightsBin(params);
  const declared = {
    sha256: createHash('sha256').update(weights).digest('hex'),
    byteLength: weights.byteLength,
  };
  const withWeights = (name: string, declaration: unknown = declared) => {
    const task = flowersTask({ name });
    task.model['weights'] = declaration;
    return task;
  };

  it('stores weights that match the declaration', async () => {
    const created = await upload('/tasks', { definition: withWeights('seeded'), weights });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: 'seeded', hasWeights: true, paramCount: params });
    const stored = await fx.db.tasks.weights(created.body.sha256);
    expect(Buffer.from(stored ?? []).equals(Buffer.from(weights))).toBe(true);
  });

  it('takes a definition alone as multipart too', async () => {
    const created = await upload('/tasks', { definition: flowersTask({ name: 'plain-part' }) });
    expect(created.status).toBe(201);
    expect(created.body.hasWeights).toBe(false);
  });

  it('refuses weights that do not match, undeclared ones, missing ones and unknown parts', async () => {
    const changed = weights.slice();
    changed[0] = (changed[0] as number) ^ 1;
    await refused(
      upload('/tasks', { definition: withWeights('w-1'), weights: changed }),
      400,
      'INVALID_ARGUMENT',
      'model.weights.sha256',
    );
    await refused(
      upload('/tasks', {
        definition: withWeights('w-2'),
        weights: weights.subarray(0, weights.byteLength - 4),
      }),
      400,
      'INVALID_ARGUMENT',
      'model.weights.byteLength',
    );
    // Declared with the wrong length for the model: caught by the model check, before the bytes.
    await refused(
      upload('/tasks', {
        definition: withWeights('w-3', { ...declared, byteLength: declared.byteLength + 4 }),
        weights,
      }),
      400,
      'INVALID_ARGUMENT',
      'model.weights.byteLength',
    );
    await refused(
      upload('/tasks', { definition: flowersTask({ name: 'w-4' }), weights }),
      400,
      'INVALID_ARGUMENT',
      'model.weights',
    );
    await refused(
      upload('/tasks', { definition: withWeights('w-5') }),
      400,
      'INVALID_ARGUMENT',
      'weights',
    );
    await refused(upload('/tasks', { weights }), 400, 'INVALID_ARGUMENT', 'definition');
    await refused(
      upload('/tasks', { definition: flowersTask({ name: 'w-6' }), extra: 'notes' }),
      400,
      'INVALID_ARGUMENT',
      'notes',
    );
  });

  it('bounds the upload: the definition limit plus the weights of the largest model allowed', async () => {
    const tooMany = new Uint8Array(8 * 1024 * 1024 + 4 * MAX_PARAMS + 128 * 1024);
    await refused(
      upload('/tasks', { definition: withWeights('w-big'), weights: tooMany }),
      413,
      'PAYLOAD_TOO_LARGE',
      '(body)',
    );
  });

  it('refuses another content type with 415', async () => {
    await refused(
      fx.call('POST', '/tasks', { raw: weights, contentType: 'application/octet-stream' }),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
      undefined,
    );
  });
});

describe('reading tasks', () => {
  it('answers 404 for an unknown task and 400 for a malformed sha256', async () => {
    expect((await fx.call<ErrorBody>('GET', '/tasks/no-such-task')).status).toBe(404);
    expect((await fx.call<ErrorBody>('GET', `/tasks/by-sha256/${'0'.repeat(64)}`)).status).toBe(
      404,
    );
    const bad = await fx.call<ErrorBody>('GET', '/tasks/by-sha256/xyz');
    expect(bad.status).toBe(400);
    expect(bad.body.error.data?.field).toBe('sha256');
  });

  it('needs a signed-in caller', async () => {
    expect((await fx.call('GET', '/tasks', { as: 'none' })).status).toBe(401);
  });

  it('is in the OpenAPI document', async () => {
    const doc = await fx.call<{ paths: Record<string, Record<string, unknown>> }>(
      'GET',
      '/openapi.json',
    );
    const paths = doc.body.paths;
    expect(Object.keys(paths['/api/tasks'] ?? {}).sort()).toEqual(['get', 'post']);
    expect(Object.keys(paths['/api/tasks/{name}/versions'] ?? {})).toEqual(['post']);
    expect(Object.keys(paths['/api/tasks/{name}'] ?? {})).toEqual(['get']);
    expect(Object.keys(paths['/api/tasks/by-sha256/{sha256}'] ?? {})).toEqual(['get']);
    const post = paths['/api/tasks']?.['post'] as {
      requestBody: { content: Record<string, unknown> };
    };
    expect(Object.keys(post.requestBody.content).sort()).toEqual([
      'application/json',
      'multipart/form-data',
    ]);
  });
});
