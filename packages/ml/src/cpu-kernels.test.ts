import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { initBackend } from './backend.js';
import { conv2DBackpropFilterCpu, packagedCpuConv2DBackpropFilter } from './cpu-kernels.js';
import { CONV_CASES, expectRelativelyClose, product, values } from './testing/kernel-cases.js';

describe('Conv2DBackpropFilter on cpu (im2col + matmul)', () => {
  it.each(CONV_CASES)('matches the packaged cpu kernel: $name', async (c) => {
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
    expect(actual.length).toBe(product(filterShape));
    expectRelativelyClose(actual, expected);
    x.dispose();
    dy.dispose();
  });

  it('is what tf.grad of conv2d uses on cpu', async () => {
    await initBackend('cpu');
    expect(tf.getKernel('Conv2DBackpropFilter', 'cpu')?.kernelFunc).toBe(conv2DBackpropFilterCpu);
  });
});
