import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import {
  BatchMatMul,
  type BatchMatMulAttrs,
  type BatchMatMulInputs,
  backend_util,
  Conv2D,
  Conv2DBackpropFilter,
  type Conv2DBackpropFilterAttrs,
  type Conv2DBackpropFilterInputs,
  Conv2DBackpropInput,
  type Conv2DBackpropInputAttrs,
  type Conv2DBackpropInputInputs,
  DepthwiseConv2dNativeBackpropFilter,
  type DepthwiseConv2dNativeBackpropFilterAttrs,
  type DepthwiseConv2dNativeBackpropFilterInputs,
  DepthwiseConv2dNativeBackpropInput,
  type DepthwiseConv2dNativeBackpropInputAttrs,
  type DepthwiseConv2dNativeBackpropInputInputs,
  getKernel,
  type KernelConfig,
  type KernelFunc,
  MaxPoolGrad,
  type MaxPoolGradAttrs,
  type MaxPoolGradInputs,
  registerKernel,
  type TensorInfo,
  Transpose,
  UnsortedSegmentSum,
  type UnsortedSegmentSumAttrs,
  type UnsortedSegmentSumInputs,
  unregisterKernel,
} from '@tensorflow/tfjs-core';
import { type Conv2DShape, conv2DInfo } from './conv-info.js';

/**
 * Kernels that tfjs-backend-wasm 4.22 lacks but that training needs: without them the
 * gradient of every conv kernel, of depthwise convolutions and of tf.gather (embeddings)
 * fails on 'wasm'.
 */
export const WASM_EXTRA_KERNEL_NAMES: readonly string[] = [
  Conv2DBackpropFilter,
  DepthwiseConv2dNativeBackpropFilter,
  DepthwiseConv2dNativeBackpropInput,
  UnsortedSegmentSum,
];

/**
 * Kernels of tfjs-backend-wasm that are replaced by faster ones, which fall back to the
 * packaged kernel for the cases they do not cover (see below).
 */
export const WASM_WRAPPED_KERNEL_NAMES: readonly string[] = [
  BatchMatMul,
  Conv2DBackpropInput,
  MaxPoolGrad,
];

function requireInput(
  inputs: Record<string, TensorInfo | undefined>,
  name: string,
  kernelName: string,
): TensorInfo {
  const input = inputs[name];
  if (input === undefined) throw new Error(`${kernelName} (wasm): missing input '${name}'`);
  return input;
}

/**
 * im2col for dW: columns[p, r] = x at the input position that filter tap p = (kh, kw, ci)
 * reads for output position r = (n, oh, ow), zero in the padding, written in [taps, rows]
 * order so that dW = columns x dy (dy viewed as [rows, outChannels]) is a plain,
 * untransposed matrix product. Shared by the wasm and cpu kernels.
 */
export function fillFilterGradientColumns(
  columnValues: Float32Array,
  xValues: Float32Array,
  info: backend_util.Conv2DInfo,
): void {
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth } = info;
  const { filterHeight, filterWidth, strideHeight, strideWidth } = info;
  const padTop = info.padInfo.top;
  const padLeft = info.padInfo.left;
  const rows = batchSize * outHeight * outWidth;
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
}

/**
 * dW for a 2-D convolution, as im2col + one matrix product, the columns written straight
 * into the wasm heap and multiplied by the backend's own BatchMatMul (XNNPACK). The
 * fallback of the convolution form below, which is faster where it applies.
 */
function conv2DBackpropFilterIm2col(
  x: TensorInfo,
  dy: TensorInfo,
  info: backend_util.Conv2DInfo,
  wasm: BackendWasm,
): TensorInfo {
  const filterShape = [info.filterHeight, info.filterWidth, info.inChannels, info.outChannels];
  const { batchSize, outHeight, outWidth, outChannels } = info;
  const rows = batchSize * outHeight * outWidth;
  const taps = info.filterHeight * info.filterWidth * info.inChannels;
  const columns = wasm.makeOutput([taps, rows], 'float32');
  // Views are taken after the allocation above: growing the wasm memory detaches older ones.
  fillFilterGradientColumns(
    wasm.typedArrayFromHeap(columns) as Float32Array,
    wasm.typedArrayFromHeap(x) as Float32Array,
    info,
  );

  const batchMatMul = getKernel('BatchMatMul', 'wasm').kernelFunc;
  // dy is contiguous NHWC, so [rows, outChannels] is the same memory with another shape.
  const dyMatrix: TensorInfo = { dataId: dy.dataId, shape: [rows, outChannels], dtype: 'float32' };
  const matMulInputs: BatchMatMulInputs = { a: columns, b: dyMatrix };
  const matMulAttrs: BatchMatMulAttrs = { transposeA: false, transposeB: false };
  const product = batchMatMul({
    inputs: matMulInputs,
    backend: wasm,
    attrs: matMulAttrs as unknown as Record<string, boolean>,
  }) as TensorInfo;
  wasm.disposeData(columns.dataId);
  // [1, taps, outChannels] is already [filterHeight, filterWidth, inChannels, outChannels].
  return { dataId: product.dataId, shape: filterShape, dtype: 'float32' };
}

/** Runs the kernel registered for `name` on 'wasm' (ours where we replaced one). */
function runWasmKernel(
  name: string,
  inputs: Record<string, TensorInfo>,
  attrs: Record<string, unknown>,
  backend: BackendWasm,
): TensorInfo {
  const config = getKernel(name, 'wasm');
  if (config === undefined) throw new Error(`${name} (wasm): kernel not registered`);
  return config.kernelFunc({
    inputs,
    backend,
    attrs: attrs as unknown as Record<string, number>,
  }) as TensorInfo;
}

function transposeWasm(x: TensorInfo, perm: number[], backend: BackendWasm): TensorInfo {
  return runWasmKernel(Transpose, { x }, { perm }, backend);
}

type ExplicitPadding = [[number, number], [number, number], [number, number], [number, number]];

/** A stride-1 wasm (XNNPACK) Conv2D with explicit padding, the fast path of the backend. */
function conv2DWasm(
  x: TensorInfo,
  filter: TensorInfo,
  padding: { top: number; bottom: number; left: number; right: number },
  dilations: [number, number],
  backend: BackendWasm,
): TensorInfo {
  const pad: ExplicitPadding = [
    [0, 0],
    [padding.top, padding.bottom],
    [padding.left, padding.right],
    [0, 0],
  ];
  return runWasmKernel(
    Conv2D,
    { x, filter },
    { strides: [1, 1], pad, dataFormat: 'NHWC', dilations },
    backend,
  );
}

/**
 * dW for a 2-D convolution as one forward convolution, the wasm backend's fastest kernel
 * (XNNPACK; measured 15 -> 8 ms for fedavg-cnn's second layer at batch 10, against the
 * im2col form above):
 *   dW[kh, kw, ci, co] = sum over (n, oh, ow) of x[n, oh*s + kh - padTop, ow*s + kw - padLeft, ci] * dy[n, oh, ow, co]
 * is a convolution of x viewed as [ci, h, w, n] (channels = batch) with dy viewed as the
 * filter [oh, ow, n, co], dilated by the stride, whose output [ci, kh, kw, co] is dW up
 * to a transpose. Returns undefined where the padding would have to be negative (input
 * rows that no output reads, e.g. 'valid' with a stride that does not divide evenly):
 * the im2col kernel above handles those.
 */
function conv2DBackpropFilterAsConv(
  x: TensorInfo,
  dy: TensorInfo,
  info: backend_util.Conv2DInfo,
  backend: BackendWasm,
): TensorInfo | undefined {
  const { inHeight, inWidth, outHeight, outWidth, filterHeight, filterWidth } = info;
  const { strideHeight, strideWidth } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  // Output rows of the convolution: inHeight + top + bottom - ((outHeight - 1) * stride + 1) + 1 = filterHeight.
  const bottom = filterHeight + (outHeight - 1) * strideHeight - inHeight - top;
  const right = filterWidth + (outWidth - 1) * strideWidth - inWidth - left;
  if (top < 0 || left < 0 || bottom < 0 || right < 0) return undefined;
  const xByChannel = transposeWasm(x, [3, 1, 2, 0], backend);
  const dyAsFilter = transposeWasm(dy, [1, 2, 0, 3], backend);
  let product: TensorInfo | undefined;
  try {
    product = conv2DWasm(
      xByChannel,
      dyAsFilter,
      { top, bottom, left, right },
      [strideHeight, strideWidth],
      backend,
    );
    return transposeWasm(product, [1, 2, 0, 3], backend);
  } finally {
    backend.disposeData(xByChannel.dataId);
    backend.disposeData(dyAsFilter.dataId);
    if (product !== undefined) backend.disposeData(product.dataId);
  }
}

export const conv2DBackpropFilterWasm: KernelFunc = ({ inputs, backend, attrs }) => {
  const wasm = backend as BackendWasm;
  const x = requireInput(inputs as Conv2DBackpropFilterInputs, 'x', Conv2DBackpropFilter);
  const dy = requireInput(inputs as Conv2DBackpropFilterInputs, 'dy', Conv2DBackpropFilter);
  const convAttrs = attrs as unknown as Conv2DBackpropFilterAttrs;
  if (x.dtype !== 'float32' || dy.dtype !== 'float32') {
    throw new Error(`Conv2DBackpropFilter (wasm): float32 only, got ${x.dtype} and ${dy.dtype}`);
  }
  const info = conv2DInfo(x.shape as Conv2DShape, convAttrs.filterShape, convAttrs);
  if (info.dataFormat !== 'channelsLast') {
    // The wasm backend's forward Conv2D is NHWC-only too, so NCHW never reaches here.
    throw new Error('Conv2DBackpropFilter (wasm): only NHWC (channelsLast) is supported');
  }
  return (
    conv2DBackpropFilterAsConv(x, dy, info, wasm) ?? conv2DBackpropFilterIm2col(x, dy, info, wasm)
  );
};

/**
 * dx for a 2-D convolution as one forward convolution (XNNPACK) instead of the wasm
 * package's own Conv2DBackpropInput, a plain loop measured ~10x slower (70 of 133 ms in a
 * fedavg-cnn step at batch 10). dx is the "full" correlation of dy, dilated by the
 * stride (zeros between its rows and columns), with the filter rotated 180 degrees and
 * its channel axes swapped: dx[n, ih, iw, ci] = sum of dy[n, oh, ow, co] * W[kh, kw, ci, co]
 * over ih = oh*s - padTop + kh. Returns undefined where that would need negative padding
 * (padding wider than the filter), left to the packaged kernel.
 */
function conv2DBackpropInputAsConv(
  dy: TensorInfo,
  filter: TensorInfo,
  info: backend_util.Conv2DInfo,
  backend: BackendWasm,
): TensorInfo | undefined {
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, outChannels } = info;
  const { filterHeight, filterWidth, strideHeight, strideWidth } = info;
  const dilatedHeight = (outHeight - 1) * strideHeight + 1;
  const dilatedWidth = (outWidth - 1) * strideWidth + 1;
  const top = filterHeight - 1 - info.padInfo.top;
  const left = filterWidth - 1 - info.padInfo.left;
  // So that the convolution has inHeight output rows: dilatedHeight + top + bottom - filterHeight + 1.
  const bottom = inHeight + info.padInfo.top - dilatedHeight;
  const right = inWidth + info.padInfo.left - dilatedWidth;
  if (top < 0 || left < 0 || bottom < 0 || right < 0) return undefined;

  const flipped = backend.makeOutput(
    [filterHeight, filterWidth, outChannels, inChannels],
    'float32',
  );
  const dilated =
    strideHeight === 1 && strideWidth === 1
      ? dy
      : backend.makeOutput([batchSize, dilatedHeight, dilatedWidth, outChannels], 'float32');
  try {
    // Views after all allocations: growing the wasm memory detaches older ones.
    const flippedValues = backend.typedArrayFromHeap(flipped) as Float32Array;
    const filterValues = backend.typedArrayFromHeap(filter) as Float32Array;
    const taps = filterHeight * filterWidth;
    for (let tap = 0; tap < taps; tap++) {
      let read = tap * inChannels * outChannels;
      const writeBase = (taps - 1 - tap) * outChannels * inChannels;
      for (let ci = 0; ci < inChannels; ci++) {
        for (let co = 0, write = writeBase + ci; co < outChannels; co++, write += inChannels) {
          flippedValues[write] = filterValues[read++] as number;
        }
      }
    }
    if (dilated !== dy) {
      const dilatedValues = backend.typedArrayFromHeap(dilated) as Float32Array;
      const dyValues = backend.typedArrayFromHeap(dy) as Float32Array;
      dilatedValues.fill(0);
      let read = 0;
      for (let n = 0; n < batchSize; n++) {
        for (let oh = 0; oh < outHeight; oh++) {
          let write = (n * dilatedHeight + oh * strideHeight) * dilatedWidth * outChannels;
          for (let ow = 0; ow < outWidth; ow++, write += strideWidth * outChannels) {
            dilatedValues.set(dyValues.subarray(read, read + outChannels), write);
            read += outChannels;
          }
        }
      }
    }
    return conv2DWasm(dilated, flipped, { top, bottom, left, right }, [1, 1], backend);
  } finally {
    backend.disposeData(flipped.dataId);
    if (dilated !== dy) backend.disposeData(dilated.dataId);
  }
}

/**
 * dx of a max pool: each output's gradient goes to the first maximum of its window in
 * row-major order (as on the cpu backend), accumulated where windows overlap. A plain
 * loop over the wasm heap with the channels innermost (contiguous in NHWC), measured
 * ~4x faster than the packaged kernel on fedavg-cnn's pools.
 */
const maxPoolGradWasm: KernelFunc = (args) => {
  const wasm = args.backend as BackendWasm;
  const inputs = args.inputs as MaxPoolGradInputs;
  const dy = requireInput(inputs, 'dy', MaxPoolGrad);
  const x = requireInput(inputs, 'input', MaxPoolGrad);
  const { filterSize, strides, pad, dimRoundingMode } = args.attrs as unknown as MaxPoolGradAttrs;
  if (x.dtype !== 'float32' || dy.dtype !== 'float32') {
    return packagedKernel(MaxPoolGrad).kernelFunc(args);
  }
  const info = backend_util.computePool2DInfo(
    x.shape as Conv2DShape,
    filterSize,
    strides,
    1,
    pad,
    dimRoundingMode,
  );
  const { batchSize, inHeight, inWidth, inChannels: channels, outHeight, outWidth } = info;
  const { filterHeight, filterWidth, strideHeight, strideWidth } = info;
  const padTop = info.padInfo.top;
  const padLeft = info.padInfo.left;
  const dx = wasm.makeOutput([...x.shape], 'float32');
  const dxValues = wasm.typedArrayFromHeap(dx) as Float32Array;
  const xValues = wasm.typedArrayFromHeap(x) as Float32Array;
  const dyValues = wasm.typedArrayFromHeap(dy) as Float32Array;
  dxValues.fill(0);
  const best = new Float32Array(channels);
  const bestAt = new Int32Array(channels);
  let read = 0;
  for (let n = 0; n < batchSize; n++) {
    for (let oh = 0; oh < outHeight; oh++) {
      const rowStart = Math.max(0, oh * strideHeight - padTop);
      const rowEnd = Math.min(inHeight, oh * strideHeight - padTop + filterHeight);
      for (let ow = 0; ow < outWidth; ow++, read += channels) {
        const colStart = Math.max(0, ow * strideWidth - padLeft);
        const colEnd = Math.min(inWidth, ow * strideWidth - padLeft + filterWidth);
        best.fill(Number.NEGATIVE_INFINITY);
        bestAt.fill(-1);
        for (let ih = rowStart; ih < rowEnd; ih++) {
          for (let iw = colStart; iw < colEnd; iw++) {
            const base = ((n * inHeight + ih) * inWidth + iw) * channels;
            for (let c = 0; c < channels; c++) {
              const value = xValues[base + c] as number;
              if (value > (best[c] as number)) {
                best[c] = value;
                bestAt[c] = base + c;
              }
            }
          }
        }
        for (let c = 0; c < channels; c++) {
          const at = bestAt[c] as number;
          if (at >= 0) dxValues[at] = (dxValues[at] as number) + (dyValues[read + c] as number);
        }
      }
    }
  }
  return dx;
};

/** Depthwise geometry from the attrs shared by both depthwise backprop kernels. */
function depthwiseInfo(
  inShape: Conv2DShape,
  filterShape: Conv2DShape,
  attrs: DepthwiseConv2dNativeBackpropFilterAttrs | DepthwiseConv2dNativeBackpropInputAttrs,
  kernelName: string,
): backend_util.Conv2DInfo {
  const { strides, dilations, pad, dimRoundingMode } = attrs;
  const info = backend_util.computeConv2DInfo(
    inShape,
    filterShape,
    strides,
    dilations,
    pad,
    dimRoundingMode,
    true,
  );
  if (info.dataFormat !== 'channelsLast') {
    throw new Error(`${kernelName} (wasm): only NHWC (channelsLast) is supported`);
  }
  return info;
}

/**
 * Visits every (input position, output position, filter tap) triple of a depthwise
 * convolution, with the flat offsets of the input pixel, the output pixel and the tap
 * (each at channel 0). Both depthwise gradients are this loop with a different body.
 */
function forEachDepthwiseTap(
  info: backend_util.Conv2DInfo,
  body: (xOffset: number, dyOffset: number, filterOffset: number) => void,
): void {
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, outChannels } = info;
  const { filterHeight, filterWidth, strideHeight, strideWidth } = info;
  const { dilationHeight, dilationWidth } = info;
  const padTop = info.padInfo.top;
  const padLeft = info.padInfo.left;
  for (let n = 0; n < batchSize; n++) {
    for (let oh = 0; oh < outHeight; oh++) {
      for (let ow = 0; ow < outWidth; ow++) {
        const dyOffset = ((n * outHeight + oh) * outWidth + ow) * outChannels;
        for (let kh = 0; kh < filterHeight; kh++) {
          const ih = oh * strideHeight + kh * dilationHeight - padTop;
          if (ih < 0 || ih >= inHeight) continue;
          for (let kw = 0; kw < filterWidth; kw++) {
            const iw = ow * strideWidth + kw * dilationWidth - padLeft;
            if (iw < 0 || iw >= inWidth) continue;
            body(
              ((n * inHeight + ih) * inWidth + iw) * inChannels,
              dyOffset,
              (kh * filterWidth + kw) * outChannels,
            );
          }
        }
      }
    }
  }
}

/**
 * dW of a depthwise convolution (filter [kh, kw, inChannels, multiplier]; output channel
 * c * multiplier + m reads input channel c), accumulated in float64 like the cpu kernel.
 */
const depthwiseBackpropFilterWasm: KernelFunc = ({ inputs, backend, attrs }) => {
  const wasm = backend as BackendWasm;
  const kernel = DepthwiseConv2dNativeBackpropFilter;
  const x = requireInput(inputs as DepthwiseConv2dNativeBackpropFilterInputs, 'x', kernel);
  const dy = requireInput(inputs as DepthwiseConv2dNativeBackpropFilterInputs, 'dy', kernel);
  const typedAttrs = attrs as unknown as DepthwiseConv2dNativeBackpropFilterAttrs;
  if (x.dtype !== 'float32' || dy.dtype !== 'float32') {
    throw new Error(`${kernel} (wasm): float32 only, got ${x.dtype} and ${dy.dtype}`);
  }
  const info = depthwiseInfo(x.shape as Conv2DShape, typedAttrs.filterShape, typedAttrs, kernel);
  const { inChannels, outChannels } = info;
  const multiplier = outChannels / inChannels;
  const sums = new Float64Array(info.filterHeight * info.filterWidth * outChannels);
  const xValues = wasm.typedArrayFromHeap(x) as Float32Array;
  const dyValues = wasm.typedArrayFromHeap(dy) as Float32Array;
  forEachDepthwiseTap(info, (xOffset, dyOffset, filterOffset) => {
    for (let c = 0, out = 0; c < inChannels; c++) {
      const xValue = xValues[xOffset + c] as number;
      for (let m = 0; m < multiplier; m++, out++) {
        sums[filterOffset + out] =
          (sums[filterOffset + out] as number) + xValue * (dyValues[dyOffset + out] as number);
      }
    }
  });
  const dW = wasm.makeOutput([...typedAttrs.filterShape], 'float32');
  (wasm.typedArrayFromHeap(dW) as Float32Array).set(sums);
  return dW;
};

/** dx of a depthwise convolution, accumulated in float64 like the cpu kernel. */
const depthwiseBackpropInputWasm: KernelFunc = ({ inputs, backend, attrs }) => {
  const wasm = backend as BackendWasm;
  const kernel = DepthwiseConv2dNativeBackpropInput;
  const dy = requireInput(inputs as DepthwiseConv2dNativeBackpropInputInputs, 'dy', kernel);
  const filter = requireInput(inputs as DepthwiseConv2dNativeBackpropInputInputs, 'filter', kernel);
  const typedAttrs = attrs as unknown as DepthwiseConv2dNativeBackpropInputAttrs;
  if (dy.dtype !== 'float32' || filter.dtype !== 'float32') {
    throw new Error(`${kernel} (wasm): float32 only, got ${dy.dtype} and ${filter.dtype}`);
  }
  const info = depthwiseInfo(
    typedAttrs.inputShape,
    filter.shape as Conv2DShape,
    typedAttrs,
    kernel,
  );
  const { inChannels, outChannels } = info;
  const multiplier = outChannels / inChannels;
  const sums = new Float64Array(typedAttrs.inputShape.reduce((p, d) => p * d, 1));
  const dyValues = wasm.typedArrayFromHeap(dy) as Float32Array;
  const filterValues = wasm.typedArrayFromHeap(filter) as Float32Array;
  forEachDepthwiseTap(info, (xOffset, dyOffset, filterOffset) => {
    for (let c = 0, out = 0; c < inChannels; c++) {
      let sum = sums[xOffset + c] as number;
      for (let m = 0; m < multiplier; m++, out++) {
        sum += (dyValues[dyOffset + out] as number) * (filterValues[filterOffset + out] as number);
      }
      sums[xOffset + c] = sum;
    }
  });
  const dx = wasm.makeOutput([...typedAttrs.inputShape], 'float32');
  (wasm.typedArrayFromHeap(dx) as Float32Array).set(sums);
  return dx;
};

/**
 * out[s] = sum of the rows x[i] with segmentIds[i] = s (rows: x split at the rank of
 * segmentIds); ids outside 0..numSegments-1 are dropped, as on the cpu backend. The
 * gradient of tf.gather, i.e. what training an embedding needs.
 */
const unsortedSegmentSumWasm: KernelFunc = ({ inputs, backend, attrs }) => {
  const wasm = backend as BackendWasm;
  const kernel = UnsortedSegmentSum;
  const x = requireInput(inputs as UnsortedSegmentSumInputs, 'x', kernel);
  const segmentIds = requireInput(inputs as UnsortedSegmentSumInputs, 'segmentIds', kernel);
  const { numSegments } = attrs as unknown as UnsortedSegmentSumAttrs;
  if (x.dtype !== 'float32' && x.dtype !== 'int32') {
    throw new Error(`${kernel} (wasm): float32 or int32 x only, got ${x.dtype}`);
  }
  const idRank = segmentIds.shape.length;
  if (segmentIds.shape.some((dimension, axis) => dimension !== x.shape[axis])) {
    throw new Error(
      `${kernel} (wasm): segmentIds shape [${segmentIds.shape.join(', ')}] must be a prefix of x's [${x.shape.join(', ')}]`,
    );
  }
  const rowShape = x.shape.slice(idRank);
  const rowSize = rowShape.reduce((p, d) => p * d, 1);
  const sums = new Float64Array(numSegments * rowSize);
  const xValues = wasm.typedArrayFromHeap(x);
  const ids = wasm.typedArrayFromHeap(segmentIds);
  for (let row = 0; row < ids.length; row++) {
    const id = ids[row] as number;
    if (!(id >= 0 && id < numSegments)) continue;
    const from = row * rowSize;
    const to = id * rowSize;
    for (let i = 0; i < rowSize; i++)
      sums[to + i] = (sums[to + i] as number) + (xValues[from + i] as number);
  }
  const out = wasm.makeOutput([numSegments, ...rowShape], x.dtype);
  wasm.typedArrayFromHeap(out).set(sums);
  return out;
};

const EXTRA_KERNELS: KernelConfig[] = [
  { kernelName: Conv2DBackpropFilter, backendName: 'wasm', kernelFunc: conv2DBackpropFilterWasm },
  {
    kernelName: DepthwiseConv2dNativeBackpropFilter,
    backendName: 'wasm',
    kernelFunc: depthwiseBackpropFilterWasm,
  },
  {
    kernelName: DepthwiseConv2dNativeBackpropInput,
    backendName: 'wasm',
    kernelFunc: depthwiseBackpropInputWasm,
  },
  { kernelName: UnsortedSegmentSum, backendName: 'wasm', kernelFunc: unsortedSegmentSumWasm },
];

/** The wasm package's own kernels that the replacements below delegate to. */
const packagedKernels = new Map<string, KernelConfig>();

function packagedKernel(name: string): KernelConfig {
  const original = packagedKernels.get(name);
  if (original === undefined) throw new Error(`${name} (wasm): the packaged kernel is missing`);
  return original;
}

/**
 * dx of a convolution through conv2DBackpropInputAsConv, or the packaged kernel where
 * that does not apply (NCHW, padding wider than the filter).
 */
const conv2DBackpropInputWasm: KernelFunc = (args) => {
  const wasm = args.backend as BackendWasm;
  const inputs = args.inputs as Conv2DBackpropInputInputs;
  const dy = requireInput(inputs, 'dy', Conv2DBackpropInput);
  const filter = requireInput(inputs, 'filter', Conv2DBackpropInput);
  const attrs = args.attrs as unknown as Conv2DBackpropInputAttrs;
  const info = conv2DInfo(attrs.inputShape, filter.shape as Conv2DShape, attrs);
  const fast =
    info.dataFormat === 'channelsLast' && dy.dtype === 'float32' && filter.dtype === 'float32'
      ? conv2DBackpropInputAsConv(dy, filter, info, wasm)
      : undefined;
  return fast ?? packagedKernel(Conv2DBackpropInput).kernelFunc(args);
};

/**
 * Right operands the packaged BatchMatMul has packed already: XNNPACK keeps the packed
 * copy (per tensor) and reuses it, so a second product with the same right operand
 * (e.g. evaluation, batch after batch with the same weights) is fastest plainly.
 */
const packedRightOperands = new WeakSet<object>();

/**
 * The wasm BatchMatMul is fast (XNNPACK) only without transposes; with transposeA or
 * transposeB it takes a naive path about 13x slower (measured: [800x1960]x[1960x64] in
 * 7 ms plain, 95 ms with either flag). Backprop through every dense layer asks for
 * exactly those products (x^T.dy and dy.W^T), so multiply plainly after explicit
 * transposes. XNNPACK also packs its right operand on first use (~5 ms for the
 * 3136x512 weights of fedavg-cnn, more than the product at batch 10), and in training
 * every weight matrix is new at every step; so a product with a small left operand and
 * a large right one that has not been packed yet is computed with the roles swapped,
 * (b^T.a^T)^T or, for dy.W^T, (W.dy^T)^T: the big matrix on the left, streamed, not
 * packed (measured at batch 10: x.W 6.9 -> 3.0 ms; dy.W^T 9.5 -> 2.9 ms).
 */
const batchMatMulWithoutTransposes: KernelFunc = ({ inputs, backend, attrs }) => {
  const original = packagedKernel(BatchMatMul);
  const { a, b } = inputs as BatchMatMulInputs;
  const { transposeA, transposeB } = attrs as unknown as BatchMatMulAttrs;
  if (a === undefined || b === undefined) return original.kernelFunc({ inputs, backend, attrs });
  const wasm = backend as BackendWasm;
  const swapLastTwoAxes = (matrix: TensorInfo): TensorInfo => {
    const rank = matrix.shape.length;
    const perm = [...Array(rank - 2).keys(), rank - 1, rank - 2];
    return transposeWasm(matrix, perm, wasm);
  };
  const plain = (left: TensorInfo, right: TensorInfo): TensorInfo =>
    original.kernelFunc({
      inputs: { a: left, b: right },
      backend,
      attrs: { transposeA: false, transposeB: false },
    }) as TensorInfo;
  const temporaries: TensorInfo[] = [];
  const temporary = (tensor: TensorInfo): TensorInfo => {
    temporaries.push(tensor);
    return tensor;
  };
  try {
    if (!transposeA) {
      // a: [..., m, k]; b: [..., k, n], or [..., n, k] when transposeB.
      const [m, k] = a.shape.slice(-2) as [number, number];
      const n = b.shape[b.shape.length - (transposeB ? 2 : 1)] as number;
      const swapPays = m * k + m * n < n * k;
      if (swapPays && transposeB) {
        return swapLastTwoAxes(temporary(plain(b, temporary(swapLastTwoAxes(a)))));
      }
      if (swapPays && !packedRightOperands.has(b.dataId)) {
        packedRightOperands.add(b.dataId);
        const bT = temporary(swapLastTwoAxes(b));
        return swapLastTwoAxes(temporary(plain(bT, temporary(swapLastTwoAxes(a)))));
      }
    }
    if (!transposeA && !transposeB) {
      packedRightOperands.add(b.dataId);
      return plain(a, b);
    }
    const plainA = transposeA ? temporary(swapLastTwoAxes(a)) : a;
    const plainB = transposeB ? temporary(swapLastTwoAxes(b)) : b;
    return plain(plainA, plainB);
  } finally {
    for (const tensor of temporaries) wasm.disposeData(tensor.dataId);
  }
};

const REPLACEMENTS: ReadonlyMap<string, KernelFunc> = new Map([
  [BatchMatMul, batchMatMulWithoutTransposes],
  [Conv2DBackpropInput, conv2DBackpropInputWasm],
  [MaxPoolGrad, maxPoolGradWasm],
]);

/**
 * Registers the extra wasm kernels, and the faster replacements, once per process. The
 * additions are safe before or after the wasm backend initialises (the engine looks
 * kernels up when it runs them) and never replace a kernel that a newer
 * tfjs-backend-wasm provides itself; the replacements need the package loaded.
 */
export function registerWasmTrainingKernels(): void {
  for (const config of EXTRA_KERNELS) {
    if (getKernel(config.kernelName, config.backendName) === undefined) registerKernel(config);
  }
  for (const [kernelName, replacement] of REPLACEMENTS) {
    const registered = getKernel(kernelName, 'wasm');
    if (registered === undefined || registered.kernelFunc === replacement) continue;
    packagedKernels.set(kernelName, registered);
    unregisterKernel(kernelName, 'wasm');
    // The packaged setup binds the C++ function the packaged kernel calls: keep it.
    const wrapper: KernelConfig = { kernelName, backendName: 'wasm', kernelFunc: replacement };
    if (registered.setupFunc !== undefined) wrapper.setupFunc = registered.setupFunc;
    if (registered.disposeFunc !== undefined) wrapper.disposeFunc = registered.disposeFunc;
    registerKernel(wrapper);
  }
}
