import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { readTabular, tabularExamples } from '@tessera/data';
import type { RoundRecord } from '@tessera/db';
import { buildTaskModel, evaluateModel, setFlatWeights, taskObjective } from '@tessera/ml';
import { bytesToWeights, PROTOCOL_VERSION, type TrainInstruction } from '@tessera/protocol';
import { parseTaskDefinition, type TaskDefinition, taskSha256 } from '@tessera/tasks';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFederation, type Harness, startHarness, waitFor } from './harness.js';
import { closeRawSockets, openRawSocket, rawClientInfo, sendWithAck } from './raw-client.js';
import { tabularTopology } from './task-fixtures.js';

/**
 * Serving any task (issue 17, item 6): an admin uploads a held-out set for a task, the
 * coordinator evaluates each round's model on it (figures checked against @tessera/ml run
 * here on the same weights and rows), predict answers in the task's terms (class names,
 * probabilities, values) for tabular, text and image tasks, and the tfjs download reloads and
 * predicts the same. Every bad input is refused with a code and the field, storing nothing.
 */

const MAX_HOLDOUT_BYTES = 8 * 1024;

/** Ward risk: 3 standardised numeric columns, 1 categorical of 3 categories, 3 classes. */
const wardRisk = {
  schemaVersion: 1,
  name: 'ward-serving',
  input: {
    kind: 'tabular',
    label: 'risk',
    columns: [
      { name: 'age', type: 'numeric', standardize: { mean: 50, std: 15 } },
      { name: 'pulse', type: 'numeric', standardize: { mean: 80, std: 12 } },
      { name: 'temperature', type: 'numeric', standardize: { mean: 37, std: 0.8 } },
      { name: 'ward', type: 'categorical', categories: ['a', 'b', 'c'] },
    ],
  },
  output: { kind: 'multiclass', classes: ['low', 'mid', 'high'] },
  loss: 'softmax-cross-entropy',
  metrics: ['accuracy'],
  model: { topology: tabularTopology(6, 3, 16) },
};
const wardTask = parseTaskDefinition(wardRisk);

/** A word-level spam task: 6 words, 5 tokens, Embedding -> average -> sigmoid. */
function spamTopology() {
  const model = tfl.sequential({
    layers: [
      tfl.layers.embedding({ inputDim: 8, outputDim: 4, inputLength: 5 }),
      tfl.layers.globalAveragePooling1d({}),
      tfl.layers.dense({ units: 1, activation: 'sigmoid' }),
    ],
  });
  const topology = model.toJSON(null, false) as Record<string, unknown>;
  model.dispose();
  return topology;
}
const spam = {
  schemaVersion: 1,
  name: 'spam-serving',
  input: {
    kind: 'text',
    maxLength: 5,
    tokenizer: {
      kind: 'word',
      lowercase: true,
      vocabulary: ['win', 'money', 'now', 'hello', 'meeting', 'free'],
    },
  },
  output: { kind: 'binary', classes: ['ham', 'spam'] },
  loss: 'sigmoid-binary-cross-entropy',
  metrics: ['accuracy', 'auc'],
  model: { topology: spamTopology() },
};

/** A 4x4 RGB image task: Flatten -> Dense(2, softmax). */
function tileTopology() {
  const model = tfl.sequential({
    layers: [
      tfl.layers.flatten({ inputShape: [4, 4, 3] }),
      tfl.layers.dense({ units: 2, activation: 'softmax' }),
    ],
  });
  const topology = model.toJSON(null, false) as Record<string, unknown>;
  model.dispose();
  return topology;
}
const tiles = {
  schemaVersion: 1,
  name: 'tiles-serving',
  input: { kind: 'image', height: 4, width: 4, channels: 3, valueRange: { min: 0, max: 255 } },
  output: { kind: 'multiclass', classes: ['dark', 'light'] },
  loss: 'softmax-cross-entropy',
  metrics: ['accuracy'],
  model: { topology: tileTopology() },
};

/** Deterministic ward rows: the label follows age and pulse, so a model can be right or wrong. */
function wardCsv(rows: number, options: { badLine?: number } = {}): string {
  const lines = ['risk,ward,temperature,pulse,age,notes'];
  for (let k = 0; k < rows; k++) {
    const age = 20 + ((k * 37) % 70);
    const pulse = 55 + ((k * 13) % 60);
    const temperature = (36 + ((k * 7) % 30) / 10).toFixed(1);
    const ward = ['a', 'b', 'c'][k % 3];
    const risk = age + pulse > 150 ? 'high' : age + pulse > 120 ? 'mid' : 'low';
    lines.push(
      options.badLine === k + 2
        ? `${risk},${ward},warm,${pulse},${age},x`
        : `${risk},${ward},${temperature},${pulse},${age},free text`,
    );
  }
  return `${lines.join('\n')}\n`;
}

interface ErrorBody {
  error: { code: string; message: string; data?: Record<string, unknown> & { field?: string } };
}
interface PredictBody {
  round: number;
  task: { name: string; sha256: string };
  predictions: Array<{
    class?: string;
    probabilities?: Record<string, number>;
    value?: number;
    tokens?: number;
    truncated?: boolean;
  }>;
}

let h: Harness;
let federationId: string;
let tokens: { token: string; client: { id: string } }[];

async function call<T>(
  method: string,
  path: string,
  init: { body?: BodyInit; contentType?: string; json?: unknown } = {},
): Promise<{ status: number; body: T }> {
  const headers: Record<string, string> = {};
  if (init.json !== undefined) headers['content-type'] = 'application/json';
  else if (init.contentType !== undefined) headers['content-type'] = init.contentType;
  const body = init.json !== undefined ? JSON.stringify(init.json) : init.body;
  const response = await fetch(`${h.coordinator.url}/api${path}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body }),
  });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : null) as T };
}

/** PUT of a held-out set as multipart: the file, under `fileName`, and extra fields. */
function uploadHoldout(
  task: string,
  version: number,
  content: string | Uint8Array<ArrayBuffer>,
  fileName: string,
  fields: Record<string, string> = {},
) {
  const form = new FormData();
  form.set('holdout', new Blob([content]), fileName);
  for (const [key, value] of Object.entries(fields)) form.set(key, value);
  return call<ErrorBody & Record<string, unknown>>(
    'PUT',
    `/tasks/${task}/versions/${version}/holdout`,
    { body: form },
  );
}

/** Expects a refusal with this status, code and field. */
function expectRefused(
  answer: { status: number; body: unknown },
  status: number,
  code: string,
  field: string,
) {
  const { error } = answer.body as ErrorBody;
  expect({ status: answer.status, code: error?.code, field: error?.data?.field }).toEqual({
    status,
    code,
    field,
  });
  return error;
}

beforeAll(async () => {
  h = await startHarness({ centralEvaluation: true, maxHoldoutBytes: MAX_HOLDOUT_BYTES });
  for (const task of [wardRisk, spam, tiles]) {
    const created = await h.api('POST', '/tasks', task);
    expect(created.status).toBe(201);
  }
  ({ federationId, tokens } = await createFederation(h, 1));
});
afterAll(async () => {
  closeRawSockets();
  await h?.dispose();
});

const storedHoldouts = async () => [...(await h.db.tasks.holdouts()).values()];

describe('held-out sets', () => {
  it('refuses a bad file with its line and column, a wrong format, an unknown part, a large file: nothing stored', async () => {
    const bad = expectRefused(
      await uploadHoldout('ward-serving', 1, wardCsv(10, { badLine: 5 }), 'ward.csv'),
      400,
      'INVALID_ARGUMENT',
      'holdout',
    );
    expect(bad.data).toMatchObject({ file: 'ward.csv', line: 5, column: 'temperature' });
    expect(bad.message).toContain("'warm' is not a number");

    const missing = expectRefused(
      await uploadHoldout('ward-serving', 1, 'risk,age\nlow,40\n', 'ward.csv'),
      400,
      'INVALID_ARGUMENT',
      'holdout',
    );
    expect(missing.data).toMatchObject({ line: 1, column: 'pulse' });

    const label = expectRefused(
      await uploadHoldout('ward-serving', 1, wardCsv(3).replace('\nlow,', '\nnone,'), 'w.csv'),
      400,
      'INVALID_ARGUMENT',
      'holdout',
    );
    expect(label.data).toMatchObject({ column: 'risk' });

    expectRefused(
      await uploadHoldout('ward-serving', 1, wardCsv(3), 'ward.jsonl'),
      400,
      'INVALID_ARGUMENT',
      'format',
    );
    expectRefused(
      await uploadHoldout('ward-serving', 1, wardCsv(3), 'ward.txt'),
      400,
      'INVALID_ARGUMENT',
      'format',
    );
    expectRefused(
      await uploadHoldout('ward-serving', 1, wardCsv(3), 'ward.csv', { format: 'xlsx' }),
      400,
      'INVALID_ARGUMENT',
      'format',
    );
    expectRefused(
      await uploadHoldout('ward-serving', 1, wardCsv(3), 'ward.csv', { extra: '1' }),
      400,
      'INVALID_ARGUMENT',
      'extra',
    );
    expectRefused(
      await uploadHoldout('ward-serving', 1, new Uint8Array([0xff, 0xfe, 0x00]), 'ward.csv'),
      400,
      'INVALID_ARGUMENT',
      'holdout',
    );
    expectRefused(
      await uploadHoldout('tiles-serving', 1, 'a,b\n1,2\n', 'tiles.csv'),
      400,
      'INVALID_ARGUMENT',
      'format',
    );
    expectRefused(
      await uploadHoldout('ward-serving', 7, wardCsv(3), 'ward.csv'),
      404,
      'NOT_FOUND',
      'task',
    );
    expectRefused(
      await uploadHoldout('ward-serving', 0, wardCsv(3), 'ward.csv'),
      400,
      'INVALID_ARGUMENT',
      'version',
    );
    const large = await uploadHoldout('ward-serving', 1, wardCsv(400), 'ward.csv');
    expect(large.status).toBe(413);
    expect(large.body.error.code).toBe('PAYLOAD_TOO_LARGE');
    const json = await call<ErrorBody>('PUT', '/tasks/ward-serving/versions/1/holdout', {
      json: { holdout: 'risk,age' },
    });
    expect(json.status).toBe(415);
    expect(await storedHoldouts()).toEqual([]);
    expect(
      (await h.api<{ holdout: unknown }>('GET', '/tasks/ward-serving')).body.holdout,
    ).toBeNull();
  });

  it("stores a task's held-out set and shows it in the task's GET and the list", async () => {
    const csv = wardCsv(60);
    const stored = await uploadHoldout('ward-serving', 1, csv, 'ward.csv');
    expect(stored.status).toBe(200);
    expect(stored.body).toMatchObject({ format: 'csv', rows: 60, byteLength: csv.length });
    const detail = await h.api<{ holdout: Record<string, unknown> }>('GET', '/tasks/ward-serving');
    expect(detail.body.holdout).toEqual(stored.body);
    const list = await h.api<Array<{ name: string; holdout: unknown }>>('GET', '/tasks');
    expect(list.body.find((task) => task.name === 'ward-serving')?.holdout).toEqual(stored.body);
    expect(list.body.find((task) => task.name === 'spam-serving')?.holdout).toBeNull();

    // JSON Lines for a text task; a bad line is named.
    const badLine = expectRefused(
      await uploadHoldout(
        'spam-serving',
        1,
        '{"text": "win money", "label": "spam"}\n{"text": "hi", "label": "eggs"}\n',
        'spam.jsonl',
      ),
      400,
      'INVALID_ARGUMENT',
      'holdout',
    );
    expect(badLine.data).toMatchObject({ line: 2, column: 'label' });
    const texts = await uploadHoldout(
      'spam-serving',
      1,
      '{"text": "win money now", "label": "spam"}\n{"text": "hello meeting", "label": "ham"}\n',
      'spam.jsonl',
    );
    expect(texts.body).toMatchObject({ format: 'jsonl', rows: 2 });
  });
});

describe('a tabular task, end to end', () => {
  let runId: string;
  /** What the raw client sent, by `<runId>:<round>` (it trains the other tests' runs too). */
  const sentWeights = new Map<string, Float32Array>();

  /** The task's features of one row, encoded here by hand: standardised, then one-hot. */
  const encodeWard = (row: { age: number; pulse: number; temperature: number; ward: string }) => [
    (row.age - 50) / 15,
    (row.pulse - 80) / 12,
    (row.temperature - 37) / 0.8,
    row.ward === 'a' ? 1 : 0,
    row.ward === 'b' ? 1 : 0,
    row.ward === 'c' ? 1 : 0,
  ];
  const patient = { age: 71, pulse: 102, temperature: 38.4, ward: 'b' };

  /** The model of a round, built here from the task and the checkpoint. */
  async function localModel(round: number) {
    const checkpoint = await h.db.rounds.checkpoint(runId, round);
    const model = await buildTaskModel(wardTask, { seed: 0 });
    setFlatWeights(model, bytesToWeights(checkpoint.weights, checkpoint.paramCount));
    return model;
  }

  beforeAll(async () => {
    const run = await h.api<{ id: string }>('POST', '/runs', {
      federationId,
      task: { name: 'ward-serving' },
      rounds: 2,
      minClients: 1,
      roundDeadlineMs: 60_000,
      seed: 11,
    });
    runId = run.body.id;
    // A raw client that answers each train with the weights it got, moved a little: each
    // round's model differs, so the central figures are of that round's weights.
    const raw = openRawSocket(h.coordinator.url, {
      token: tokens[0]?.token,
      protocolVersion: PROTOCOL_VERSION,
      client: rawClientInfo({ numExamples: 10, numHoldout: 0 }),
    });
    raw.on('train', (instruction: TrainInstruction) => {
      const weights = new Float32Array(
        instruction.weights.buffer.slice(
          instruction.weights.byteOffset,
          instruction.weights.byteOffset + instruction.weights.byteLength,
        ),
      );
      for (let k = 0; k < weights.length; k++)
        weights[k] = (weights[k] as number) + 0.05 * Math.sin(k);
      sentWeights.set(`${instruction.runId}:${instruction.round}`, weights);
      void sendWithAck(raw, 'update', {
        status: 'ok',
        runId: instruction.runId,
        round: instruction.round,
        weights: new Uint8Array(weights.buffer),
        numExamples: 10,
        durationMs: 1,
        metrics: { loss: 1 },
      });
    });
    await new Promise<void>((resolve) => raw.on('welcome', () => resolve()));
    expect((await h.api('POST', `/runs/${runId}/start`)).status).toBe(202);
    await waitFor(
      async () =>
        (await h.db.rounds.list(runId)).filter((r) => r.status === 'evaluated').length === 2,
      'two evaluated rounds',
    );
  });

  it("evaluates each round's model on the held-out set: the figures of @tessera/ml on the same weights", async () => {
    const rounds = await h.db.rounds.list(runId);
    const holdout = tabularExamples(
      readTabular(wardCsv(60), wardTask.input as never, wardTask.output),
      wardTask.input as never,
    );
    for (const round of rounds) {
      const model = await localModel(round.number);
      const expected = await evaluateModel(
        model,
        { x: holdout.x, y: holdout.y, count: holdout.count },
        1000,
        taskObjective(wardTask),
      );
      model.dispose();
      expect(round.centralNumExamples).toBe(60);
      expect(round.centralLoss).toBeCloseTo(expected.loss, 6);
      expect(round.centralAccuracy).toBe(expected.accuracy);
      expect(round.centralMetrics).toEqual({
        loss: round.centralLoss,
        accuracy: round.centralAccuracy,
      });
    }
    // The rounds' models differ, and so do their figures.
    expect(rounds[0]?.centralLoss).not.toBe(rounds[1]?.centralLoss);
    const over = await h.api<Array<Record<string, unknown>>>('GET', `/runs/${runId}/rounds`);
    expect(over.body[1]?.['centralMetrics']).toEqual(rounds[1]?.centralMetrics);
  });

  it('predicts class names and probabilities for one row and for several', async () => {
    const model = await localModel(2);
    const local = tf.tidy(() =>
      Array.from(
        (
          model.predict(
            tf.tensor2d([encodeWard(patient), encodeWard({ ...patient, ward: 'c', age: 22 })]),
          ) as tf.Tensor
        ).dataSync(),
      ),
    );
    model.dispose();
    const one = await h.api<PredictBody>('POST', `/runs/${runId}/predict`, { features: patient });
    expect(one.status).toBe(200);
    expect(one.body.round).toBe(2);
    expect(one.body.task.sha256).toBe(taskSha256(wardRisk));
    expect(one.body.predictions).toHaveLength(1);
    const [first] = one.body.predictions;
    expect(Object.keys(first?.probabilities ?? {})).toEqual(['low', 'mid', 'high']);
    ['low', 'mid', 'high'].forEach((name, k) => {
      expect(first?.probabilities?.[name]).toBeCloseTo(local[k] as number, 5);
    });
    const best = ['low', 'mid', 'high'][local.slice(0, 3).indexOf(Math.max(...local.slice(0, 3)))];
    expect(first?.class).toBe(best);
    expect(one.body).not.toHaveProperty('class');

    const two = await h.api<PredictBody>('POST', `/runs/${runId}/predict?round=2`, {
      rows: [patient, { ...patient, ward: 'c', age: 22 }],
    });
    expect(two.body.predictions).toHaveLength(2);
    expect(two.body.predictions[1]?.probabilities?.['high']).toBeCloseTo(local[5] as number, 5);
  });

  it('refuses an input that does not fit the task, with the field, and stores nothing', async () => {
    const before = JSON.stringify(await h.db.rounds.list(runId));
    const tasksBefore = JSON.stringify(await h.db.tasks.list());
    const predict = (body: unknown) => h.api<ErrorBody>('POST', `/runs/${runId}/predict`, body);
    const cases: Array<[unknown, string, string?]> = [
      [{ features: { ...patient, colour: 'red' } }, 'features.colour', 'unknown column'],
      [{ features: { age: 1, temperature: 37, ward: 'a' } }, 'features.pulse', 'missing'],
      [{ features: { ...patient, age: 'old' } }, 'features.age', 'must be a number'],
      [{ features: { ...patient, ward: 'z' } }, 'features.ward', 'not one of the categories'],
      [{ features: { ...patient, risk: 'low' } }, 'features.risk', 'the label column'],
      [{ rows: [patient, { ...patient, pulse: null }] }, 'rows.1.pulse'],
      [{ rows: [] }, 'rows'],
      [{ rows: new Array(101).fill(patient) }, 'rows'],
      [{ text: 'hello' }, 'text', 'tabular task'],
      [{ pixels: [0, 1] }, 'pixels', 'tabular task'],
      [{ features: patient, text: 'x' }, '(body)', 'exactly one'],
      [{}, '(body)'],
      [{ feature: patient }, '(body)'],
    ];
    for (const [body, field, message] of cases) {
      const error = expectRefused(await predict(body), 400, 'INVALID_ARGUMENT', field);
      if (message !== undefined) expect(error.message).toContain(message);
    }
    const png = new PNG({ width: 2, height: 2 });
    const image = await call<ErrorBody>('POST', `/runs/${runId}/predict`, {
      body: new Uint8Array(PNG.sync.write(png)),
      contentType: 'image/png',
    });
    expect(image.status).toBe(415);
    expect(JSON.stringify(await h.db.rounds.list(runId))).toBe(before);
    expect(JSON.stringify(await h.db.tasks.list())).toBe(tasksBefore);
  });

  it('downloads the model in tfjs format for the task: it reloads and predicts the same', async () => {
    const json = await call<{
      modelTopology: object;
      weightsManifest: Array<{ paths: string[]; weights: tf.io.WeightsManifestEntry[] }>;
    }>('GET', `/runs/${runId}/model/model.json?round=1`);
    expect(json.status).toBe(200);
    expect(json.body.weightsManifest[0]?.paths).toEqual(['weights.bin?round=1']);
    const response = await fetch(
      `${h.coordinator.url}/api/runs/${runId}/model/weights.bin?round=1`,
    );
    const bytes = new Uint8Array(await response.arrayBuffer());
    // The round's checkpoint, as stored: the client's round-1 update (the only one).
    expect(Array.from(new Float32Array(bytes.buffer))).toEqual(
      Array.from(sentWeights.get(`${runId}:1`) ?? []),
    );
    const model = await tfl.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: json.body.modelTopology,
        weightSpecs: json.body.weightsManifest[0]?.weights ?? [],
        weightData: bytes.buffer,
      }),
    );
    const local = tf.tidy(() =>
      Array.from((model.predict(tf.tensor2d([encodeWard(patient)])) as tf.Tensor).dataSync()),
    );
    model.dispose();
    const served = await h.api<PredictBody>('POST', `/runs/${runId}/predict?round=1`, {
      features: patient,
    });
    ['low', 'mid', 'high'].forEach((name, k) => {
      expect(served.body.predictions[0]?.probabilities?.[name]).toBeCloseTo(local[k] as number, 5);
    });
  });
});

/**
 * A run of `task` (one round), started: its round-0 model is there to serve at once, and the
 * federation's raw client trains its round 1. `evaluated`: that round's record once its
 * evaluation step is over (with or without results).
 */
async function startedRun(
  task: string,
): Promise<{ runId: string; evaluated: Promise<RoundRecord> }> {
  const run = await h.api<{ id: string }>('POST', '/runs', {
    federationId,
    task: { name: task },
    rounds: 1,
    minClients: 1,
    roundDeadlineMs: 60_000,
    seed: 5,
  });
  const runId = run.body.id;
  const evaluated = new Promise<RoundRecord>((resolve) => {
    const listener = (summary: { runId: string; record: RoundRecord }) => {
      if (summary.runId !== runId) return;
      h.coordinator.off('round-evaluated', listener);
      resolve(summary.record);
    };
    h.coordinator.on('round-evaluated', listener);
  });
  expect((await h.api('POST', `/runs/${runId}/start`)).status).toBe(202);
  await waitFor(() => h.db.rounds.latestCheckpoint(runId), 'the initial checkpoint');
  return { runId, evaluated };
}

async function roundZeroModel(runId: string, task: TaskDefinition) {
  const checkpoint = await h.db.rounds.checkpoint(runId, 0);
  const model = await buildTaskModel(task, { seed: 0 });
  setFlatWeights(model, bytesToWeights(checkpoint.weights, checkpoint.paramCount));
  return model;
}

describe('a text task', () => {
  it('predicts both classes of a binary task from a string, with its token count', async () => {
    const { runId, evaluated } = await startedRun('spam-serving');
    const model = await roundZeroModel(runId, parseTaskDefinition(spam));
    // Ids: 0 pad, 1 unknown, 2 + the word's place in the vocabulary.
    const local = tf.tidy(() =>
      Array.from(
        (
          model.predict(
            tf.tensor2d([
              [2, 3, 4, 1, 0],
              [5, 6, 7, 2, 3],
            ]),
          ) as tf.Tensor
        ).dataSync(),
      ),
    );
    model.dispose();
    // Round 0, by number: the federation's raw client may have trained round 1 meanwhile.
    const one = await h.api<PredictBody>('POST', `/runs/${runId}/predict?round=0`, {
      text: 'Win MONEY now, stranger!',
    });
    expect(one.status).toBe(200);
    const [answer] = one.body.predictions;
    expect(answer?.probabilities?.['spam']).toBeCloseTo(local[0] as number, 5);
    expect(answer?.probabilities?.['ham']).toBeCloseTo(1 - (local[0] as number), 5);
    expect(answer?.class).toBe((local[0] as number) >= 0.5 ? 'spam' : 'ham');
    expect(answer).toMatchObject({ tokens: 4, truncated: false });

    const two = await h.api<PredictBody>('POST', `/runs/${runId}/predict?round=0`, {
      texts: ['hello meeting', 'hello meeting free win money extra'],
    });
    expect(two.body.predictions[1]?.probabilities?.['spam']).toBeCloseTo(local[1] as number, 5);
    expect(two.body.predictions[1]).toMatchObject({ tokens: 6, truncated: true });

    const tooLong = expectRefused(
      await h.api('POST', `/runs/${runId}/predict`, { text: 'a'.repeat(100_001) }),
      400,
      'INVALID_ARGUMENT',
      'text',
    );
    expect(tooLong.message).toContain('text too long');
    expectRefused(
      await h.api('POST', `/runs/${runId}/predict`, { texts: ['ok', 7] }),
      400,
      'INVALID_ARGUMENT',
      'texts.1',
    );
    expectRefused(
      await h.api('POST', `/runs/${runId}/predict`, { features: { text: 'x' } }),
      400,
      'INVALID_ARGUMENT',
      'features',
    );

    // Its round 1 is evaluated on the JSON Lines held-out set: 2 texts, the task's metrics.
    const round = await evaluated;
    expect(round.centralNumExamples).toBe(2);
    expect(Object.keys(round.centralMetrics ?? {}).sort()).toEqual(['accuracy', 'auc', 'loss']);
    expect(round.centralMetrics?.['loss']).toBe(round.centralLoss);
  });
});

describe('an image task', () => {
  it('predicts from pixels in the value range, and from a PNG resized to the task shape', async () => {
    const { runId, evaluated } = await startedRun('tiles-serving');
    const model = await roundZeroModel(runId, parseTaskDefinition(tiles));
    // An 8x8 PNG: the left half red, the right half blue; 4x4 after area-averaging 2x2 blocks.
    const png = new PNG({ width: 8, height: 8 });
    const raw: number[] = [];
    for (let y = 0; y < 8; y++) {
      for (let x = 0; x < 8; x++) {
        const at = 4 * (y * 8 + x);
        png.data[at] = x < 4 ? 200 : 0;
        png.data[at + 1] = 0;
        png.data[at + 2] = x < 4 ? 0 : 100;
        png.data[at + 3] = 255;
      }
    }
    for (let y = 0; y < 4; y++) {
      for (let x = 0; x < 4; x++) raw.push(x < 2 ? 200 : 0, 0, x < 2 ? 0 : 100);
    }
    const local = tf.tidy(() =>
      Array.from(
        (
          model.predict(
            tf.tensor4d(
              raw.map((v) => v / 255),
              [1, 4, 4, 3],
            ),
          ) as tf.Tensor
        ).dataSync(),
      ),
    );
    model.dispose();
    const fromPixels = await h.api<PredictBody>('POST', `/runs/${runId}/predict?round=0`, {
      pixels: raw,
    });
    expect(fromPixels.status).toBe(200);
    expect(fromPixels.body.predictions[0]?.probabilities?.['light']).toBeCloseTo(
      local[1] as number,
      5,
    );
    const fromPng = await call<PredictBody>('POST', `/runs/${runId}/predict?round=0`, {
      body: new Uint8Array(PNG.sync.write(png)),
      contentType: 'image/png',
    });
    expect(fromPng.status).toBe(200);
    expect(fromPng.body.predictions[0]?.probabilities?.['dark']).toBeCloseTo(local[0] as number, 5);

    expectRefused(
      await h.api('POST', `/runs/${runId}/predict`, { pixels: raw.slice(1) }),
      400,
      'INVALID_ARGUMENT',
      'pixels',
    );
    expectRefused(
      await h.api('POST', `/runs/${runId}/predict`, { pixels: [...raw.slice(1), 256] }),
      400,
      'INVALID_ARGUMENT',
      'pixels.47',
    );
    expectRefused(
      await h.api('POST', `/runs/${runId}/predict`, { rows: [{ a: 1 }] }),
      400,
      'INVALID_ARGUMENT',
      'rows',
    );

    // No held-out set for this task (and no client evaluates): no central evaluation.
    const round = await evaluated;
    expect(round.number).toBe(1);
    expect(round).toMatchObject({ centralLoss: null, centralAccuracy: null, centralMetrics: null });
  });
});
