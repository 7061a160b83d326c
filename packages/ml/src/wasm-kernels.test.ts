import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from './backend.js';
import { createModel } from './models.js';
import {
  CONV_CASES,
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
import { getFlatWeights, setFlatWeights } from './weights.js';

/** Runs `compute` on 'cpu' and on 'wasm' and returns both results as arrays. */
async function onBothBackends(
  compute: () => tf.Tensor | tf.Tensor[],
): Promise<{ cpu: Float32Array[]; wasm: Float32Array[] }> {
  const [cpu = [], wasm = []] = await resultsOn(['cpu', 'wasm'], compute);
  return { cpu, wasm };
}

const wasmBackend = (): BackendWasm => tf.backend() as BackendWasm;

beforeAll(async () => {
  await initBackend('wasm');
});

describe('Conv2DBackpropFilter on wasm', () => {
  it.each(CONV_CASES)('matches the cpu backend: $name', async (c) => {
    const xValues = values(product(c.input), 1);
    const dy = randomDy(c);
    const { cpu, wasm } = await onBothBackends(() => conv2DBackpropFilterOf(c, xValues, dy));
    expectRelativelyClose(wasm[0] ?? [], cpu[0] ?? []);
  });

  it('is what tf.grad of conv2d uses, and leaks no wasm memory', async () => {
    await initBackend('wasm');
    const x = tf.tensor4d(values(2 * 8 * 8 * 3, 3), [2, 8, 8, 3]);
    const filter = tf.tensor4d(values(3 * 3 * 3 * 4, 4), [3, 3, 3, 4]);
    const gradient = tf.grad((f: tf.Tensor) => tf.sum(tf.conv2d(x, f as tf.Tensor4D, 1, 'same')));
    gradient(filter).dispose();
    const dataIdsBefore = wasmBackend().numDataIds();
    const tensorsBefore = tf.memory().numTensors;
    const dFilter = gradient(filter);
    expect(dFilter.shape).toEqual([3, 3, 3, 4]);
    dFilter.dispose();
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    expect(wasmBackend().numDataIds()).toBe(dataIdsBefore);
    x.dispose();
    filter.dispose();
  });
});

describe('Conv2DBackpropInput on wasm (as a forward convolution)', () => {
  it.each(CONV_CASES)('matches the cpu backend: $name', async (c) => {
    const filterValues = values(product(c.filter), 3);
    const dy = randomDy(c);
    const { cpu, wasm } = await onBothBackends(() => conv2DBackpropInputOf(c, dy, filterValues));
    expectRelativelyClose(wasm[0] ?? [], cpu[0] ?? []);
  });

  it('gives the same answer again with a new filter of the same shape, and leaks no wasm memory', async () => {
    await initBackend('wasm');
    const dy = tf.tensor4d(values(2 * 6 * 6 * 4, 11), [2, 6, 6, 4]);
    const run = (filter: tf.Tensor4D) =>
      tf.tidy(() => tf.conv2dTranspose(dy, filter, [2, 6, 6, 3], 1, 'same').dataSync());
    const first = tf.tensor4d(values(3 * 3 * 3 * 4, 12), [3, 3, 3, 4]);
    const second = tf.tensor4d(values(3 * 3 * 3 * 4, 13), [3, 3, 3, 4]);
    const firstResult = run(first);
    const dataIdsBefore = wasmBackend().numDataIds();
    const secondResult = run(second);
    expect(wasmBackend().numDataIds()).toBe(dataIdsBefore);
    expect(Array.from(secondResult)).not.toEqual(Array.from(firstResult));
    expect(Array.from(run(first))).toEqual(Array.from(firstResult));
    for (const t of [dy, first, second]) t.dispose();
  });
});

describe('MaxPoolGrad on wasm', () => {
  it.each(MAX_POOL_CASES)(
    'matches the cpu backend: $name',
    async ({ input, size, strides, pad }) => {
      const xValues = values(product(input), 21);
      const { cpu, wasm } = await onBothBackends(() =>
        maxPoolGradient(input, size, strides, pad, xValues),
      );
      expectRelativelyClose(wasm[0] ?? [], cpu[0] ?? []);
    },
  );
});

interface DepthwiseCase {
  name: string;
  input: [number, number, number, number];
  /** [kh, kw, inChannels, multiplier] */
  filter: [number, number, number, number];
  strides: number | [number, number];
  pad: 'same' | 'valid';
}

const DEPTHWISE_CASES: DepthwiseCase[] = [
  {
    name: 'stride 1, same, 3x3',
    input: [2, 8, 8, 4],
    filter: [3, 3, 4, 1],
    strides: 1,
    pad: 'same',
  },
  {
    name: 'stride 1, valid, multiplier 2',
    input: [2, 7, 9, 3],
    filter: [3, 3, 3, 2],
    strides: 1,
    pad: 'valid',
  },
  {
    name: 'stride 2, same, odd sizes',
    input: [2, 9, 7, 3],
    filter: [5, 3, 3, 1],
    strides: 2,
    pad: 'same',
  },
  {
    name: 'stride 2, valid, odd sizes, multiplier 3',
    input: [1, 11, 9, 2],
    filter: [3, 3, 2, 3],
    strides: 2,
    pad: 'valid',
  },
  {
    name: 'strides [1, 2], same, batch 1',
    input: [1, 6, 10, 5],
    filter: [2, 4, 5, 1],
    strides: [1, 2],
    pad: 'same',
  },
];

describe('depthwise convolution gradients on wasm', () => {
  it.each(DEPTHWISE_CASES)('match the cpu backend: $name', async (c) => {
    const xValues = values(product(c.input), 31);
    const filterValues = values(product(c.filter), 32);
    const { cpu, wasm } = await onBothBackends(() => {
      const x = tf.tensor4d(xValues, c.input);
      const filter = tf.tensor4d(filterValues, c.filter);
      const outShape = tf.depthwiseConv2d(x, filter, c.strides, c.pad).shape;
      const weighting = tf.tensor(values(product(outShape), 33), outShape);
      // Both gradients at once: DepthwiseConv2dNativeBackpropInput and ...Filter.
      const { dx, dfilter } = {
        dx: tf.grad((input: tf.Tensor) =>
          tf.sum(
            tf.mul(tf.depthwiseConv2d(input as tf.Tensor4D, filter, c.strides, c.pad), weighting),
          ),
        )(x),
        dfilter: tf.grad((f: tf.Tensor) =>
          tf.sum(tf.mul(tf.depthwiseConv2d(x, f as tf.Tensor4D, c.strides, c.pad), weighting)),
        )(filter),
      };
      return [dx, dfilter];
    });
    expectRelativelyClose(wasm[0] ?? [], cpu[0] ?? []);
    expectRelativelyClose(wasm[1] ?? [], cpu[1] ?? []);
  });
});

describe('UnsortedSegmentSum on wasm', () => {
  it('matches the cpu backend, dropping ids outside 0..numSegments-1', async () => {
    const ids = [3, 0, 3, -1, 1, 7, 0];
    const xValues = values(7 * 5, 41);
    const { cpu, wasm } = await onBothBackends(() =>
      tf.unsortedSegmentSum(tf.tensor2d(xValues, [7, 5]), tf.tensor1d(ids, 'int32'), 5),
    );
    expectRelativelyClose(wasm[0] ?? [], cpu[0] ?? []);
  });

  it('matches the cpu backend with int32 values of rank 3', async () => {
    const { cpu, wasm } = await onBothBackends(() =>
      tf.unsortedSegmentSum(
        tf.tensor3d(
          Array.from({ length: 4 * 2 * 3 }, (_, i) => i - 7),
          [4, 2, 3],
          'int32',
        ),
        tf.tensor1d([2, 0, 2, 1], 'int32'),
        3,
      ),
    );
    expect(Array.from(wasm[0] ?? [])).toEqual(Array.from(cpu[0] ?? []));
  });

  it('is the gradient of tf.gather (an embedding lookup) and matches cpu', async () => {
    const table = values(6 * 4, 42);
    const { cpu, wasm } = await onBothBackends(() =>
      tf.grad((embeddings: tf.Tensor) => {
        const looked = tf.gather(embeddings, tf.tensor2d([0, 5, 5, 2, 0, 0], [2, 3], 'int32'));
        return tf.sum(tf.mul(looked, tf.tensor(values(2 * 3 * 4, 43), [2, 3, 4])));
      })(tf.tensor2d(table, [6, 4])),
    );
    expectRelativelyClose(wasm[0] ?? [], cpu[0] ?? []);
  });

  it('names a segmentIds shape that does not match x', async () => {
    await initBackend('wasm');
    expect(() =>
      tf.tidy(() => tf.unsortedSegmentSum(tf.zeros([4, 3]), tf.tensor1d([0, 1, 0], 'int32'), 2)),
    ).toThrow(/segmentIds shape \[3\] must be a prefix of x's \[4, 3\]/);
  });
});

describe('BatchMatMul on wasm (transposes made explicit)', () => {
  it.each([
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ])(
    'matches the cpu backend with transposeA=%s, transposeB=%s',
    async (transposeA, transposeB) => {
      const [m, k, n] = [7, 13, 5];
      const aShape = transposeA ? [3, k, m] : [3, m, k];
      const bShape = transposeB ? [1, n, k] : [1, k, n]; // batch broadcast too
      const { cpu, wasm } = await onBothBackends(() =>
        tf.matMul(
          tf.tensor3d(values(3 * m * k, 5), aShape as [number, number, number]),
          tf.tensor3d(values(k * n, 6), bShape as [number, number, number]),
          transposeA,
          transposeB,
        ),
      );
      expectRelativelyClose(wasm[0] ?? [], cpu[0] ?? []);
    },
  );

  it.each([
    ['x.W, small x, large W', false, false],
    ['dy.W^T, small dy, large W', false, true],
  ])(
    'matches the cpu backend with the roles swapped: %s',
    async (_name, transposeA, transposeB) => {
      const [m, k, n] = [3, 40, 50];
      const a = values(m * k, 14);
      const b = values(k * n, 15);
      const bShape: [number, number] = transposeB ? [n, k] : [k, n];
      const { cpu, wasm } = await onBothBackends(() => {
        const right = tf.tensor2d(b, bShape);
        // Twice with the same right operand: the second product takes the plain route.
        const first = tf.matMul(tf.tensor2d(a, [m, k]), right, transposeA, transposeB);
        const second = tf.matMul(tf.tensor2d(a, [m, k]), right, transposeA, transposeB);
        return [first, second];
      });
      expectRelativelyClose(wasm[0] ?? [], cpu[0] ?? []);
      expectRelativelyClose(wasm[1] ?? [], cpu[1] ?? []);
    },
  );

  it('leaks no wasm memory when it transposes', async () => {
    await initBackend('wasm');
    const a = tf.tensor2d(values(6 * 4, 7), [6, 4]);
    const b = tf.tensor2d(values(6 * 3, 8), [6, 3]);
    const dataIdsBefore = wasmBackend().numDataIds();
    tf.matMul(a, b, true, false).dispose();
    expect(wasmBackend().numDataIds()).toBe(dataIdsBefore);
    const small = tf.tensor2d(values(2 * 6, 9), [2, 6]);
    const large = tf.tensor2d(values(6 * 40, 10), [6, 40]);
    const largeT = tf.transpose(large);
    const dataIdsBeforeSwap = wasmBackend().numDataIds();
    tf.matMul(small, large).dispose();
    tf.matMul(small, largeT, false, true).dispose();
    expect(wasmBackend().numDataIds()).toBe(dataIdsBeforeSwap);
    for (const t of [small, large, largeT]) t.dispose();
    a.dispose();
    b.dispose();
  });
});

describe('whole-model gradients on wasm match cpu', () => {
  it.each(['fedavg-cnn', 'cnn'] as const)('%s', async (name) => {
    await initBackend('cpu');
    const model = createModel(name, { seed: 3 });
    const weights = getFlatWeights(model);
    const batch = 2;
    const xValues = values(batch * 784, 9).map((v) => (v + 1) / 2);
    const oneHot = new Float32Array(batch * 10);
    oneHot[3] = 1;
    oneHot[10 + 8] = 1;
    const { cpu, wasm } = await onBothBackends(() => {
      setFlatWeights(model, weights);
      const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
      const { grads } = tf.variableGrads(() => {
        const probabilities = model.apply(tf.tensor4d(xValues, [batch, 28, 28, 1])) as tf.Tensor;
        return tf.neg(
          tf.sum(tf.mul(tf.tensor2d(oneHot, [batch, 10]), tf.log(probabilities))),
        ) as tf.Scalar;
      }, variables);
      return variables.map((v) => grads[v.name] as tf.Tensor);
    });
    expect(wasm).toHaveLength(cpu.length);
    cpu.forEach((expected, i) => {
      expectRelativelyClose(wasm[i] ?? [], expected);
    });
    model.dispose();
  });
});
