// Property-based fuzz of every REST route that takes a JSON body, against a real coordinator on
// port 0: arbitrary JSON values, and valid bodies with one field made hostile (NUL bytes, lone
// surrogates, numbers past float64, wrong types, nesting past the bound). Every answer is a 4xx
// with the `{error: {code, message}}` shape, never a 5xx, and no row is stored.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ConsoleFixture, startConsoleFixture } from './console-fixtures.js';

let fx: ConsoleFixture;
let federationId: string;
let runId: string;

beforeAll(async () => {
  fx = await startConsoleFixture();
  federationId = (await fx.call<{ id: string }>('POST', '/federations', { body: { name: 'fuzz' } }))
    .body.id;
  runId = (
    await fx.call<{ id: string }>('POST', '/runs', {
      body: { federationId, model: 'fedavg-2nn', rounds: 1 },
    })
  ).body.id;
});
afterAll(() => fx?.dispose());

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

/** JSON text, not a value: numbers past float64 and nesting are written as they are. */
type JsonText = string;

const hostileString = fc.oneof(
  fc.string().map((s) => `${s}\u0000${s}`),
  fc.string().map((s) => `${s}\ud800`),
  fc.string().map((s) => `\udfff${s}`),
  fc.constant('\u0000'),
);
const hostileText: fc.Arbitrary<JsonText> = fc.oneof(
  hostileString.map((s) => JSON.stringify(s)),
  fc.constantFrom('1e400', '-1e400', '123456789012345678901234567890', '-0.5e-400'),
  fc.constantFrom('true', 'false', '[]', '[[["x"]]]', '{"\\u0000":1}', '{"k":"\\ud800"}'),
  fc.integer({ min: 33, max: 3000 }).map((depth) => `${'['.repeat(depth)}${']'.repeat(depth)}`),
  fc
    .integer({ min: 33, max: 3000 })
    .map((depth) => `${'{"a":'.repeat(depth)}null${'}'.repeat(depth)}`),
);

/** Each route with a valid body, and the fields whose hostile value must be refused. */
function routes() {
  return [
    {
      path: '/auth/login',
      valid: { email: 'someone@example.org', password: 'a long enough password' },
      fields: ['email', 'password'],
      as: 'none' as const,
    },
    {
      path: '/users',
      valid: {
        email: 'new@example.org',
        name: 'New',
        role: 'researcher',
        password: 'long enough pw',
      },
      fields: ['email', 'name', 'role', 'password'],
    },
    {
      path: '/federations',
      valid: { name: 'f', description: 'd' },
      fields: ['name', 'description'],
    },
    {
      path: `/federations/${federationId}/clients`,
      valid: { organisation: 'o', label: 'l' },
      fields: ['organisation', 'label'],
    },
    {
      path: '/runs',
      valid: {
        federationId,
        name: 'r',
        model: 'fedavg-2nn',
        strategy: 'fedavg',
        strategyOptions: {},
        rounds: 1,
        minClients: 1,
        roundDeadlineMs: 1000,
        localEpochs: 1,
        batchSize: 10,
        learningRate: 0.1,
        seed: 1,
        data: { dataset: 'mnist' },
      },
      fields: [
        'federationId',
        'name',
        'model',
        'strategy',
        'strategyOptions',
        'rounds',
        'minClients',
        'roundDeadlineMs',
        'localEpochs',
        'batchSize',
        'learningRate',
        'seed',
        'data',
      ],
    },
    {
      path: `/runs/${runId}/predict`,
      valid: { pixels: new Array(784).fill(0) },
      fields: ['pixels'],
    },
  ];
}

/** A valid body as JSON text with one field's value replaced by hostile JSON text. */
function withField(valid: Record<string, unknown>, field: string, value: JsonText): JsonText {
  const entries = Object.entries({ ...valid, [field]: null }).map(([key, current]) =>
    key === field
      ? `${JSON.stringify(key)}:${value}`
      : `${JSON.stringify(key)}:${JSON.stringify(current)}`,
  );
  return `{${entries.join(',')}}`;
}

async function post(path: string, text: JsonText, as: 'none' | 'service') {
  return fx.call<{ error?: { code?: unknown; message?: unknown } }>('POST', path, {
    as,
    raw: new TextEncoder().encode(text),
    contentType: 'application/json',
  });
}

function expectRefusal(answer: Awaited<ReturnType<typeof post>>, what: string): void {
  expect(answer.status, what).toBeGreaterThanOrEqual(400);
  expect(answer.status, what).toBeLessThan(500);
  expect(typeof answer.body.error?.code, what).toBe('string');
  expect(typeof answer.body.error?.message, what).toBe('string');
}

describe('fuzzing every REST body', () => {
  it('answers arbitrary JSON with a 4xx error and stores nothing', async () => {
    const before = await rowCounts();
    const anyJson = fc.oneof(
      fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.stringify(value) ?? 'null'),
      hostileText,
    );
    for (const route of routes()) {
      await fc.assert(
        fc.asyncProperty(anyJson, async (text) => {
          expectRefusal(
            await post(route.path, text, route.as ?? 'service'),
            `${route.path} ${text.slice(0, 200)}`,
          );
        }),
        { numRuns: 25 },
      );
    }
    expect(await rowCounts()).toEqual(before);
  }, 120_000);

  it('refuses a valid body with any one field made hostile, and stores nothing', async () => {
    const before = await rowCounts();
    for (const route of routes()) {
      await fc.assert(
        fc.asyncProperty(fc.constantFrom(...route.fields), hostileText, async (field, value) => {
          const text = withField(route.valid, field, value);
          const answer = await post(route.path, text, route.as ?? 'service');
          expectRefusal(answer, `${route.path} ${field}=${value.slice(0, 200)}`);
        }),
        { numRuns: 30 },
      );
    }
    expect(await rowCounts()).toEqual(before);
  }, 120_000);
});
