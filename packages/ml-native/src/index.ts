import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Convolution sizes, in this order (NHWC input, HWIO filter):
 * batch, inHeight, inWidth, inChannels, filterHeight, filterWidth, outChannels,
 * outHeight, outWidth, strideHeight, strideWidth, dilationHeight, dilationWidth,
 * padTop, padLeft.
 */
export type ConvSizes = Int32Array;

/**
 * The compiled addon. Every function works in place on Float32Arrays (typically views of
 * the tfjs WebAssembly memory), checks their lengths against the sizes and throws on a
 * mismatch; none keeps a reference after returning. It also holds the layer kernels of
 * @tessera/ml's native training loop (src/training.cc: convLayerCreate, denseForward, ...),
 * typed there as NativeTrainingAddon, next to their only caller.
 */
export interface NativeKernels {
  /** y = conv2d(x, filter). */
  conv2d(x: Float32Array, filter: Float32Array, y: Float32Array, sizes: ConvSizes): void;
  /** dx = gradient of conv2d with respect to x, given dy. */
  conv2dBackpropInput(
    dy: Float32Array,
    filter: Float32Array,
    dx: Float32Array,
    sizes: ConvSizes,
  ): void;
  /** dW = gradient of conv2d with respect to the filter, given dy. */
  conv2dBackpropFilter(x: Float32Array, dy: Float32Array, dw: Float32Array, sizes: ConvSizes): void;
  /**
   * c[i] = op(a[i]) x op(b[i]) over a batch; sizes = [batchA, batchB, m, n, k, transposeA,
   * transposeB] (a batch of 1 is broadcast).
   */
  matMul(a: Float32Array, b: Float32Array, c: Float32Array, sizes: Int32Array): void;
  /**
   * dx of a max pool (gradient to the first maximum of each window); sizes = [batch,
   * inHeight, inWidth, channels, filterHeight, filterWidth, outHeight, outWidth,
   * strideHeight, strideWidth, padTop, padLeft].
   */
  maxPoolGrad(x: Float32Array, dy: Float32Array, dx: Float32Array, sizes: Int32Array): void;
  /** out[c] = sum over r of x[r, c]; sizes = [rows, cols]. */
  columnSum(x: Float32Array, out: Float32Array, sizes: Int32Array): void;
  /** Threads OpenBLAS and oneDNN may use for one product or convolution (process-wide). */
  setThreads(threads: number): void;
  getThreads(): number;
  /** OpenBLAS's description of its build (version, kernel, threading). */
  blasConfig(): string;
  /** The CPU kernels OpenBLAS chose, e.g. 'Haswell' or 'SkylakeX'. */
  blasCore(): string;
}

export type NativeKernelsResult =
  | { ok: true; kernels: NativeKernels }
  | { ok: false; reason: string };

const packageRoot = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const addonPath = path.join(packageRoot, 'build', 'Release', 'tessera_native.node');
const unavailablePath = path.join(packageRoot, 'build', 'UNAVAILABLE.txt');

let loaded: NativeKernelsResult | undefined;

/** Loads the addon once; says why not where it was not built or does not load. */
export function loadNativeKernels(): NativeKernelsResult {
  if (loaded !== undefined) return loaded;
  if (!existsSync(addonPath)) {
    const reason = existsSync(unavailablePath)
      ? readFileSync(unavailablePath, 'utf8').trim()
      : 'not built (run npm run build)';
    loaded = { ok: false, reason: `@tessera/ml-native: ${reason}` };
    return loaded;
  }
  try {
    const kernels = createRequire(import.meta.url)(addonPath) as NativeKernels;
    loaded = { ok: true, kernels };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    loaded = { ok: false, reason: `@tessera/ml-native failed to load: ${message.split('\n')[0]}` };
  }
  return loaded;
}
