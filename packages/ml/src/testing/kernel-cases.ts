/**
 * What the kernel tests share (cpu, wasm and OpenBLAS kernels, each checked against a
 * reference backend): deterministic inputs, one tolerance rule, one list of convolution
 * geometries. Test support only: not part of the build.
 */
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';
import { type BackendPreference, initBackend } from '../backend.js';

/** Deterministic pseudo-random values in [-1, 1), so every backend sees the same inputs. */
export function values(size: number, salt: number): Float32Array {
  const out = new Float32Array(size);
  let state = (salt * 2654435761) >>> 0;
  for (let i = 0; i < size; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = state / 2 ** 31 - 1;
  }
  return out;
}

export const product = (shape: readonly number[]): number => shape.reduce((p, d) => p * d, 1);

/** max |actual - expected| <= tolerance * max |expected|: relative to the result's scale. */
export function expectRelativelyClose(
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

export interface ConvCase {
  name: string;
  input: [number, number, number, number];
  filter: [number, number, number, number];
  strides: number | [number, number];
  pad: 'same' | 'valid' | number;
  dilations?: number | [number, number];
}

/**
 * Strides 1, 2, 3 and mixed, 'same', 'valid' and explicit padding (wider than the filter
 * too), odd sizes, batch 1, one channel: the cases every convolution kernel is held to.
 */
export const CONV_CASES: readonly ConvCase[] = [
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
    name: 'stride 3, valid, rows no output reads',
    input: [2, 10, 11, 3],
    filter: [2, 2, 3, 4],
    strides: 3,
    pad: 'valid',
  },
  {
    name: 'stride 1, explicit pad 3 wider than the 3x3 filter',
    input: [1, 5, 6, 2],
    filter: [3, 3, 2, 3],
    strides: 1,
    pad: 3,
  },
  {
    name: 'stride 1, explicit pad 1, batch 1, one channel',
    input: [1, 6, 6, 1],
    filter: [3, 3, 1, 1],
    strides: 1,
    pad: 1,
  },
];

/** dy for a convolution of `input` by `filter`: random values in the forward output's shape. */
export function randomDy(c: ConvCase, salt = 2): { dyValues: Float32Array; outShape: number[] } {
  const outShape = tf.tidy(
    () =>
      tf.conv2d(
        tf.zeros(c.input) as tf.Tensor4D,
        tf.zeros(c.filter) as tf.Tensor4D,
        c.strides,
        c.pad,
        'NHWC',
        c.dilations ?? 1,
      ).shape,
  );
  return { dyValues: values(product(outShape), salt), outShape };
}

export interface MaxPoolCase {
  name: string;
  input: [number, number, number, number];
  size: number | [number, number];
  strides: number | [number, number];
  pad: 'same' | 'valid';
}

/** Max-pool geometries for MaxPoolGrad: fedavg-cnn's, odd sizes, overlapping windows. */
export const MAX_POOL_CASES: readonly MaxPoolCase[] = [
  {
    name: '2x2 stride 2 valid (fedavg-cnn)',
    input: [2, 8, 8, 5],
    size: 2,
    strides: 2,
    pad: 'valid',
  },
  { name: '3x3 stride 2 same, odd sizes', input: [2, 9, 7, 3], size: 3, strides: 2, pad: 'same' },
  {
    name: '3x3 stride 1 same, overlapping windows, batch 1',
    input: [1, 6, 5, 4],
    size: 3,
    strides: 1,
    pad: 'same',
  },
  {
    name: '2x3 strides [1, 2] valid, batch 1',
    input: [1, 7, 9, 2],
    size: [2, 3],
    strides: [1, 2],
    pad: 'valid',
  },
];

/** The gradient of a weighted sum of maxPool(x): weights differ so misrouted gradients show. */
export function maxPoolGradient(
  input: MaxPoolCase['input'],
  size: MaxPoolCase['size'],
  strides: MaxPoolCase['strides'],
  pad: MaxPoolCase['pad'],
  xValues: Float32Array,
): tf.Tensor {
  return tf.grad((x: tf.Tensor) => {
    const pooled = tf.maxPool(x as tf.Tensor4D, size, strides, pad);
    return tf.sum(tf.mul(pooled, tf.tensor(values(pooled.size, 22), pooled.shape)));
  })(tf.tensor4d(xValues, input));
}

/** Runs `compute` on each backend in turn and returns, per backend, each result's values. */
export async function resultsOn(
  backends: readonly BackendPreference[],
  compute: () => tf.Tensor | tf.Tensor[],
): Promise<Float32Array[][]> {
  const results: Float32Array[][] = [];
  for (const backend of backends) {
    await initBackend(backend);
    results.push(
      tf.tidy(() => {
        const result = compute();
        return (Array.isArray(result) ? result : [result]).map((t) => t.dataSync() as Float32Array);
      }),
    );
  }
  return results;
}

/** Conv2DBackpropInput for a case, run as a kernel (dx given dy and the filter). */
export function conv2DBackpropInputOf(
  c: ConvCase,
  dy: { dyValues: Float32Array; outShape: number[] },
  filterValues: Float32Array,
): tf.Tensor {
  return tf
    .engine()
    .runKernel(
      'Conv2DBackpropInput',
      { dy: tf.tensor(dy.dyValues, dy.outShape), filter: tf.tensor4d(filterValues, c.filter) },
      {
        strides: c.strides,
        pad: c.pad,
        dataFormat: 'NHWC',
        inputShape: c.input,
      } as unknown as tf.NamedAttrMap,
    ) as tf.Tensor;
}

/** Conv2DBackpropFilter for a case, run as a kernel (dW given x and dy). */
export function conv2DBackpropFilterOf(
  c: ConvCase,
  xValues: Float32Array,
  dy: { dyValues: Float32Array; outShape: number[] },
): tf.Tensor {
  return tf
    .engine()
    .runKernel(
      'Conv2DBackpropFilter',
      { x: tf.tensor4d(xValues, c.input), dy: tf.tensor(dy.dyValues, dy.outShape) },
      {
        strides: c.strides,
        pad: c.pad,
        dataFormat: 'NHWC',
        filterShape: c.filter,
      } as unknown as tf.NamedAttrMap,
    ) as tf.Tensor;
}
