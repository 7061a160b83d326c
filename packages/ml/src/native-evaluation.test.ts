import * as tfl from '@tensorflow/tfjs-layers';
import {
  createRng,
  loadMnist,
  loadSpamAssassin,
  selectTexts,
  textExamples,
  toExamples,
} from '@tessera/data';
import { loadNativeKernels } from '@tessera/ml-native';
import { ErrorCode } from '@tessera/protocol';
import { builtinTask } from '@tessera/tasks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from './backend.js';
import { createModel } from './models.js';
import {
  createModelEvaluator,
  type EngineEvaluationResult,
  loadNativeEvaluationAddon,
  NativeEvaluator,
} from './native-evaluation.js';
import { buildTaskModel } from './task-model.js';
import {
  type EvaluationResult,
  evaluateModel,
  type LabelArray,
  type TrainingData,
  type TrainingObjective,
  taskObjective,
  trainLocal,
} from './train.js';

// The native evaluator against tfjs's evaluateModel on the WASM backend (what central
// evaluation ran before): loss to 1e-5 relative, accuracy and the task's metrics to one
// example's worth, the same example count; always with a last partial batch.

const native = loadNativeKernels();

const glorot = (seed: number) => tfl.initializers.glorotUniform({ seed });

function relativeDifference(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);
}

/** Native and tfjs agree: loss to 1e-5 relative, accuracy/auc to one example, errors to 1e-5. */
function expectSameEvaluation(got: EvaluationResult, want: EvaluationResult, count: number): void {
  expect(got.numExamples).toBe(want.numExamples);
  expect(got.sums.examples).toBe(want.sums.examples);
  expect(relativeDifference(got.loss, want.loss)).toBeLessThan(1e-5);
  expect(Math.abs(got.accuracy - want.accuracy)).toBeLessThanOrEqual(1 / count + 1e-12);
  expect(Object.keys(got.metrics).sort()).toEqual(Object.keys(want.metrics).sort());
  for (const [name, value] of Object.entries(want.metrics)) {
    const mine = got.metrics[name as keyof typeof got.metrics] as number;
    if (name === 'loss' || name === 'mae' || name === 'rmse') {
      expect(relativeDifference(mine, value as number), name).toBeLessThan(1e-5);
    } else {
      expect(Math.abs(mine - (value as number)), name).toBeLessThanOrEqual(1 / count + 1e-12);
    }
  }
}

/** Natively at batch 500 on `threads` threads, then with evaluateModel (batch 1000, tfjs). */
async function compare(
  model: tfl.LayersModel,
  data: TrainingData<LabelArray>,
  objective: TrainingObjective,
  threads = 2,
): Promise<{ native: EngineEvaluationResult; tfjs: EvaluationResult }> {
  const evaluator = await createModelEvaluator(model, objective, { batchSize: 500, threads });
  expect(evaluator).toMatchObject({ engine: 'native' });
  const nativeResult = await evaluator.evaluate(data);
  expect(nativeResult.engine).toBe('native');
  const tfjsResult = await evaluateModel(model, data, 1000, objective);
  expectSameEvaluation(nativeResult, tfjsResult, data.count);
  return { native: nativeResult, tfjs: tfjsResult };
}

/** MNIST test images [from, from + count) as the models' examples. */
function mnist(count: number, from = 0): TrainingData {
  const examples = toExamples(
    loadMnist('test'),
    Array.from({ length: count }, (_, i) => from + i),
  );
  return { x: examples.x, y: examples.y, count };
}

const MNIST = { loss: 'softmax-cross-entropy', metrics: ['accuracy'] } as const;

/** Dense, Dropout 0.3, BatchNormalization, Dense softmax on MNIST's 784 features. */
function dropoutBatchNormModel(): tfl.Sequential {
  return tfl.sequential({
    layers: [
      tfl.layers.dense({
        inputShape: [784],
        units: 32,
        activation: 'relu',
        kernelInitializer: glorot(1),
      }),
      tfl.layers.dropout({ rate: 0.3 }),
      tfl.layers.batchNormalization({ momentum: 0.5 }),
      tfl.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: glorot(2) }),
    ],
  });
}

describe.skipIf(!native.ok)('native evaluation equals evaluateModel', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });
  afterAll(async () => {
    await initBackend('wasm');
  });

  it('fedavg-cnn on 1,234 MNIST test images (batches of 500, the last of 234)', async () => {
    const model = createModel('fedavg-cnn', { seed: 3 });
    await compare(model, mnist(1234), MNIST);
    model.dispose();
  });

  it('fedavg-2nn, trained one epoch (accuracy well above chance), on 1 and on 2 threads', async () => {
    const model = createModel('fedavg-2nn', { seed: 4 });
    await trainLocal(model, mnist(1000, 5000), {
      epochs: 1,
      batchSize: 20,
      learningRate: 0.1,
      seed: 1,
      loop: 'tfjs',
    });
    const data = mnist(1501);
    const one = await compare(model, data, MNIST, 1);
    expect(one.tfjs.accuracy).toBeGreaterThan(0.5);
    const two = await compare(model, data, MNIST, 2);
    expect(two.native.loss).toBeCloseTo(one.native.loss, 6);
    model.dispose();
  });

  it('dropout and batch normalization: inference mode, moving statistics left alone', async () => {
    const model = dropoutBatchNormModel();
    // A few tfjs steps move the moving mean and variance away from 0 and 1.
    await trainLocal(model, mnist(200, 8000), {
      epochs: 1,
      batchSize: 50,
      learningRate: 0.05,
      seed: 2,
      loop: 'tfjs',
    });
    const norm = model.layers[2] as tfl.layers.Layer;
    const moving = () =>
      norm.nonTrainableWeights.map((v) => Array.from(v.read().dataSync() as Float32Array));
    const before = moving();
    expect(before[0]?.some((m) => Math.abs(m) > 0.05)).toBe(true);
    const data = mnist(777);
    const first = await compare(model, data, MNIST);
    expect(moving()).toEqual(before);
    // Deterministic: no mask drawn, no statistic moved between calls.
    const evaluator = await createModelEvaluator(model, MNIST, { batchSize: 500 });
    expect((await evaluator.evaluate(data)).loss).toBe(first.native.loss);
    model.dispose();
  });

  it('spam (sigmoid binary cross-entropy, transformer with dropout): loss, accuracy, auc', async () => {
    const task = builtinTask('spam');
    if (task.input.kind !== 'text') throw new Error('spam is text');
    expect(JSON.stringify(task.model.topology)).toMatch(/"dropout_rate":0\.[0-9]*[1-9]/);
    expect(task.metrics).toContain('auc');
    const { test } = loadSpamAssassin();
    const some = selectTexts(
      test,
      // Spread over the split, whose spam and ham come in runs: both classes, for the auc.
      Array.from({ length: 503 }, (_, i) => Math.floor((i * test.count) / 503)),
    );
    const examples = textExamples(some, task.input);
    const model = await buildTaskModel(task, { seed: 5 });
    const { tfjs } = await compare(
      model,
      { x: examples.x, y: examples.y, count: examples.count },
      taskObjective(task),
    );
    expect(tfjs.metrics.auc).toBeDefined();
    model.dispose();
  });

  it('mean squared error: loss, mae, rmse', async () => {
    const model = tfl.sequential({
      layers: [
        tfl.layers.dense({
          inputShape: [6],
          units: 16,
          activation: 'relu',
          kernelInitializer: glorot(6),
        }),
        tfl.layers.dense({ units: 1, kernelInitializer: glorot(7) }),
      ],
    });
    const rng = createRng(9);
    const count = 1003;
    const x = Float32Array.from({ length: count * 6 }, () => rng.next() * 2 - 1);
    const y = Float32Array.from({ length: count }, () => rng.next() * 4 - 2);
    await compare(model, { x, y, count }, { loss: 'mean-squared-error', metrics: ['mae', 'rmse'] });
    model.dispose();
  });

  it('no examples: zeros, as evaluateModel', async () => {
    const model = createModel('fedavg-2nn', { seed: 1 });
    const evaluator = await createModelEvaluator(model);
    const empty = { x: new Float32Array(0), y: new Uint8Array(0), count: 0 };
    const result = await evaluator.evaluate(empty);
    expect(result).toMatchObject({ engine: 'native', loss: 0, accuracy: 0, numExamples: 0 });
    model.dispose();
  });

  it('a model the native plan refuses falls back to evaluateModel and says why', async () => {
    const model = tfl.sequential({
      layers: [
        tfl.layers.dense({
          inputShape: [784],
          units: 10,
          activation: 'softmax',
          kernelRegularizer: tfl.regularizers.l2({ l2: 0.01 }),
        }),
      ],
    });
    const evaluator = await createModelEvaluator(model);
    expect(evaluator.engine).toBe('tfjs');
    expect(evaluator.reason).toMatch(/kernelRegularizer is set/);
    const data = mnist(300);
    const result = await evaluator.evaluate(data);
    expect(result.engine).toBe('tfjs');
    expect(result.loss).toBe((await evaluateModel(model, data)).loss);
    await expect(createModelEvaluator(model, MNIST, { engine: 'native' })).rejects.toMatchObject({
      code: ErrorCode.UNAVAILABLE,
      message: expect.stringMatching(/kernelRegularizer/),
    });
    model.dispose();
  });

  it('checks its data and options as evaluateModel does', async () => {
    const model = createModel('fedavg-2nn', { seed: 1 });
    const loaded = await loadNativeEvaluationAddon();
    if (!loaded.ok) throw new Error(loaded.reason);
    await expect(
      NativeEvaluator.create(loaded.addon, model, MNIST, { threads: 0 }),
    ).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    const created = await NativeEvaluator.create(loaded.addon, model, MNIST);
    if (!created.ok) throw new Error(created.reason);
    const bad = { x: new Float32Array(784), y: Uint8Array.of(10), count: 1 };
    await expect(created.evaluator.evaluate(bad)).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
      message: expect.stringMatching(/label 10 of example 0 is outside 0..9/),
    });
    model.dispose();
  });
});
