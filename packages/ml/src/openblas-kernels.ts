import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import {
  _FusedMatMul,
  type _FusedMatMulAttrs,
  type _FusedMatMulInputs,
  BatchMatMul,
  type BatchMatMulAttrs,
  type BatchMatMulInputs,
  backend_util,
  Conv2D,
  type Conv2DAttrs,
  Conv2DBackpropFilter,
  type Conv2DBackpropFilterAttrs,
  type Conv2DBackpropFilterInputs,
  Conv2DBackpropInput,
  type Conv2DBackpropInputAttrs,
  type Conv2DBackpropInputInputs,
  type Conv2DInputs,
  getKernel,
  type KernelConfig,
  type KernelFunc,
  MaxPoolGrad,
  type MaxPoolGradAttrs,
  type MaxPoolGradInputs,
  registerKernel,
  Sum,
  type SumAttrs,
  type SumInputs,
  type TensorInfo,
  unregisterKernel,
  util,
} from '@tensorflow/tfjs-core';
import { type Conv2DShape, conv2DInfo } from './conv-info.js';
import type { NativeTrainingAddon } from './native-training.js';

/**
 * The part of @tessera/ml-native's addon these kernels and the native training loop call
 * (declared here so that this module, which browsers bundle too, does not import the
 * Node-only package).
 */
export interface OpenblasAddon extends NativeTrainingAddon {
  conv2d(x: Float32Array, filter: Float32Array, y: Float32Array, sizes: Int32Array): void;
  conv2dBackpropInput(
    dy: Float32Array,
    filter: Float32Array,
    dx: Float32Array,
    sizes: Int32Array,
  ): void;
  conv2dBackpropFilter(
    x: Float32Array,
    dy: Float32Array,
    dw: Float32Array,
    sizes: Int32Array,
  ): void;
  matMul(a: Float32Array, b: Float32Array, c: Float32Array, sizes: Int32Array): void;
  maxPoolGrad(x: Float32Array, dy: Float32Array, dx: Float32Array, sizes: Int32Array): void;
  columnSum(x: Float32Array, out: Float32Array, sizes: Int32Array): void;
}

/** The wasm kernels that run on OpenBLAS while the 'openblas' backend is selected. */
export const OPENBLAS_KERNEL_NAMES: readonly string[] = [
  Conv2D,
  Conv2DBackpropInput,
  Conv2DBackpropFilter,
  BatchMatMul,
  _FusedMatMul,
  MaxPoolGrad,
  Sum,
];

function convSizes(info: backend_util.Conv2DInfo): Int32Array {
  return Int32Array.of(
    info.batchSize,
    info.inHeight,
    info.inWidth,
    info.inChannels,
    info.filterHeight,
    info.filterWidth,
    info.outChannels,
    info.outHeight,
    info.outWidth,
    info.strideHeight,
    info.strideWidth,
    info.dilationHeight,
    info.dilationWidth,
    info.padInfo.top,
    info.padInfo.left,
  );
}

/** NHWC float32 is what the addon computes; the rest goes to the wasm kernel. */
function supported(info: backend_util.Conv2DInfo, ...tensors: TensorInfo[]): boolean {
  return info.dataFormat === 'channelsLast' && tensors.every((t) => t.dtype === 'float32');
}

const heap = (backend: BackendWasm, tensor: TensorInfo): Float32Array =>
  backend.typedArrayFromHeap(tensor) as Float32Array;

/** Kernels registered before ours, restored by uninstallOpenblasKernels. */
const previous = new Map<string, KernelConfig>();
/** The addon whose kernels are installed, for the native training loop. */
let installedAddon: OpenblasAddon | undefined;

function fallback(name: string): KernelFunc {
  const config = previous.get(name);
  if (config === undefined) throw new Error(`${name} (openblas): no wasm kernel to fall back to`);
  return config.kernelFunc;
}

function kernels(addon: OpenblasAddon): ReadonlyMap<string, KernelFunc> {
  const conv2D: KernelFunc = (args) => {
    const backend = args.backend as BackendWasm;
    const { x, filter } = args.inputs as Conv2DInputs;
    const attrs = args.attrs as unknown as Conv2DAttrs;
    if (x === undefined || filter === undefined) return fallback(Conv2D)(args);
    const info = conv2DInfo(
      x.shape as Conv2DShape,
      filter.shape as Conv2DShape,
      attrs,
      attrs.dilations,
    );
    if (!supported(info, x, filter)) return fallback(Conv2D)(args);
    const y = backend.makeOutput(info.outShape, 'float32');
    // Views only after the allocation: growing the wasm memory detaches older ones.
    addon.conv2d(heap(backend, x), heap(backend, filter), heap(backend, y), convSizes(info));
    return y;
  };

  const conv2DBackpropInput: KernelFunc = (args) => {
    const backend = args.backend as BackendWasm;
    const { dy, filter } = args.inputs as Conv2DBackpropInputInputs;
    const attrs = args.attrs as unknown as Conv2DBackpropInputAttrs;
    if (dy === undefined || filter === undefined) return fallback(Conv2DBackpropInput)(args);
    const info = conv2DInfo(attrs.inputShape, filter.shape as Conv2DShape, attrs);
    if (!supported(info, dy, filter)) return fallback(Conv2DBackpropInput)(args);
    const dx = backend.makeOutput(info.inShape, 'float32');
    addon.conv2dBackpropInput(
      heap(backend, dy),
      heap(backend, filter),
      heap(backend, dx),
      convSizes(info),
    );
    return dx;
  };

  const conv2DBackpropFilter: KernelFunc = (args) => {
    const backend = args.backend as BackendWasm;
    const { x, dy } = args.inputs as Conv2DBackpropFilterInputs;
    const attrs = args.attrs as unknown as Conv2DBackpropFilterAttrs;
    if (x === undefined || dy === undefined) return fallback(Conv2DBackpropFilter)(args);
    const info = conv2DInfo(x.shape as Conv2DShape, attrs.filterShape, attrs);
    if (!supported(info, x, dy)) return fallback(Conv2DBackpropFilter)(args);
    const dw = backend.makeOutput(info.filterShape, 'float32');
    addon.conv2dBackpropFilter(
      heap(backend, x),
      heap(backend, dy),
      heap(backend, dw),
      convSizes(info),
    );
    return dw;
  };

  /**
   * a: [...batch, m, k] (or [..., k, m] with transposeA), b likewise; the batch axes of
   * one side are all 1 or equal to the other's (what the addon broadcasts), otherwise
   * the wasm kernel runs. Returns undefined for those.
   */
  const product = (
    backend: BackendWasm,
    a: TensorInfo,
    b: TensorInfo,
    transposeA: boolean,
    transposeB: boolean,
  ): TensorInfo | undefined => {
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return undefined;
    if (a.shape.length < 2 || b.shape.length < 2) return undefined;
    const outerA = a.shape.slice(0, -2);
    const outerB = b.shape.slice(0, -2);
    const batchA = util.sizeFromShape(outerA);
    const batchB = util.sizeFromShape(outerB);
    const sameOuter = outerA.length === outerB.length && outerA.every((d, i) => d === outerB[i]);
    if (!sameOuter && batchA !== 1 && batchB !== 1) return undefined;
    const [a0, a1] = a.shape.slice(-2) as [number, number];
    const [b0, b1] = b.shape.slice(-2) as [number, number];
    const [m, k] = transposeA ? [a1, a0] : [a0, a1];
    const [kB, n] = transposeB ? [b1, b0] : [b0, b1];
    if (k !== kB) return undefined;
    const outer = batchA >= batchB ? outerA : outerB;
    const c = backend.makeOutput([...outer, m, n], 'float32');
    addon.matMul(
      heap(backend, a),
      heap(backend, b),
      heap(backend, c),
      Int32Array.of(batchA, batchB, m, n, k, transposeA ? 1 : 0, transposeB ? 1 : 0),
    );
    return c;
  };

  const batchMatMul: KernelFunc = (args) => {
    const { a, b } = args.inputs as BatchMatMulInputs;
    const { transposeA, transposeB } = args.attrs as unknown as BatchMatMulAttrs;
    const result =
      a === undefined || b === undefined
        ? undefined
        : product(args.backend as BackendWasm, a, b, transposeA, transposeB);
    return result ?? fallback(BatchMatMul)(args);
  };

  /**
   * Dense layers: the product on OpenBLAS, then the bias (one value per output column)
   * and a linear or relu activation in place. Other activations, PReLU weights and
   * other bias shapes go to the wasm kernel.
   */
  const fusedMatMul: KernelFunc = (args) => {
    const backend = args.backend as BackendWasm;
    const { a, b, bias, preluActivationWeights } = args.inputs as _FusedMatMulInputs;
    const { transposeA, transposeB, activation } = args.attrs as unknown as _FusedMatMulAttrs;
    const n = b?.shape[b.shape.length - (transposeB ? 2 : 1)];
    const biasFits =
      bias === undefined ||
      (bias.dtype === 'float32' && util.sizeFromShape(bias.shape) === n && bias.shape.at(-1) === n);
    if (
      a === undefined ||
      b === undefined ||
      n === undefined ||
      preluActivationWeights !== undefined ||
      (activation !== 'linear' && activation !== 'relu') ||
      !biasFits
    ) {
      return fallback(_FusedMatMul)(args);
    }
    const c = product(backend, a, b, transposeA, transposeB);
    if (c === undefined) return fallback(_FusedMatMul)(args);
    const values = heap(backend, c);
    const biasValues = bias === undefined ? undefined : heap(backend, bias);
    const relu = activation === 'relu';
    for (let start = 0; start < values.length; start += n) {
      for (let j = 0; j < n; j++) {
        let v =
          (values[start + j] as number) +
          (biasValues === undefined ? 0 : (biasValues[j] as number));
        if (relu && v < 0) v = 0;
        values[start + j] = v;
      }
    }
    return c;
  };

  /** Not a product, but native too: the JavaScript loop it replaces took 2.3 ms a step. */
  const maxPoolGrad: KernelFunc = (args) => {
    const backend = args.backend as BackendWasm;
    const { dy, input: x } = args.inputs as MaxPoolGradInputs;
    const { filterSize, strides, pad, dimRoundingMode } = args.attrs as unknown as MaxPoolGradAttrs;
    if (x === undefined || dy === undefined || x.dtype !== 'float32' || dy.dtype !== 'float32') {
      return fallback(MaxPoolGrad)(args);
    }
    const info = backend_util.computePool2DInfo(
      x.shape as Conv2DShape,
      filterSize,
      strides,
      1,
      pad,
      dimRoundingMode,
    );
    const dx = backend.makeOutput([...x.shape], 'float32');
    addon.maxPoolGrad(
      heap(backend, x),
      heap(backend, dy),
      heap(backend, dx),
      Int32Array.of(
        info.batchSize,
        info.inHeight,
        info.inWidth,
        info.inChannels,
        info.filterHeight,
        info.filterWidth,
        info.outHeight,
        info.outWidth,
        info.strideHeight,
        info.strideWidth,
        info.padInfo.top,
        info.padInfo.left,
      ),
    );
    return dx;
  };

  /**
   * A sum over the leading axes (bias gradients: NHWC over N, H, W), which the wasm kernel
   * computes by transposing the whole tensor first. Other axes go to the wasm kernel.
   */
  const sum: KernelFunc = (args) => {
    const backend = args.backend as BackendWasm;
    const { x } = args.inputs as SumInputs;
    const { axis, keepDims } = args.attrs as unknown as SumAttrs;
    if (x === undefined || x.dtype !== 'float32' || x.shape.length < 2) return fallback(Sum)(args);
    const axes = util.parseAxisParam(axis, x.shape).sort((p, q) => p - q);
    const leading = axes.length < x.shape.length && axes.every((a, i) => a === i);
    if (!leading) return fallback(Sum)(args);
    const kept = x.shape.slice(axes.length);
    const rows = util.sizeFromShape(x.shape.slice(0, axes.length));
    const cols = util.sizeFromShape(kept);
    const outShape = keepDims ? [...axes.map(() => 1), ...kept] : kept;
    const out = backend.makeOutput(outShape, 'float32');
    addon.columnSum(heap(backend, x), heap(backend, out), Int32Array.of(rows, cols));
    return out;
  };

  return new Map([
    [Sum, sum],
    [MaxPoolGrad, maxPoolGrad],
    [Conv2D, conv2D],
    [Conv2DBackpropInput, conv2DBackpropInput],
    [Conv2DBackpropFilter, conv2DBackpropFilter],
    [BatchMatMul, batchMatMul],
    [_FusedMatMul, fusedMatMul],
  ]);
}

/**
 * Replaces the wasm backend's convolution and matrix-product kernels by ones that run on
 * OpenBLAS in place in the wasm memory; everything else stays WebAssembly. Needs the
 * wasm backend's kernels registered (tfjs-backend-wasm imported). Idempotent.
 */
export function installOpenblasKernels(addon: OpenblasAddon): void {
  if (installedAddon !== undefined) return;
  installedAddon = addon;
  for (const [kernelName, kernelFunc] of kernels(addon)) {
    const registered = getKernel(kernelName, 'wasm');
    if (registered === undefined) continue;
    previous.set(kernelName, registered);
    unregisterKernel(kernelName, 'wasm');
    // The fallback is the previous kernel, whose setup binds the C++ function it calls.
    const config: KernelConfig = { kernelName, backendName: 'wasm', kernelFunc };
    if (registered.setupFunc !== undefined) config.setupFunc = registered.setupFunc;
    if (registered.disposeFunc !== undefined) config.disposeFunc = registered.disposeFunc;
    registerKernel(config);
  }
}

/** Puts the wasm kernels back (the 'wasm' backend proper). Idempotent. */
export function uninstallOpenblasKernels(): void {
  for (const [kernelName, config] of previous) {
    unregisterKernel(kernelName, 'wasm');
    registerKernel(config);
  }
  previous.clear();
  installedAddon = undefined;
}

export function openblasKernelsInstalled(): boolean {
  return installedAddon !== undefined;
}

/** The addon behind the installed kernels (the 'openblas' backend is selected), if any. */
export function installedOpenblasAddon(): OpenblasAddon | undefined {
  return installedAddon;
}
