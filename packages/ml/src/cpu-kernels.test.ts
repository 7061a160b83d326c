import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { initBackend } from './backend.js';
import { conv2DBackpropFilterCpu, packagedCpuConv2DBackpropFilter } from './cpu-kernels.js';

function values(size: number, salt: number): Float32Array {
  const out = new Float32Array(size);
  let state = (salt * 2654435761) >>> 0;
  for (let i = 0; i < size; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = state / 2 ** 31 - 1;
  }
  return out;
}

const product = (shape: readonly number[]): number => shape.reduce((p, d) => p * d, 1);

describe('Conv2DBackpropFilter on cpu (im2col + matmul)', () => {
  it.each([
    {
      name: 'stride 1, same, 5x5',
      input: [2, 14, 14, 8],
      filter: [5, 5, 8, 16],
      strides: 1,
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
      name: 'stride 1, explicit pad 1',
      input: [1, 6, 6, 3],
      filter: [3, 3, 3, 2],
      strides: 1,
      pad: 1,
    },
  ] as const)('matches the packaged cpu kernel: $name', async (c) => {
    await initBackend('cpu');
    const packaged = packagedCpuConv2DBackpropFilter();
    expect(packaged).toBeDefined();
    const x = tf.tensor4d(values(product(c.input), 1), [...c.input] as [
      number,
      number,
      number,
      number,
    ]);
    const filterShape = [...c.filter] as [number, number, number, number];
    const outShape = tf.tidy(
      () => tf.conv2d(x, tf.zeros(filterShape) as tf.Tensor4D, c.strides as number, c.pad).shape,
    );
    const dy = tf.tensor(values(product(outShape), 2), outShape);
    const args = {
      inputs: { x, dy },
      backend: tf.backend(),
      attrs: {
        strides: c.strides,
        pad: c.pad,
        dataFormat: 'NHWC',
        filterShape,
      } as unknown as Record<string, number>,
    };
    const run = (kernel: typeof conv2DBackpropFilterCpu) => {
      const info = kernel(args) as tf.TensorInfo;
      const result = tf.engine().makeTensorFromTensorInfo(info);
      const data = result.dataSync().slice();
      result.dispose();
      return data;
    };
    const expected = run(packaged?.kernelFunc ?? conv2DBackpropFilterCpu);
    const actual = run(conv2DBackpropFilterCpu);
    let scale = 0;
    let worst = 0;
    for (let i = 0; i < expected.length; i++) {
      scale = Math.max(scale, Math.abs(expected[i] ?? 0));
      worst = Math.max(worst, Math.abs((actual[i] ?? 0) - (expected[i] ?? 0)));
    }
    expect(actual.length).toBe(product(filterShape));
    expect(worst / scale).toBeLessThanOrEqual(1e-4);
    x.dispose();
    dy.dispose();
  });

  it('is what tf.grad of conv2d uses on cpu', async () => {
    await initBackend('cpu');
    expect(tf.getKernel('Conv2DBackpropFilter', 'cpu')?.kernelFunc).toBe(conv2DBackpropFilterCpu);
  });
});
