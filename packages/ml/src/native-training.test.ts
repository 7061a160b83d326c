import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { createRng } from '@tessera/data';
import { loadNativeKernels } from '@tessera/ml-native';
import { ErrorCode } from '@tessera/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from './backend.js';
import { createModel, MODEL_NAMES } from './models.js';
import {
  NativeTrainer,
  type NativeTrainingAddon,
  planNativeTraining,
  setNativeDenseEngine,
} from './native-training.js';
import { installedOpenblasAddon } from './openblas-kernels.js';
import { expectSameUpdate } from './testing/same-update.js';
import { type TrainingData, trainLocal } from './train.js';
import { getFlatWeights, setFlatWeights } from './weights.js';

const native = loadNativeKernels();
// CI builds the addon with oneDNN and sets this: there a missing addon is a failure.
const required = process.env['TESSERA_REQUIRE_NATIVE'] === '1';

it('the addon is built with oneDNN where it is required, and says what runs the products', () => {
  if (!native.ok) {
    expect(required).toBe(false);
    console.warn(`native training loop tests skipped: ${native.reason}`);
    return;
  }
  const addon = native.kernels as unknown as NativeTrainingAddon;
  const conv = addon.convEngine();
  const dense = addon.denseEngine();
  // The instruction set oneDNN JITs the dense products for is the CPU's, found at run time.
  const onednnDense = /^oneDNN sgemm \((avx512_core|avx2|avx|sse41) JIT\)$/;
  if (required) {
    expect(conv).toMatch(/^oneDNN \d+\.\d+/);
    expect(dense).toMatch(onednnDense);
  }
  expect(dense).toMatch(
    conv.startsWith('oneDNN') ? onednnDense : /^OpenBLAS sgemm \(\w+ kernels\)$/,
  );
});

/** Examples of a model's input shape with uniform features and labels below `classes`. */
function randomData(
  count: number,
  featureSize: number,
  classes: number,
  seed: number,
): TrainingData {
  const rng = createRng(seed);
  const x = new Float32Array(count * featureSize);
  for (let i = 0; i < x.length; i++) x[i] = rng.next();
  const y = new Uint8Array(count);
  for (let i = 0; i < count; i++) y[i] = Math.floor(rng.next() * classes);
  return { x, y, count };
}

/** Small Sequential models that cover what the native loop supports. */
const ODD_MODELS: Record<string, () => tfl.Sequential> = {
  'stride 2 same conv, overlapping pool, valid 2x3 conv, linear dense': () =>
    tfl.sequential({
      layers: [
        tfl.layers.conv2d({
          inputShape: [9, 7, 3],
          filters: 4,
          kernelSize: 3,
          strides: 2,
          padding: 'same',
          activation: 'relu',
          kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }),
          biasInitializer: tfl.initializers.randomUniform({ minval: -0.1, maxval: 0.1, seed: 2 }),
        }),
        tfl.layers.maxPooling2d({ poolSize: 2, strides: 1 }),
        tfl.layers.conv2d({
          filters: 5,
          kernelSize: [2, 3],
          padding: 'valid',
          kernelInitializer: tfl.initializers.glorotUniform({ seed: 3 }),
        }),
        tfl.layers.flatten(),
        tfl.layers.dense({
          units: 6,
          kernelInitializer: tfl.initializers.glorotUniform({ seed: 4 }),
        }),
        tfl.layers.dense({
          units: 3,
          activation: 'softmax',
          kernelInitializer: tfl.initializers.glorotUniform({ seed: 5 }),
        }),
      ],
    }),
  'stride 2 valid conv with an even input, 3x3 stride 2 pool': () =>
    tfl.sequential({
      layers: [
        tfl.layers.conv2d({
          inputShape: [10, 10, 2],
          filters: 3,
          kernelSize: 4,
          strides: 2,
          activation: 'relu',
          kernelInitializer: tfl.initializers.glorotUniform({ seed: 6 }),
        }),
        tfl.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }),
        tfl.layers.flatten(),
        tfl.layers.dense({
          units: 4,
          activation: 'softmax',
          kernelInitializer: tfl.initializers.glorotUniform({ seed: 7 }),
        }),
      ],
    }),
};

function inputSize(model: tfl.LayersModel): number {
  return (model.inputs[0]?.shape ?? []).slice(1).reduce<number>((a, b) => a * (b ?? 0), 1);
}

function classes(model: tfl.LayersModel): number {
  const shape = model.outputs[0]?.shape ?? [];
  return shape[shape.length - 1] ?? 0;
}

describe.skipIf(!native.ok)('native training loop', () => {
  beforeAll(async () => {
    await initBackend('openblas', { threads: 1 });
  });
  afterAll(async () => {
    await initBackend('wasm');
  });

  it.each(MODEL_NAMES)('plans every zoo model: %s', (name) => {
    const model = createModel(name, { seed: 1 });
    const planned = planNativeTraining(model);
    expect(planned).toMatchObject({ ok: true });
    model.dispose();
  });

  it.each([
    [
      'a leaky ReLU layer',
      () =>
        tfl.sequential({
          layers: [
            tfl.layers.dense({ inputShape: [4], units: 3 }),
            tfl.layers.leakyReLU({ name: 'leaky' }),
            tfl.layers.dense({ units: 2, activation: 'softmax' }),
          ],
        }),
      /layer 'leaky' \(LeakyReLU\): not supported by the native loop/,
    ],
    [
      'a sigmoid output',
      () =>
        tfl.sequential({
          layers: [tfl.layers.dense({ inputShape: [4], units: 2, activation: 'sigmoid' })],
        }),
      /activation sigmoid \(the last layer must be softmax for the loss\)/,
    ],
    [
      'a kernel regulariser',
      () =>
        tfl.sequential({
          layers: [
            tfl.layers.dense({
              inputShape: [4],
              units: 2,
              activation: 'softmax',
              kernelRegularizer: tfl.regularizers.l2(),
            }),
          ],
        }),
      /kernelRegularizer is set/,
    ],
    [
      'a dilated convolution',
      () =>
        tfl.sequential({
          layers: [
            tfl.layers.conv2d({
              inputShape: [8, 8, 1],
              filters: 2,
              kernelSize: 3,
              dilationRate: 2,
            }),
            tfl.layers.flatten(),
            tfl.layers.dense({ units: 2, activation: 'softmax' }),
          ],
        }),
      /dilation is not 1/,
    ],
    [
      'a frozen layer',
      () =>
        tfl.sequential({
          layers: [
            tfl.layers.dense({ inputShape: [4], units: 3, trainable: false }),
            tfl.layers.dense({ units: 2, activation: 'softmax' }),
          ],
        }),
      /frozen/,
    ],
  ])('refuses a model with %s, saying why', (_what, build, reason) => {
    const model = build();
    const planned = planNativeTraining(model);
    expect(planned.ok).toBe(false);
    if (!planned.ok) expect(planned.reason).toMatch(reason);
    model.dispose();
  });

  it('refuses a functional model', () => {
    const input = tfl.input({ shape: [4] });
    const output = tfl.layers.dense({ units: 2, activation: 'softmax' }).apply(input);
    const model = tfl.model({ inputs: input, outputs: output as tfl.SymbolicTensor });
    expect(planNativeTraining(model)).toEqual({
      ok: false,
      reason: expect.stringMatching(/not a Sequential model/),
    });
    model.dispose();
  });

  // One epoch through trainLocal in each loop, from the same weights and batches: the
  // native updates equal tfjs's (whose kernels are checked against the cpu backend in
  // openblas-kernels.test.ts) to 1e-4 of the largest update.
  const cases: [string, () => tfl.LayersModel, number, number][] = [
    ['fedavg-cnn', () => createModel('fedavg-cnn', { seed: 3 }), 20, 10],
    ['cnn', () => createModel('cnn', { seed: 4 }), 15, 10],
    ['fedavg-2nn', () => createModel('fedavg-2nn', { seed: 5 }), 20, 10],
    ...Object.entries(ODD_MODELS).flatMap(([name, build]) => [
      [`${name}, batch 1`, build, 3, 1] as [string, () => tfl.LayersModel, number, number],
      [`${name}, batch 4 with a last batch of 3`, build, 7, 4] as [
        string,
        () => tfl.LayersModel,
        number,
        number,
      ],
    ]),
  ];
  it.each(cases)('one epoch equals the tfjs loop: %s', async (_name, build, count, batchSize) => {
    const model = build();
    const data = randomData(count, inputSize(model), classes(model), count + batchSize);
    const start = getFlatWeights(model);
    const options = { epochs: 1, batchSize, learningRate: 0.1, seed: 9 };
    const tfjsResult = await trainLocal(model, data, { ...options, loop: 'tfjs' });
    const tfjsWeights = getFlatWeights(model);
    setFlatWeights(model, start);
    const nativeResult = await trainLocal(model, data, { ...options, loop: 'native' });
    expect(tfjsResult.loop).toBe('tfjs');
    expect(nativeResult.loop).toBe('native');
    expectSameUpdate(model, start, getFlatWeights(model), tfjsWeights);
    expect(nativeResult.loss).toBeCloseTo(tfjsResult.loss, 4);
    expect(nativeResult.accuracy).toBe(tfjsResult.accuracy);
    model.dispose();
  });

  // FedProx: the same epoch with the proximal term, from an anchor away from the start so
  // that mu (w - anchor) is in every step, convolutions and dense layers alike.
  it.each([
    cases[0],
    cases[2],
    ...cases.filter(([name]) => name.startsWith('stride 2 same conv')),
  ] as typeof cases)(
    'one epoch with the proximal term equals the tfjs loop: %s',
    async (_name, build, count, batchSize) => {
      const model = build();
      const data = randomData(count, inputSize(model), classes(model), count + batchSize);
      const start = getFlatWeights(model);
      const rng = createRng(count);
      const anchor = Float32Array.from(start, (w) => w + (rng.next() - 0.5) * 0.2);
      const options = {
        epochs: 1,
        batchSize,
        learningRate: 0.1,
        seed: 9,
        proximal: { mu: 0.5, anchor },
      };
      const tfjsResult = await trainLocal(model, data, { ...options, loop: 'tfjs' });
      const tfjsWeights = getFlatWeights(model);
      setFlatWeights(model, start);
      const plainResult = await trainLocal(model, data, { ...options, proximal: undefined });
      const plainWeights = getFlatWeights(model);
      setFlatWeights(model, start);
      const nativeResult = await trainLocal(model, data, { ...options, loop: 'native' });
      expect([tfjsResult.loop, plainResult.loop, nativeResult.loop]).toEqual([
        'tfjs',
        'native',
        'native',
      ]);
      expectSameUpdate(model, start, getFlatWeights(model), tfjsWeights);
      // The term matters here: without it the step is another one.
      expect(() => expectSameUpdate(model, start, plainWeights, tfjsWeights)).toThrow();
      expect(nativeResult.loss).toBeCloseTo(tfjsResult.loss, 4);
      model.dispose();
    },
  );

  it('the OpenBLAS convolution (im2col) takes the same step as oneDNN', () => {
    const addon = installedOpenblasAddon() as NativeTrainingAddon;
    const model = createModel('fedavg-cnn', { seed: 6 });
    const planned = planNativeTraining(model);
    if (!planned.ok) throw new Error(planned.reason);
    const data = randomData(5, 784, 10, 11);
    const start = getFlatWeights(model);
    const after: Float32Array[] = [];
    for (const engine of ['auto', 'im2col'] as const) {
      setFlatWeights(model, start);
      const trainer = new NativeTrainer(addon, planned.plan, 5, { engine });
      trainer.step(data.x, Int32Array.from(data.y), 5, 0.1);
      trainer.finish();
      after.push(getFlatWeights(model));
    }
    expectSameUpdate(model, start, after[1] as Float32Array, after[0] as Float32Array);
    model.dispose();
  });

  it("OpenBLAS's dense products (setNativeDenseEngine) take the same step as the default's", () => {
    const addon = installedOpenblasAddon() as NativeTrainingAddon;
    const defaultEngine = addon.denseEngine();
    for (const name of ['fedavg-2nn', 'fedavg-cnn'] as const) {
      const model = createModel(name, { seed: 7 });
      const planned = planNativeTraining(model);
      if (!planned.ok) throw new Error(planned.reason);
      const data = randomData(10, 784, 10, 12);
      const start = getFlatWeights(model);
      const after: Float32Array[] = [];
      try {
        for (const engine of ['auto', 'openblas'] as const) {
          const running = setNativeDenseEngine(engine);
          expect(running).toEqual(
            engine === 'auto' ? defaultEngine : expect.stringMatching(/^OpenBLAS sgemm/),
          );
          setFlatWeights(model, start);
          const trainer = new NativeTrainer(addon, planned.plan, 10);
          trainer.step(data.x, Int32Array.from(data.y), 10, 0.1);
          trainer.finish();
          after.push(getFlatWeights(model));
        }
      } finally {
        setNativeDenseEngine('auto');
      }
      expectSameUpdate(model, start, after[1] as Float32Array, after[0] as Float32Array);
      model.dispose();
    }
    expect(addon.denseEngine()).toBe(defaultEngine);
    expect(() => addon.setDenseEngine('mkl' as 'auto')).toThrow(
      "the dense engine must be 'auto' or 'openblas'",
    );
    expect(addon.denseEngine()).toBe(defaultEngine);
  });

  it("'auto' trains natively on openblas, in tfjs where the model is not supported", async () => {
    const supported = createModel('cnn', { seed: 1 });
    const unsupported = ODD_MODELS['stride 2 valid conv with an even input, 3x3 stride 2 pool']?.();
    if (unsupported === undefined) throw new Error('missing model');
    unsupported.add(tfl.layers.activation({ activation: 'linear' }));
    const options = { epochs: 1, batchSize: 4, learningRate: 0.1, seed: 1 };
    const one = await trainLocal(supported, randomData(8, 784, 10, 1), options);
    const two = await trainLocal(unsupported, randomData(8, 200, 4, 2), options);
    expect([one.loop, two.loop]).toEqual(['native', 'tfjs']);
    supported.dispose();
    unsupported.dispose();
  });

  it("loop 'native' where it cannot run is a clear error, and the model is untouched", async () => {
    const model = tfl.sequential({
      layers: [
        tfl.layers.dense({ inputShape: [4], units: 3 }),
        tfl.layers.leakyReLU(),
        tfl.layers.dense({ units: 2, activation: 'softmax' }),
      ],
    });
    const before = getFlatWeights(model);
    const data = randomData(4, 4, 2, 3);
    const attempt = trainLocal(model, data, {
      epochs: 1,
      batchSize: 2,
      learningRate: 0.1,
      seed: 1,
      loop: 'native',
    });
    await expect(attempt).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
      message: expect.stringMatching(/native loop cannot train here: layer '.*' \(LeakyReLU\)/),
    });
    expect(getFlatWeights(model)).toEqual(before);
    await expect(
      trainLocal(model, data, {
        epochs: 1,
        batchSize: 2,
        learningRate: 0.1,
        seed: 1,
        loop: 'fast' as 'tfjs',
      }),
    ).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
      message: expect.stringMatching(/loop must be one of/),
    });
    model.dispose();
  });

  it("loop 'native' on another backend says it needs openblas", async () => {
    await initBackend('wasm');
    try {
      const model = createModel('fedavg-2nn', { seed: 1 });
      await expect(
        trainLocal(model, randomData(4, 784, 10, 1), {
          epochs: 1,
          batchSize: 2,
          learningRate: 0.1,
          seed: 1,
          loop: 'native',
        }),
      ).rejects.toThrow(/'openblas' backend only \(the backend is wasm\)/);
      model.dispose();
    } finally {
      await initBackend('openblas', { threads: 1 });
    }
  });

  it('the addon rejects wrong sizes and foreign handles with an error, writing nothing', () => {
    const addon = installedOpenblasAddon() as NativeTrainingAddon;
    const sizes = Int32Array.of(6, 6, 1, 3, 3, 2, 6, 6, 1, 1, 1, 1, 1, 1);
    expect(() =>
      addon.convLayerCreate(Int32Array.of(6, 6, 1, 3, 3, 2, 5, 6, 1, 1, 1, 1, 1, 1), true, 'auto'),
    ).toThrow(/inconsistent/);
    expect(() => addon.convLayerCreate(sizes, true, 'fast' as 'auto')).toThrow(/engine/);
    const layer = addon.convLayerCreate(sizes, true, 'auto');
    const y = new Float32Array(2 * 36 * 2).fill(7);
    const filter = new Float32Array(18);
    const bias = new Float32Array(2);
    expect(() => addon.convLayerForward(layer, 2, new Float32Array(71), filter, bias, y)).toThrow(
      /x has the wrong size/,
    );
    expect(() =>
      addon.convLayerForward({} as typeof layer, 2, new Float32Array(72), filter, bias, y),
    ).toThrow(/made by convLayerCreate/);
    expect(y.every((v) => v === 7)).toBe(true);
    const dlogits = new Float32Array(4).fill(7);
    expect(() =>
      addon.softmaxCrossEntropy(
        new Float32Array(4),
        Int32Array.of(0, 2),
        dlogits,
        Int32Array.of(2, 2),
        new Float64Array(2),
      ),
    ).toThrow(/label is outside/);
    expect(dlogits.every((v) => v === 7)).toBe(true);
    expect(() =>
      addon.denseBackward(
        new Float32Array(6),
        new Float32Array(4),
        new Float32Array(6),
        null,
        new Float32Array(6),
        new Float32Array(2),
        Int32Array.of(2, 3, 2),
        Number.NaN,
        1,
      ),
    ).toThrow(/finite number/);
  });

  it('keeps tensor count and memory flat across native rounds', async () => {
    const model = createModel('fedavg-cnn', { seed: 2 });
    const data = randomData(12, 784, 10, 5);
    const options = { epochs: 1, batchSize: 5, learningRate: 0.05, seed: 1 };
    await trainLocal(model, data, options);
    const tensors = tf.memory().numTensors;
    const bytes = tf.memory().numBytes;
    for (let round = 0; round < 3; round++) {
      const result = await trainLocal(model, data, { ...options, seed: round });
      expect(result.loop).toBe('native');
      expect(tf.memory().numTensors).toBe(tensors);
      expect(tf.memory().numBytes).toBe(bytes);
    }
    expect(getFlatWeights(model).every(Number.isFinite)).toBe(true);
    model.dispose();
  });
});
