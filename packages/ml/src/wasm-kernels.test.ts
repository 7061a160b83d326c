import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from './backend.js';
import { createModel } from './models.js';
import { getFlatWeights, setFlatWeights } from './weights.js';

/** Deterministic pseudo-random values in [-1, 1), so both backends see the same inputs. */
function values(size: number, salt: number): Float32Array {
  const out = new Float32Array(size);
  let state = (salt * 2654435761) >>> 0;
  for (let i = 0; i < size; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = state / 2 ** 31 - 1;
  }
  return out;
}

/** max |actual - expected| <= tolerance * max |expected|: relative to the result's scale. */
function expectRelativelyClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tolerance = 1e-4,
): void {
  expect(actual.length).toBe(expected.length);
  let scale = 0;
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    scale = Math.max(scale, Math.abs(expected[i] ?? 0));
    worst = Math.max(worst, Math.abs((actual[i] ?? 0) - (expected[i] ?? 0)));
  }
  expect(scale).toBeGreaterThan(0);
  expect(worst / scale).toBeLessThanOrEqual(tolerance);
}

/** Runs `compute` on 'cpu' and on 'wasm' and returns both results as arrays. */
async function onBothBackends(
  compute: () => tf.Tensor | tf.Tensor[],
): Promise<{ cpu: Float32Array[]; wasm: Float32Array[] }> {
  const run = async (backend: 'cpu' | 'wasm'): Promise<Float32Array[]> => {
    await initBackend(backend);
    return tf.tidy(() => {
      const result = compute();
      return (Array.isArray(result) ? result : [result]).map((t) => t.dataSync() as Float32Array);
    });
  };
  const cpu = await run('cpu');
  const wasm = await run('wasm');
  return { cpu, wasm };
}

const wasmBackend = (): BackendWasm => tf.backend() as BackendWasm;

beforeAll(async () => {
  await initBackend('wasm');
});

interface ConvCase {
  name: string;
  input: [number, number, number, number];
  filter: [number, number, number, number];
  strides: number | [number, number];
  pad: 'same' | 'valid' | number;
}

const CONV_CASES: ConvCase[] = [
  {
    name: 'stride 1, same, 5x5 (fedavg-cnn conv2, small)',
    input: [2, 14, 14, 8],
    filter: [5, 5, 8, 16],
    strides: 1,
    pad: 'same',
  },
  {
    name: 'stride 1, valid, 3x3',
    input: [3, 12, 12, 4],
    filter: [3, 3, 4, 8],
    strides: 1,
    pad: 'valid',
  },
  {
    name: 'stride 2, same, odd sizes',
    input: [2, 9, 11, 3],
    filter: [3, 5, 3, 5],
    strides: 2,
    pad: 'same',
  },
  {
    name: 'stride 2, valid, odd sizes',
    input: [2, 13, 7, 2],
    filter: [5, 3, 2, 3],
    strides: 2,
    pad: 'valid',
  },
  {
    name: 'strides [1, 2], same, batch 1',
    input: [1, 10, 9, 1],
    filter: [4, 4, 1, 6],
    strides: [1, 2],
    pad: 'same',
  },
  {
    name: 'stride 1, explicit pad 1, batch 1, one channel',
    input: [1, 6, 6, 1],
    filter: [3, 3, 1, 1],
    strides: 1,
    pad: 1,
  },
];

describe('Conv2DBackpropFilter on wasm', () => {
  it.each(CONV_CASES)('matches the cpu backend: $name', async ({ input, filter, strides, pad }) => {
    const xValues = values(
      input.reduce((p, d) => p * d, 1),
      1,
    );
    // dy has the forward output's shape; get it from a forward pass.
    const outShape = tf.tidy(
      () =>
        tf.conv2d(tf.zeros(input) as tf.Tensor4D, tf.zeros(filter) as tf.Tensor4D, strides, pad)
          .shape,
    );
    const dyValues = values(
      outShape.reduce((p, d) => p * d, 1),
      2,
    );
    const { cpu, wasm } = await onBothBackends(
      () =>
        tf
          .engine()
          .runKernel(
            'Conv2DBackpropFilter',
            { x: tf.tensor4d(xValues, input), dy: tf.tensor(dyValues, outShape) },
            { strides, pad, dataFormat: 'NHWC', filterShape: filter } as unknown as tf.NamedAttrMap,
          ) as tf.Tensor,
    );
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

  it('leaks no wasm memory when it transposes', async () => {
    await initBackend('wasm');
    const a = tf.tensor2d(values(6 * 4, 7), [6, 4]);
    const b = tf.tensor2d(values(6 * 3, 8), [6, 3]);
    const dataIdsBefore = wasmBackend().numDataIds();
    tf.matMul(a, b, true, false).dispose();
    expect(wasmBackend().numDataIds()).toBe(dataIdsBefore);
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
