import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { loadNativeKernels } from '@tessera/ml-native';
import { afterAll, describe, expect, it } from 'vitest';
import { type BackendPreference, initBackend } from './backend.js';
import { createModel } from './models.js';
import { OPENBLAS_KERNEL_NAMES, openblasKernelsInstalled } from './openblas-kernels.js';
import {
  CONV_CASES,
  type ConvCase,
  conv2DBackpropFilterOf,
  conv2DBackpropInputOf,
  expectRelativelyClose,
  MAX_POOL_CASES,
  maxPoolGradient,
  product,
  randomDy,
  resultsOn,
  values,
} from './testing/kernel-cases.js';
import { trainLocal } from './train.js';
import { getFlatWeights, setFlatWeights } from './weights.js';

const native = loadNativeKernels();
// CI builds the addon and sets this: there a missing addon is a failure, not a skip.
const required = process.env['TESSERA_REQUIRE_NATIVE'] === '1';

afterAll(async () => {
  await initBackend('wasm');
});

it('the addon is built where it is required', () => {
  if (required) expect(native).toMatchObject({ ok: true });
  if (!native.ok) console.warn(`OpenBLAS kernel tests skipped: ${native.reason}`);
});

/** Runs `compute` on 'cpu' (the reference) and on 'openblas', returning both results. */
async function onCpuAndOpenblas(
  compute: () => tf.Tensor | tf.Tensor[],
): Promise<{ cpu: Float32Array[]; openblas: Float32Array[] }> {
  const [cpu = [], openblas = []] = await resultsOn(['cpu', 'openblas'], compute);
  return { cpu, openblas };
}

const CASES: readonly ConvCase[] = [
  ...CONV_CASES,
  {
    name: 'dilation 2, same (forward only in tfjs)',
    input: [2, 9, 10, 3],
    filter: [3, 3, 3, 4],
    strides: 1,
    pad: 'same',
    dilations: 2,
  },
  {
    name: '1x1 pointwise, stride 1 (columns are x itself)',
    input: [2, 5, 7, 6],
    filter: [1, 1, 6, 4],
    strides: 1,
    pad: 'valid',
  },
];
// tfjs computes no gradient of a dilated convolution with strides > 1 and asks
// Conv2DBackprop* with dilations 1 only.
const BACKPROP_CASES = CASES.filter((c) => c.dilations === undefined);

describe.skipIf(!native.ok)('OpenBLAS kernels match the cpu backend', () => {
  it.each(CASES)('Conv2D: $name', async (c) => {
    const xValues = values(product(c.input), 1);
    const filterValues = values(product(c.filter), 3);
    const { cpu, openblas } = await onCpuAndOpenblas(() =>
      tf.conv2d(
        tf.tensor4d(xValues, c.input),
        tf.tensor4d(filterValues, c.filter),
        c.strides,
        c.pad,
        'NHWC',
        c.dilations ?? 1,
      ),
    );
    expectRelativelyClose(openblas[0] ?? [], cpu[0] ?? []);
  });

  it.each(BACKPROP_CASES)('Conv2DBackpropInput: $name', async (c) => {
    const filterValues = values(product(c.filter), 3);
    const dy = randomDy(c);
    const { cpu, openblas } = await onCpuAndOpenblas(() =>
      conv2DBackpropInputOf(c, dy, filterValues),
    );
    expectRelativelyClose(openblas[0] ?? [], cpu[0] ?? []);
  });

  it.each(BACKPROP_CASES)('Conv2DBackpropFilter: $name', async (c) => {
    const xValues = values(product(c.input), 1);
    const dy = randomDy(c);
    const { cpu, openblas } = await onCpuAndOpenblas(() => conv2DBackpropFilterOf(c, xValues, dy));
    expectRelativelyClose(openblas[0] ?? [], cpu[0] ?? []);
  });

  it.each(MAX_POOL_CASES)('MaxPoolGrad: $name', async ({ input, size, strides, pad }) => {
    const xValues = values(product(input), 21);
    const { cpu, openblas } = await onCpuAndOpenblas(() =>
      maxPoolGradient(input, size, strides, pad, xValues),
    );
    expectRelativelyClose(openblas[0] ?? [], cpu[0] ?? []);
  });

  it('Sum over the leading axes (keepDims, negative axes) and over others (wasm fallback)', async () => {
    const xValues = values(3 * 5 * 4 * 6, 24);
    const { cpu, openblas } = await onCpuAndOpenblas(() => {
      const x = tf.tensor4d(xValues, [3, 5, 4, 6]);
      return [
        tf.sum(x, [0, 1, 2]),
        tf.sum(x, [1, 0], true),
        tf.sum(x, [0, -3]),
        tf.sum(x, 0),
        tf.sum(x, [1, 2]),
        tf.sum(x, -1),
        tf.sum(x),
      ];
    });
    expect(openblas).toHaveLength(cpu.length);
    for (const [i, expected] of cpu.entries()) expectRelativelyClose(openblas[i] ?? [], expected);
  });

  it.each([
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ])('BatchMatMul, transposeA=%s, transposeB=%s, batch broadcast', async (ta, tb) => {
    const [m, k, n] = [7, 13, 5];
    const aShape: [number, number, number] = ta ? [3, k, m] : [3, m, k];
    const bShape: [number, number, number] = tb ? [1, n, k] : [1, k, n];
    const { cpu, openblas } = await onCpuAndOpenblas(() => [
      tf.matMul(
        tf.tensor3d(values(3 * m * k, 5), aShape),
        tf.tensor3d(values(k * n, 6), bShape),
        ta,
        tb,
      ),
      // Broadcast the other way round, and equal batches of rank 4.
      tf.matMul(
        tf.tensor3d(values(m * k, 7), [1, m, k]),
        tf.tensor3d(values(2 * k * n, 8), [2, k, n]),
      ),
      tf.matMul(
        tf.tensor4d(values(2 * 2 * m * k, 9), [2, 2, m, k]),
        tf.tensor4d(values(2 * 2 * k * n, 10), [2, 2, k, n]),
      ),
    ]);
    for (const [i, expected] of cpu.entries()) expectRelativelyClose(openblas[i] ?? [], expected);
  });

  it('BatchMatMul with batch axes that only broadcast axis by axis falls back to wasm', async () => {
    const { cpu, openblas } = await onCpuAndOpenblas(() =>
      tf.matMul(
        tf.tensor4d(values(2 * 1 * 3 * 4, 11), [2, 1, 3, 4]),
        tf.tensor4d(values(1 * 3 * 4 * 2, 12), [1, 3, 4, 2]),
      ),
    );
    expectRelativelyClose(openblas[0] ?? [], cpu[0] ?? []);
  });

  it.each(['linear', 'relu', 'sigmoid'] as const)(
    'fused matMul with bias and %s activation (sigmoid falls back to wasm)',
    async (activation) => {
      const { cpu, openblas } = await onCpuAndOpenblas(() =>
        tf.fused.matMul({
          a: tf.tensor2d(values(6 * 9, 13), [6, 9]),
          b: tf.tensor2d(values(9 * 4, 14), [9, 4]),
          bias: tf.tensor1d(values(4, 15)),
          activation,
        }),
      );
      expectRelativelyClose(openblas[0] ?? [], cpu[0] ?? []);
    },
  );

  it.each(['fedavg-cnn', 'cnn', 'fedavg-2nn'] as const)(
    'whole-model gradients: %s',
    async (name) => {
      await initBackend('cpu');
      const model = createModel(name, { seed: 3 });
      const weights = getFlatWeights(model);
      const batch = 3;
      const xValues = values(batch * 784, 9).map((v) => (v + 1) / 2);
      const oneHot = new Float32Array(batch * 10);
      for (const [row, label] of [3, 8, 0].entries()) oneHot[row * 10 + label] = 1;
      const inputShape = name === 'fedavg-2nn' ? [batch, 784] : [batch, 28, 28, 1];
      const { cpu, openblas } = await onCpuAndOpenblas(() => {
        setFlatWeights(model, weights);
        const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
        const { grads } = tf.variableGrads(() => {
          const probabilities = model.apply(tf.tensor(xValues, inputShape)) as tf.Tensor;
          return tf.neg(
            tf.sum(tf.mul(tf.tensor2d(oneHot, [batch, 10]), tf.log(probabilities))),
          ) as tf.Scalar;
        }, variables);
        return variables.map((v) => grads[v.name] as tf.Tensor);
      });
      expect(openblas).toHaveLength(cpu.length);
      for (const [i, expected] of cpu.entries()) expectRelativelyClose(openblas[i] ?? [], expected);
      model.dispose();
    },
  );
});

describe.skipIf(!native.ok)('the openblas backend', () => {
  it('is the wasm backend with these kernels replaced, and wasm puts them back', async () => {
    const info = await initBackend('openblas');
    expect(info).toMatchObject({ name: 'openblas', tfBackend: 'wasm' });
    expect(info.detail).toMatch(/OpenBLAS \(\w+ kernels\), \d+ threads?/);
    expect(openblasKernelsInstalled()).toBe(true);
    const replaced = OPENBLAS_KERNEL_NAMES.map((name) => tf.getKernel(name, 'wasm')?.kernelFunc);
    await initBackend('wasm');
    expect(openblasKernelsInstalled()).toBe(false);
    OPENBLAS_KERNEL_NAMES.forEach((name, i) => {
      expect(tf.getKernel(name, 'wasm')?.kernelFunc).not.toBe(replaced[i]);
    });
  });

  it('trains to the same weights as the wasm backend (same SGD steps), on 2 threads', async () => {
    const run = async (backend: BackendPreference): Promise<Float32Array> => {
      await initBackend(backend, backend === 'openblas' ? { threads: 2 } : {});
      const model = createModel('fedavg-cnn', { seed: 5 });
      const count = 40;
      const y = new Uint8Array(count).map((_, i) => (i * 7) % 10);
      const x = values(count * 784, 17).map((v) => (v + 1) / 2);
      await trainLocal(
        model,
        { x, y, count },
        { epochs: 1, batchSize: 10, learningRate: 0.05, seed: 9 },
      );
      const weights = getFlatWeights(model);
      model.dispose();
      return weights;
    };
    const wasm = await run('wasm');
    const openblas = await run('openblas');
    expect((await initBackend('openblas', { threads: 2 })).detail).toMatch(/2 threads/);
    expectRelativelyClose(openblas, wasm);
  });

  it('leaks no tensors and no wasm memory over a training step', async () => {
    await initBackend('openblas');
    const model = createModel('fedavg-cnn', { seed: 2 });
    const x = tf.tensor4d(values(4 * 784, 19), [4, 28, 28, 1]);
    const labels = tf.oneHot(tf.tensor1d([1, 2, 3, 4], 'int32'), 10);
    const optimizer = tf.train.sgd(0.01);
    const step = () =>
      optimizer.minimize(
        () => tf.losses.softmaxCrossEntropy(labels, model.apply(x) as tf.Tensor) as tf.Scalar,
      );
    step();
    const backend = tf.backend() as BackendWasm;
    const tensors = tf.memory().numTensors;
    const dataIds = backend.numDataIds();
    for (let i = 0; i < 3; i++) step();
    expect(tf.memory().numTensors).toBe(tensors);
    expect(backend.numDataIds()).toBe(dataIds);
    for (const t of [x, labels]) t.dispose();
    optimizer.dispose();
    model.dispose();
  });

  it('refuses data-parallel workers (its products use every core already); auto picks 1', async () => {
    await initBackend('openblas');
    const model = createModel('fedavg-2nn', { seed: 1 });
    const data = {
      x: values(64 * 784, 23).map((v) => (v + 1) / 2),
      y: new Uint8Array(64),
      count: 64,
    };
    const options = { epochs: 1, batchSize: 64, learningRate: 0.01, seed: 1 };
    await expect(trainLocal(model, data, { ...options, workers: 2 })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/not 'openblas' \(it uses every core itself\)/),
    });
    expect((await trainLocal(model, data, { ...options, workers: 'auto' })).workers).toBe(1);
    model.dispose();
  });

  it('is refused with a clear error for a thread count that is not a positive integer', async () => {
    await expect(initBackend('openblas', { threads: 0 })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/threads must be a positive integer, got 0/),
    });
  });
});

describe.skipIf(!native.ok)('the addon refuses bad calls instead of writing out of bounds', () => {
  const kernels = native.ok ? native.kernels : undefined;
  // [batch, inH, inW, inC, fH, fW, outC, outH, outW, sH, sW, dH, dW, padTop, padLeft]
  const sizes = Int32Array.of(1, 4, 4, 1, 3, 3, 2, 4, 4, 1, 1, 1, 1, 1, 1);

  it('an output of the wrong length', () => {
    const output = new Float32Array(31).fill(7);
    expect(() =>
      kernels?.conv2d(new Float32Array(16), new Float32Array(18), output, sizes),
    ).toThrow(/y has the wrong size/);
    expect(output.every((v) => v === 7)).toBe(true);
  });

  it('sizes of the wrong length or sign, and arguments of the wrong type', () => {
    const ok = [new Float32Array(16), new Float32Array(18), new Float32Array(32)] as const;
    expect(() => kernels?.conv2d(...ok, Int32Array.of(1, 2, 3))).toThrow(
      /sizes must be an Int32Array/,
    );
    const negative = sizes.slice();
    negative[13] = -1;
    expect(() => kernels?.conv2d(...ok, negative)).toThrow(/must not be negative/);
    const zeroStride = sizes.slice();
    zeroStride[9] = 0;
    expect(() => kernels?.conv2d(...ok, zeroStride)).toThrow(
      /strides and dilations must be at least 1/,
    );
    expect(() =>
      kernels?.conv2d(new Float64Array(16) as unknown as Float32Array, ok[1], ok[2], sizes),
    ).toThrow(/must be a Float32Array/);
    expect(() =>
      kernels?.columnSum(new Float32Array(12), new Float32Array(3), Int32Array.of(3, 4)),
    ).toThrow(/out has the wrong size/);
    expect(() =>
      kernels?.matMul(
        new Float32Array(6),
        new Float32Array(6),
        new Float32Array(4),
        Int32Array.of(2, 3, 2, 2, 3, 0, 0),
      ),
    ).toThrow(/batch sizes must be equal or one of them 1/);
  });
});
