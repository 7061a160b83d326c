import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import {
  BatchMatMul,
  Conv2DBackpropFilter,
  type Conv2DBackpropFilterAttrs,
  type Conv2DBackpropFilterInputs,
  getKernel,
  type KernelConfig,
  type KernelFunc,
  registerKernel,
  type TensorInfo,
  unregisterKernel,
} from '@tensorflow/tfjs-core';
import { type Conv2DShape, conv2DInfo } from './conv-info.js';
import { fillFilterGradientColumns } from './wasm-kernels.js';

/** Kernels of tfjs-backend-cpu replaced by faster ones (see below). */
export const CPU_WRAPPED_KERNEL_NAMES: readonly string[] = [Conv2DBackpropFilter];

let packagedConv2DBackpropFilter: KernelConfig | undefined;

/**
 * dW as im2col + the cpu backend's blocked BatchMatMul. The packaged kernel reads every
 * element through TensorBuffer.get: measured 15 s for fedavg-cnn's second layer at batch
 * 10, which made the CNNs untrainable on the plain JavaScript backend.
 */
export const conv2DBackpropFilterCpu: KernelFunc = (args) => {
  const cpu = args.backend as MathBackendCPU;
  const { x, dy } = args.inputs as Conv2DBackpropFilterInputs;
  const attrs = args.attrs as unknown as Conv2DBackpropFilterAttrs;
  const packaged = packagedConv2DBackpropFilter;
  if (x === undefined || dy === undefined || packaged === undefined) {
    throw new Error('Conv2DBackpropFilter (cpu): missing input or packaged kernel');
  }
  const info = conv2DInfo(x.shape as Conv2DShape, attrs.filterShape, attrs);
  if (info.dataFormat !== 'channelsLast' || x.dtype !== 'float32' || dy.dtype !== 'float32') {
    return packaged.kernelFunc(args);
  }
  const rows = info.batchSize * info.outHeight * info.outWidth;
  const taps = info.filterHeight * info.filterWidth * info.inChannels;
  const columnValues = new Float32Array(taps * rows);
  fillFilterGradientColumns(columnValues, cpu.data.get(x.dataId)?.values as Float32Array, info);
  const columns = cpu.makeTensorInfo([1, taps, rows], 'float32', columnValues);
  // dy is contiguous NHWC, so [rows, outChannels] is the same data with another shape.
  const dyMatrix: TensorInfo = {
    dataId: dy.dataId,
    shape: [1, rows, info.outChannels],
    dtype: 'float32',
  };
  try {
    const product = getKernel(BatchMatMul, 'cpu')?.kernelFunc({
      inputs: { a: columns, b: dyMatrix },
      backend: cpu,
      attrs: { transposeA: false, transposeB: false },
    }) as TensorInfo;
    return { dataId: product.dataId, shape: [...attrs.filterShape], dtype: 'float32' };
  } finally {
    cpu.disposeIntermediateTensorInfo(columns);
  }
};

/** The cpu package's own Conv2DBackpropFilter (the reference in tests). */
export function packagedCpuConv2DBackpropFilter(): KernelConfig | undefined {
  return packagedConv2DBackpropFilter;
}

/** Replaces the cpu backend's Conv2DBackpropFilter, once per process. */
export function registerCpuTrainingKernels(): void {
  const registered = getKernel(Conv2DBackpropFilter, 'cpu');
  if (registered === undefined || registered.kernelFunc === conv2DBackpropFilterCpu) return;
  packagedConv2DBackpropFilter = registered;
  unregisterKernel(Conv2DBackpropFilter, 'cpu');
  registerKernel({ ...registered, kernelFunc: conv2DBackpropFilterCpu });
}
