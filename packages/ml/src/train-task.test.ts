import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { createRng } from '@tessera/data';
import { ErrorCode, type JsonValue } from '@tessera/protocol';
import {
  addMetricSums,
  metricValues,
  parseTaskDefinition,
  type TaskDefinition,
} from '@tessera/tasks';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from './backend.js';
import { planNativeTraining } from './native-training.js';
import { buildTaskModel } from './task-model.js';
import { evaluateModel, type TrainingData, taskObjective, trainLocal } from './train.js';

const models: tfl.LayersModel[] = [];
afterEach(() => {
  for (const model of models.splice(0)) model.dispose();
});
beforeAll(async () => {
  await initBackend('cpu');
});

function topologyOf(layers: tfl.layers.Layer[]): { [key: string]: JsonValue } {
  const model = tfl.sequential({ layers });
  const topology = model.toJSON(null, false) as { [key: string]: JsonValue };
  model.dispose();
  return topology;
}

/** A task on `width` numeric columns x0.. with the label column 'y'. */
function tabularTask(
  width: number,
  rest: Pick<TaskDefinition, 'output' | 'loss' | 'metrics'>,
  topology: { [key: string]: JsonValue },
): TaskDefinition {
  return parseTaskDefinition({
    schemaVersion: 1,
    name: 'synthetic',
    input: {
      kind: 'tabular',
      label: 'y',
      columns: Array.from({ length: width }, (_, i) => ({ name: `x${i}`, type: 'numeric' })),
    },
    ...rest,
    model: { topology },
  });
}

async function built(task: TaskDefinition, seed = 1): Promise<tfl.LayersModel> {
  const model = await buildTaskModel(task, { seed });
  models.push(model);
  return model;
}

/** Three Gaussian blobs in 6 dimensions, far apart: linearly separable. */
function blobs(count: number, seed: number): TrainingData {
  const rng = createRng(seed);
  const x = new Float32Array(count * 6);
  const y = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const label = i % 3;
    y[i] = label;
    for (let j = 0; j < 6; j++) {
      x[i * 6 + j] = (j % 3 === label ? 2 : -1) + (rng.next() - 0.5);
    }
  }
  return { x, y, count };
}

describe('a tabular task in the tfjs loop', () => {
  it('trains a Dense(16, relu) - Dense(3, softmax) classifier: the loss falls, accuracy rises', async () => {
    const task = tabularTask(
      6,
      {
        output: { kind: 'multiclass', classes: ['a', 'b', 'c'] },
        loss: 'softmax-cross-entropy',
        metrics: ['accuracy'],
      },
      topologyOf([
        tfl.layers.dense({ inputShape: [6], units: 16, activation: 'relu' }),
        tfl.layers.dense({ units: 3, activation: 'softmax' }),
      ]),
    );
    const model = await built(task);
    const data = blobs(150, 3);
    const objective = taskObjective(task);
    const before = await evaluateModel(model, data, 1000, objective);
    const result = await trainLocal(model, data, {
      epochs: 10,
      batchSize: 10,
      learningRate: 0.1,
      seed: 1,
      loop: 'tfjs',
      objective,
    });
    const after = await evaluateModel(model, data, 1000, objective);
    expect(after.loss).toBeLessThan(before.loss / 2);
    expect(after.metrics.accuracy).toBeGreaterThan(0.95);
    expect(after.metrics.accuracy).toBeGreaterThan(before.metrics.accuracy ?? 1);
    expect(result.metrics).toEqual({ loss: result.loss, accuracy: result.accuracy });
    expect(result.sums).toMatchObject({
      examples: 150,
      correct: Math.round(result.accuracy * 150),
    });
  });
});

describe('a binary task', () => {
  const task = tabularTask(
    1,
    {
      output: { kind: 'binary', classes: ['no', 'yes'] },
      loss: 'sigmoid-binary-cross-entropy',
      metrics: ['accuracy', 'auc'],
    },
    topologyOf([tfl.layers.dense({ inputShape: [1], units: 1, activation: 'sigmoid' })]),
  );
  // With kernel 1 and bias 0, each score is sigmoid(x): the order of x is the order of scores.
  const data: TrainingData = {
    x: Float32Array.of(-2, -1, 0, 0, 1, 2),
    y: Uint8Array.of(0, 0, 1, 0, 1, 1),
    count: 6,
  };
  async function identityModel() {
    const model = await built(task);
    model.layers[0]?.setWeights([tf.tensor2d([[1]]), tf.tensor1d([0])]);
    return model;
  }

  it('reports loss, accuracy and AUC as computed by hand', async () => {
    const result = await evaluateModel(await identityModel(), data, 4, taskObjective(task));
    // AUC: positives at x = 0, 1, 2; negatives at -2, -1, 0. x=0 beats two and ties one
    // (2.5), x=1 and x=2 beat all three (3 + 3): 8.5 of 9 pairs.
    expect(result.metrics.auc).toBeCloseTo(8.5 / 9, 12);
    // p >= 0.5 is 'yes': x >= 0. Wrong only for the negative at x = 0.
    expect(result.metrics.accuracy).toBeCloseTo(5 / 6, 12);
    const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
    const bce =
      -[...data.x].reduce((sum, v, i) => {
        const p = sigmoid(v);
        return sum + (data.y[i] === 1 ? Math.log(p) : Math.log(1 - p));
      }, 0) / 6;
    expect(result.loss).toBeCloseTo(bce, 5);
    // Both zeros share a histogram bin: the combinable AUC counts that pair half, as exact does.
    expect(metricValues(result.sums, ['auc']).auc).toBeCloseTo(8.5 / 9, 12);
  });

  it('combines two clients to the pooled accuracy and the histogram AUC', async () => {
    const model = await identityModel();
    const objective = taskObjective(task);
    const half = (from: number, to: number): TrainingData => ({
      x: data.x.slice(from, to),
      y: data.y.slice(from, to),
      count: to - from,
    });
    const [a, b, whole] = await Promise.all([
      evaluateModel(model, half(0, 3), 10, objective),
      evaluateModel(model, half(3, 6), 10, objective),
      evaluateModel(model, data, 10, objective),
    ]);
    const combined = metricValues(addMetricSums(a.sums, b.sums), objective.metrics);
    expect(combined.accuracy).toBeCloseTo(whole.metrics.accuracy ?? Number.NaN, 12);
    expect(combined.loss).toBeCloseTo(whole.loss, 6);
    expect(combined.auc).toBeCloseTo(whole.metrics.auc ?? Number.NaN, 12);
  });

  it('refuses labels that are not 0 or 1', async () => {
    const model = await identityModel();
    const bad = { ...data, y: Uint8Array.of(0, 0, 2, 0, 1, 1) };
    await expect(evaluateModel(model, bad, 10, taskObjective(task))).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
      message: expect.stringMatching(/label 2 of example 2 is not 0 or 1/),
    });
  });
});

describe('a regression task', () => {
  const task = tabularTask(
    1,
    { output: { kind: 'regression' }, loss: 'mean-squared-error', metrics: ['mae', 'rmse'] },
    topologyOf([tfl.layers.dense({ inputShape: [1], units: 1 })]),
  );

  it('reports MSE, MAE and RMSE as computed by hand', async () => {
    const model = await built(task);
    // y' = 2x + 1: predictions 1, 3, 5, 7 against targets 1, 4, 4, 10: errors 0, -1, 1, -3.
    model.layers[0]?.setWeights([tf.tensor2d([[2]]), tf.tensor1d([1])]);
    const data: TrainingData<Float32Array> = {
      x: Float32Array.of(0, 1, 2, 3),
      y: Float32Array.of(1, 4, 4, 10),
      count: 4,
    };
    const result = await evaluateModel(model, data, 3, taskObjective(task));
    expect(result.metrics.loss).toBeCloseTo(11 / 4, 6);
    expect(result.metrics.mae).toBeCloseTo(5 / 4, 6);
    expect(result.metrics.rmse).toBeCloseTo(Math.sqrt(11 / 4), 6);
    // Batch means (float32) times batch sizes: the loss sum is exact to float32 rounding.
    expect(result.sums).toMatchObject({ examples: 4, absoluteErrorSum: 5, squaredErrorSum: 11 });
    expect(result.sums.lossSum).toBeCloseTo(11, 5);
    expect(result.accuracy).toBe(0);
  });

  it('learns a line: the loss falls', async () => {
    const model = await built(task);
    const rng = createRng(4);
    const x = Float32Array.from({ length: 64 }, () => rng.next() * 2 - 1);
    const data = { x, y: x.map((v) => 3 * v - 0.5), count: 64 };
    const objective = taskObjective(task);
    const before = await evaluateModel(model, data, 64, objective);
    const result = await trainLocal(model, data, {
      epochs: 20,
      batchSize: 8,
      learningRate: 0.1,
      seed: 2,
      objective,
    });
    expect(result.loop).toBe('tfjs');
    expect(result.metrics.rmse).toBeLessThan(0.1);
    expect(result.loss).toBeLessThan(before.loss / 100);
  });

  it('refuses a non-finite target, data-parallel training and the native loop', async () => {
    const model = await built(task);
    const objective = taskObjective(task);
    const data = { x: Float32Array.of(0, 1), y: Float32Array.of(1, Number.NaN), count: 2 };
    await expect(evaluateModel(model, data, 10, objective)).rejects.toThrow(
      /target NaN of example 1 is not a finite number/,
    );
    const fine = { ...data, y: Float32Array.of(1, 2) };
    const options = { epochs: 1, batchSize: 2, learningRate: 0.1, seed: 1, objective };
    await expect(trainLocal(model, fine, { ...options, workers: 2 })).rejects.toThrow(
      /data-parallel training\) trains softmax cross-entropy only, not mean-squared-error/,
    );
    await expect(trainLocal(model, fine, { ...options, loop: 'native' })).rejects.toThrow(
      /native loop cannot train here: it runs on the 'openblas' backend only \(the backend is cpu\)/,
    );
  });
});

describe('the native loop on a task topology', () => {
  it('says which layer stops it and why', async () => {
    const task = tabularTask(
      6,
      {
        output: { kind: 'multiclass', classes: ['a', 'b', 'c'] },
        loss: 'softmax-cross-entropy',
        metrics: [],
      },
      topologyOf([
        tfl.layers.dense({ inputShape: [6], units: 8, activation: 'relu' }),
        tfl.layers.leakyReLU({ name: 'norm' }),
        tfl.layers.dense({ units: 3, activation: 'softmax' }),
      ]),
    );
    expect(planNativeTraining(await built(task))).toEqual({
      ok: false,
      reason: "layer 'norm' (LeakyReLU): not supported by the native loop",
    });
  });
});
