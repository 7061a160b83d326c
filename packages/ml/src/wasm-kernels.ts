import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import {
  BatchMatMul,
  type BatchMatMulAttrs,
  type BatchMatMulInputs,
  backend_util,
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

/**
 * Kernels that tfjs-backend-wasm 4.22 lacks but that training the zoo's CNNs needs.
 * Without Conv2DBackpropFilter, the gradient of every conv kernel fails on 'wasm'. (The
 * rest of the CNN training path, Conv2DBackpropInput, MaxPoolGrad, ReLU's Step, exists.)
 */
export const WASM_EXTRA_KERNEL_NAMES: readonly string[] = [Conv2DBackpropFilter];

/** Kernels of tfjs-backend-wasm that are wrapped rather than added (see below). */
export const WASM_WRAPPED_KERNEL_NAMES: readonly string[] = [BatchMatMul];

type Conv2DShape = [number, number, number, number];

function requireInput(inputs: Record<string, TensorInfo | undefined>, name: string): TensorInfo {
  const input = inputs[name];
  if (input === undefined) throw new Error(`Conv2DBackpropFilter (wasm): missing input '${name}'`);
  return input;
}

/**
 * dW for a 2-D convolution, as im2col + one matrix product:
 * columns[p, r] = x at the input position that filter tap p = (kh, kw, ci) reads for
 * output position r = (n, oh, ow), zero in the padding; then dW = columns x dy, with dy
 * viewed as [rows, outChannels]. The columns are written straight into the wasm heap in
 * [taps, rows] order so that the product is a plain, untransposed matmul, the fast path
 * of the wasm backend's own BatchMatMul kernel (XNNPACK).
 */
export const conv2DBackpropFilterWasm: KernelFunc = ({ inputs, backend, attrs }) => {
  const wasm = backend as BackendWasm;
  const x = requireInput(inputs as Conv2DBackpropFilterInputs, 'x');
  const dy = requireInput(inputs as Conv2DBackpropFilterInputs, 'dy');
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } =
    attrs as unknown as Conv2DBackpropFilterAttrs;
  if (x.dtype !== 'float32' || dy.dtype !== 'float32') {
    throw new Error(`Conv2DBackpropFilter (wasm): float32 only, got ${x.dtype} and ${dy.dtype}`);
  }
  const info = backend_util.computeConv2DInfo(
    x.shape as Conv2DShape,
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    backend_util.convertConv2DDataFormat(dataFormat),
  );
  if (info.dataFormat !== 'channelsLast') {
    // The wasm backend's forward Conv2D is NHWC-only too, so NCHW never reaches here.
    throw new Error('Conv2DBackpropFilter (wasm): only NHWC (channelsLast) is supported');
  }
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, outChannels } = info;
  const { filterHeight, filterWidth, strideHeight, strideWidth } = info;
  const padTop = info.padInfo.top;
  const padLeft = info.padInfo.left;
  const rows = batchSize * outHeight * outWidth;
  const taps = filterHeight * filterWidth * inChannels;

  const columns = wasm.makeOutput([taps, rows], 'float32');
  // Views are taken after the allocation above: growing the wasm memory detaches older ones.
  const columnValues = wasm.typedArrayFromHeap(columns) as Float32Array;
  const xValues = wasm.typedArrayFromHeap(x) as Float32Array;
  const imageSize = inHeight * inWidth * inChannels;
  const rowStride = inWidth * inChannels;
  let tap = 0;
  for (let kh = 0; kh < filterHeight; kh++) {
    for (let kw = 0; kw < filterWidth; kw++) {
      // Output columns whose input column ow*stride - padLeft + kw lies inside the image;
      // the rest read padding (zero).
      const firstOw = Math.max(0, Math.ceil((padLeft - kw) / strideWidth));
      const endOw = Math.min(outWidth, Math.floor((inWidth - 1 + padLeft - kw) / strideWidth) + 1);
      for (let ci = 0; ci < inChannels; ci++, tap++) {
        let out = tap * rows;
        for (let n = 0; n < batchSize; n++) {
          for (let oh = 0; oh < outHeight; oh++) {
            const ih = oh * strideHeight - padTop + kh;
            if (ih < 0 || ih >= inHeight || firstOw >= endOw) {
              columnValues.fill(0, out, out + outWidth);
              out += outWidth;
              continue;
            }
            columnValues.fill(0, out, out + firstOw);
            let read =
              n * imageSize +
              ih * rowStride +
              (firstOw * strideWidth - padLeft + kw) * inChannels +
              ci;
            const readStep = strideWidth * inChannels;
            for (let ow = firstOw; ow < endOw; ow++, read += readStep) {
              columnValues[out + ow] = xValues[read] as number;
            }
            columnValues.fill(0, out + endOw, out + outWidth);
            out += outWidth;
          }
        }
      }
    }
  }

  const batchMatMul = getKernel('BatchMatMul', 'wasm').kernelFunc;
  // dy is contiguous NHWC, so [rows, outChannels] is the same memory with another shape.
  const dyMatrix: TensorInfo = { dataId: dy.dataId, shape: [rows, outChannels], dtype: 'float32' };
  const matMulInputs: BatchMatMulInputs = { a: columns, b: dyMatrix };
  const matMulAttrs: BatchMatMulAttrs = { transposeA: false, transposeB: false };
  const product = batchMatMul({
    inputs: matMulInputs,
    backend,
    attrs: matMulAttrs as unknown as Record<string, boolean>,
  }) as TensorInfo;
  wasm.disposeData(columns.dataId);
  // [1, taps, outChannels] is already [filterHeight, filterWidth, inChannels, outChannels].
  return { dataId: product.dataId, shape: [...filterShape], dtype: 'float32' };
};

const EXTRA_KERNELS: KernelConfig[] = [
  { kernelName: Conv2DBackpropFilter, backendName: 'wasm', kernelFunc: conv2DBackpropFilterWasm },
];

/** The wasm package's own BatchMatMul, which the wrapper below delegates to. */
let packagedBatchMatMul: KernelConfig | undefined;

/**
 * The wasm BatchMatMul is fast (XNNPACK) only without transposes; with transposeA or
 * transposeB it takes a naive path about 13x slower (measured: [800x1960]x[1960x64] in
 * 7 ms plain, 95 ms with either flag). Backprop through every dense layer asks for
 * exactly those products (x^T.dy and dy.W^T), so transpose the operand explicitly (the
 * wasm Transpose kernel, well under a millisecond for a dense layer) and multiply plainly.
 */
const batchMatMulWithoutTransposes: KernelFunc = ({ inputs, backend, attrs }) => {
  const original = packagedBatchMatMul;
  if (original === undefined) throw new Error('BatchMatMul (wasm): the packaged kernel is missing');
  const { a, b } = inputs as BatchMatMulInputs;
  const { transposeA, transposeB } = attrs as unknown as BatchMatMulAttrs;
  if ((!transposeA && !transposeB) || a === undefined || b === undefined) {
    return original.kernelFunc({ inputs, backend, attrs });
  }
  const wasm = backend as BackendWasm;
  const transpose = getKernel('Transpose', 'wasm').kernelFunc;
  const swapLastTwoAxes = (matrix: TensorInfo): TensorInfo => {
    const rank = matrix.shape.length;
    const perm = [...Array(rank - 2).keys(), rank - 1, rank - 2];
    return transpose({ inputs: { x: matrix }, backend, attrs: { perm } }) as TensorInfo;
  };
  const plainA = transposeA ? swapLastTwoAxes(a) : a;
  const plainB = transposeB ? swapLastTwoAxes(b) : b;
  try {
    return original.kernelFunc({
      inputs: { a: plainA, b: plainB },
      backend,
      attrs: { transposeA: false, transposeB: false },
    });
  } finally {
    if (plainA !== a) wasm.disposeData(plainA.dataId);
    if (plainB !== b) wasm.disposeData(plainB.dataId);
  }
};

/**
 * Registers the extra wasm kernels, and the faster BatchMatMul, once per process. The
 * additions are safe before or after the wasm backend initialises (the engine looks
 * kernels up when it runs them) and never replace a kernel that a newer
 * tfjs-backend-wasm provides itself; the BatchMatMul wrapper needs the package loaded.
 */
export function registerWasmTrainingKernels(): void {
  for (const config of EXTRA_KERNELS) {
    if (getKernel(config.kernelName, config.backendName) === undefined) registerKernel(config);
  }
  const registered = getKernel(BatchMatMul, 'wasm');
  if (registered !== undefined && registered.kernelFunc !== batchMatMulWithoutTransposes) {
    packagedBatchMatMul = registered;
    unregisterKernel(BatchMatMul, 'wasm');
    // The packaged setup binds the C++ function the wrapped kernel calls: keep it.
    const wrapper: KernelConfig = {
      kernelName: BatchMatMul,
      backendName: 'wasm',
      kernelFunc: batchMatMulWithoutTransposes,
    };
    if (registered.setupFunc !== undefined) wrapper.setupFunc = registered.setupFunc;
    if (registered.disposeFunc !== undefined) wrapper.disposeFunc = registered.disposeFunc;
    registerKernel(wrapper);
  }
}
