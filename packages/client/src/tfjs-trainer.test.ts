import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { createRng, readTabular, selectRows, tabularStatistics } from '@tessera/data';
import { buildTaskModel, getFlatWeights, initBackend } from '@tessera/ml';
import type { JsonValue, TrainConfig } from '@tessera/protocol';
import { exactAuc, parseTaskDefinition, type TaskDefinition } from '@tessera/tasks';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type DataFile, FileTaskData, splitRows } from './task-data.js';
import { TfjsTrainer } from './tfjs-trainer.js';
import { RoundFailure } from './trainer.js';

beforeAll(async () => {
  await initBackend('cpu');
});

const trainers: TfjsTrainer[] = [];
afterEach(() => {
  for (const trainer of trainers.splice(0)) trainer.dispose();
});

function topologyOf(layers: tfl.layers.Layer[]): { [key: string]: JsonValue } {
  const model = tfl.sequential({ layers });
  const topology = model.toJSON(null, false) as { [key: string]: JsonValue };
  model.dispose();
  return topology;
}

/** A file in memory that counts its reads (to show when a trainer did not look at the data). */
function memoryFile(name: string, text: string): DataFile & { reads: number } {
  const file = {
    name,
    reads: 0,
    read() {
      file.reads++;
      return text;
    },
  };
  return file;
}

/** A tabular task on columns a (numeric, standardised), b (numeric), c (categorical x/y). */
function tabularTask(
  output: TaskDefinition['output'],
  loss: TaskDefinition['loss'],
  metrics: TaskDefinition['metrics'],
  activation: 'sigmoid' | 'linear',
  overrides: { standardizeA?: 'federated' } = {},
): TaskDefinition {
  return parseTaskDefinition({
    schemaVersion: 1,
    name: 'synthetic',
    input: {
      kind: 'tabular',
      label: 'target',
      columns: [
        {
          name: 'a',
          type: 'numeric',
          standardize: overrides.standardizeA ?? { mean: 10, std: 4 },
        },
        { name: 'b', type: 'numeric' },
        { name: 'c', type: 'categorical', categories: ['x', 'y'] },
      ],
    },
    output,
    loss,
    metrics,
    model: {
      topology: topologyOf([
        tfl.layers.dense({ inputShape: [4], units: 8, activation: 'relu' }),
        tfl.layers.dense({
          units: output.kind === 'multiclass' ? output.classes.length : 1,
          activation,
        }),
      ]),
    },
  });
}

/** `count` rows with the columns in another order than the task's, and an extra one. */
function tabularCsv(count: number, label: (a: number, b: number, row: number) => string): string {
  const rng = createRng(7);
  const lines = ['c,extra,target,b,a'];
  for (let row = 0; row < count; row++) {
    const a = 10 + 8 * (rng.next() - 0.5);
    const b = rng.next() - 0.5;
    lines.push(
      `${row % 2 === 0 ? 'x' : 'y'},ignored ${row},${label(a, b, row)},${b.toFixed(4)},${a.toFixed(4)}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

const split = { holdoutFraction: 0.25, partitionSeed: 5 };

/** The train instruction's parts a trainer reads, for the task's model with seed-1 weights. */
async function request(task: TaskDefinition, config: Partial<TrainConfig> = {}) {
  const model = await buildTaskModel(task, { seed: 1 });
  const weights = getFlatWeights(model);
  model.dispose();
  return {
    model: { name: task.name, paramCount: weights.length },
    task,
    weights,
    config: {
      localEpochs: 1,
      batchSize: 1000,
      learningRate: 0.05,
      seed: 3,
      ...config,
    } as TrainConfig,
  };
}

/** The model's outputs with `weights` on the trainer's own training rows (what one batch sees first). */
async function outputsBefore(task: TaskDefinition, weights: Float32Array, data: FileTaskData) {
  const { train } = await data.examples(task);
  const model = await buildTaskModel(task, { seed: 0, weights });
  const outputs = tf.tidy(() =>
    (model.predict(tf.tensor2d(train.x, [train.count, train.featureSize])) as tf.Tensor).dataSync(),
  );
  model.dispose();
  return { outputs: Float32Array.from(outputs), targets: train.y };
}

async function trainerFor(file: DataFile) {
  const taskData = await FileTaskData.open(file, split);
  const trainer = new TfjsTrainer(null, null, { taskData });
  trainers.push(trainer);
  return { trainer, taskData };
}

describe('TfjsTrainer on a tabular binary task', () => {
  const task = tabularTask(
    { kind: 'binary', classes: ['no', 'yes'] },
    'sigmoid-binary-cross-entropy',
    ['accuracy', 'auc'],
    'sigmoid',
  );
  const csv = tabularCsv(80, (a, b) => (a + 6 * b > 10 ? 'yes' : 'no'));

  it('reports loss, accuracy and auc: those of the first (only) batch, before its step', async () => {
    const { trainer, taskData } = await trainerFor(memoryFile('ward.csv', csv));
    // 80 rows, a quarter held out: the hello's hint before any task.
    expect([trainer.numExamples, trainer.numHoldout]).toEqual([60, 20]);
    const instruction = await request(task);
    const { outputs, targets } = await outputsBefore(task, instruction.weights, taskData);
    const outcome = await trainer.train(instruction, () => {});
    expect(Object.keys(outcome.metrics ?? {}).sort()).toEqual(['accuracy', 'auc', 'loss']);
    expect(outcome.numExamples).toBe(60);
    let logLoss = 0;
    let correct = 0;
    outputs.forEach((p, i) => {
      const y = targets[i] as number;
      const clipped = Math.min(Math.max(p, 1e-7), 1 - 1e-7);
      logLoss -= y * Math.log(clipped) + (1 - y) * Math.log(1 - clipped);
      if ((p >= 0.5 ? 1 : 0) === y) correct++;
    });
    expect(outcome.metrics?.['loss']).toBeCloseTo(logLoss / 60, 4);
    expect(outcome.metrics?.['accuracy']).toBeCloseTo(correct / 60, 6);
    // Training auc comes from the 1000-bin histogram: the exact one within a bin's width.
    expect(outcome.metrics?.['auc']).toBeCloseTo(exactAuc(outputs, targets) as number, 2);
    expect(outcome.weights).toHaveLength(instruction.weights.length);
    expect(outcome.weights).not.toEqual(instruction.weights);
  });

  it("applies SCAFFOLD's gradient correction c - c_i to its one step, and reports K = 1", async () => {
    const { trainer } = await trainerFor(memoryFile('ward.csv', csv));
    const instruction = await request(task);
    const plain = await trainer.train(
      { ...instruction, weights: instruction.weights.slice() },
      () => {},
    );
    const correction = Float32Array.from(instruction.weights, (_, i) => 0.1 * Math.sin(i + 1));
    const corrected = await trainer.train(
      { ...instruction, weights: instruction.weights.slice(), gradientCorrection: correction },
      () => {},
    );
    expect([plain.steps, corrected.steps]).toEqual([1, 1]);
    // One step of lr 0.05 on all 60 rows: w - lr (g + d) against w - lr g.
    for (let i = 0; i < correction.length; i++) {
      const moved = (plain.weights[i] as number) - (corrected.weights[i] as number);
      expect(moved, `weight ${i}`).toBeCloseTo(0.05 * (correction[i] as number), 6);
    }
  });

  it('evaluates on the held-out rows with the task loss', async () => {
    const { trainer } = await trainerFor(memoryFile('ward.csv', csv));
    const instruction = await request(task);
    const evaluation = await trainer.evaluate({ ...instruction, batchSize: 7 });
    expect(evaluation.numExamples).toBe(20);
    expect(Object.keys(evaluation).sort()).toEqual(['accuracy', 'loss', 'numExamples']);
    expect(evaluation.accuracy).toBeGreaterThanOrEqual(0);
    expect(evaluation.loss).toBeGreaterThan(0);
  });
});

describe('TfjsTrainer on a regression task', () => {
  const task = tabularTask({ kind: 'regression' }, 'mean-squared-error', ['mae', 'rmse'], 'linear');
  const csv = tabularCsv(40, (a, b) => (a * 0.5 + b).toFixed(3));

  it('reports loss, mae and rmse of its rows and no accuracy; evaluation sends accuracy 0', async () => {
    const { trainer, taskData } = await trainerFor(
      memoryFile('values.tsv', csv.replaceAll(',', '\t')),
    );
    const instruction = await request(task);
    const { outputs, targets } = await outputsBefore(task, instruction.weights, taskData);
    const outcome = await trainer.train(instruction, () => {});
    expect(Object.keys(outcome.metrics ?? {}).sort()).toEqual(['loss', 'mae', 'rmse']);
    let absolute = 0;
    let squared = 0;
    outputs.forEach((prediction, i) => {
      const error = prediction - (targets[i] as number);
      absolute += Math.abs(error);
      squared += error * error;
    });
    expect(outcome.metrics?.['mae']).toBeCloseTo(absolute / 30, 4);
    expect(outcome.metrics?.['rmse']).toBeCloseTo(Math.sqrt(squared / 30), 4);
    expect(outcome.metrics?.['loss']).toBeCloseTo(squared / 30, 3);
    const evaluation = await trainer.evaluate({ ...instruction, batchSize: 100 });
    expect(evaluation).toMatchObject({ accuracy: 0, numExamples: 10 });
    expect(evaluation.loss).toBeGreaterThan(0);
  });
});

describe('TfjsTrainer on a text task', () => {
  const vocabulary = ['good', 'great', 'bad', 'awful', 'film'];
  const task = parseTaskDefinition({
    schemaVersion: 1,
    name: 'reviews',
    input: { kind: 'text', maxLength: 6, tokenizer: { kind: 'word', lowercase: true, vocabulary } },
    output: { kind: 'multiclass', classes: ['neg', 'pos'] },
    loss: 'softmax-cross-entropy',
    metrics: ['accuracy'],
    model: {
      topology: topologyOf([
        tfl.layers.embedding({ inputDim: vocabulary.length + 2, outputDim: 4, inputLength: 6 }),
        tfl.layers.globalAveragePooling1d({}),
        tfl.layers.dense({ units: 2, activation: 'softmax' }),
      ]),
    },
  });
  const lines = Array.from({ length: 24 }, (_, i) =>
    JSON.stringify(
      i % 2 === 0
        ? { text: `A good film, great ${i}`, label: 'pos', id: i }
        : { text: `Bad, awful film ${i}`, label: 'neg', id: i },
    ),
  );

  it('trains on a JSON Lines file: the loss falls over rounds', async () => {
    const { trainer } = await trainerFor(memoryFile('reviews.jsonl', `${lines.join('\n')}\n\n`));
    expect([trainer.numExamples, trainer.numHoldout]).toEqual([18, 6]);
    let instruction = await request(task, { localEpochs: 5, batchSize: 4, learningRate: 0.5 });
    const first = await trainer.train(instruction, () => {});
    expect(Object.keys(first.metrics ?? {}).sort()).toEqual(['accuracy', 'loss']);
    instruction = { ...instruction, weights: first.weights };
    const second = await trainer.train(instruction, () => {});
    expect(second.loss).toBeLessThan(first.loss);
    expect(second.numExamples).toBe(18);
  });

  it('refuses a label that is not a class: DATA_SCHEMA_MISMATCH with file, line and field', async () => {
    const bad = [...lines.slice(0, 3), JSON.stringify({ text: 'meh', label: 'neutral' })];
    const { trainer } = await trainerFor(memoryFile('reviews.jsonl', bad.join('\n')));
    const failure = await trainer.train(await request(task), () => {}).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(RoundFailure);
    expect(failure).toMatchObject({ code: 'DATA_SCHEMA_MISMATCH' });
    expect((failure as Error).message).toMatch(/^reviews\.jsonl:4: column 'label': /);
  });
});

describe('TfjsTrainer refuses what it cannot train', () => {
  const binary = tabularTask(
    { kind: 'binary', classes: ['no', 'yes'] },
    'sigmoid-binary-cross-entropy',
    ['accuracy'],
    'sigmoid',
  );
  const csv = tabularCsv(20, (a) => (a > 10 ? 'yes' : 'no'));

  it('PREPROCESSING_UNRESOLVED for a task whose constants the statistics round has to give, before reading data', async () => {
    const file = memoryFile('ward.csv', csv);
    const { trainer } = await trainerFor(file);
    const readsBefore = file.reads;
    const federated = tabularTask(
      { kind: 'binary', classes: ['no', 'yes'] },
      'sigmoid-binary-cross-entropy',
      ['accuracy'],
      'sigmoid',
      { standardizeA: 'federated' },
    );
    const failure = await trainer
      .train(await request(federated), () => {})
      .catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(RoundFailure);
    expect(failure).toMatchObject({
      code: 'PREPROCESSING_UNRESOLVED',
      message: expect.stringContaining(
        "column 'a' needs constants from the federated statistics round",
      ),
    });
    expect(file.reads).toBe(readsBefore);
  });

  it('TASK_MODEL_MISMATCH when the coordinator counts other parameters, saying both counts', async () => {
    const { trainer } = await trainerFor(memoryFile('ward.csv', csv));
    const instruction = await request(binary);
    const failure = await trainer
      .train({ ...instruction, model: { name: 'synthetic', paramCount: 41 } }, () => {})
      .catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(RoundFailure);
    // Dense(4 -> 8) + Dense(8 -> 1): 40 + 9 parameters.
    expect(failure).toMatchObject({
      code: 'TASK_MODEL_MISMATCH',
      message:
        "task 'synthetic': the coordinator's model has 41 parameters; the one this client builds from the task has 49",
    });
  });

  it('DATA_SCHEMA_MISMATCH naming file, line and column for a missing column or a bad value', async () => {
    const { trainer } = await trainerFor(
      memoryFile('ward.csv', csv.replace('c,extra,target,b,a', 'c,extra,target,bee,a')),
    );
    const failure = await trainer.train(await request(binary), () => {}).catch((e: unknown) => e);
    expect(failure).toMatchObject({ code: 'DATA_SCHEMA_MISMATCH' });
    expect((failure as Error).message).toMatch(/^ward\.csv:1: column 'b': column 'b' missing/);

    const lines = csv.split('\n');
    lines[4] = lines[4]?.replace(/,[^,]*$/, ',ten') ?? '';
    const { trainer: other } = await trainerFor(memoryFile('ward.csv', lines.join('\n')));
    const bad = await other.train(await request(binary), () => {}).catch((e: unknown) => e);
    expect(bad).toMatchObject({ code: 'DATA_SCHEMA_MISMATCH' });
    expect((bad as Error).message).toMatch(/^ward\.csv:5: column 'a': /);
  });

  it('TASK_NOT_SUPPORTED for a task when it holds MNIST examples only', async () => {
    const trainer = new TfjsTrainer(
      { x: new Float32Array(784), y: new Uint8Array(1), count: 1, featureSize: 784 },
      null,
    );
    trainers.push(trainer);
    const failure = await trainer.train(await request(binary), () => {}).catch((e: unknown) => e);
    expect(failure).toMatchObject({ code: 'TASK_NOT_SUPPORTED' });
    await expect(trainer.statistics(binary)).rejects.toMatchObject({ code: 'TASK_NOT_SUPPORTED' });
  });
});

describe('TfjsTrainer.statistics and its caches', () => {
  it("summarises the training rows only (the split training uses), for the task's unresolved columns", async () => {
    const task = tabularTask(
      { kind: 'binary', classes: ['no', 'yes'] },
      'sigmoid-binary-cross-entropy',
      ['accuracy'],
      'sigmoid',
      { standardizeA: 'federated' },
    );
    const csv = tabularCsv(40, (a) => (a > 10 ? 'yes' : 'no'));
    const { trainer } = await trainerFor(memoryFile('ward.csv', csv));
    const statistics = await trainer.statistics(task);
    if (task.input.kind !== 'tabular') throw new Error('tabular task expected');
    const all = readTabular(csv, task.input, task.output, { source: 'ward.csv' });
    const expected = tabularStatistics(selectRows(all, splitRows(40, split).train), task.input);
    expect(statistics).toEqual(expected);
    expect(statistics.rows).toBe(30);
    expect(statistics.columns.map((column) => column.name)).toEqual(['a']);
  });

  it('keeps one task model: a new task disposes the previous one (the tensor count stays flat)', async () => {
    const csv = tabularCsv(20, (a) => (a > 10 ? 'yes' : 'no'));
    const { trainer } = await trainerFor(memoryFile('ward.csv', csv));
    const first = tabularTask(
      { kind: 'binary', classes: ['no', 'yes'] },
      'sigmoid-binary-cross-entropy',
      ['accuracy'],
      'sigmoid',
    );
    // Another task (another sha256) of the same shape: its own model, built in place of the first.
    const second = tabularTask(
      { kind: 'binary', classes: ['no', 'yes'] },
      'sigmoid-binary-cross-entropy',
      ['accuracy', 'auc'],
      'sigmoid',
    );
    await trainer.train(await request(first), () => {});
    const after = tf.memory().numTensors;
    await trainer.train(await request(first), () => {});
    expect(tf.memory().numTensors).toBe(after);
    await trainer.train(await request(second), () => {});
    await trainer.train(await request(first), () => {});
    expect(tf.memory().numTensors).toBe(after);
  });
});
