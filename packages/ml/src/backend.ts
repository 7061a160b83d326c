import { ErrorCode, TesseraError } from '@tessera/protocol';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { registerCpuTrainingKernels } from './cpu-kernels.js';
import {
  installOpenblasKernels,
  type OpenblasAddon,
  uninstallOpenblasKernels,
} from './openblas-kernels.js';
import { registerWasmTrainingKernels } from './wasm-kernels.js';

// The cpu backend is registered by the import above and used before any initBackend too.
registerCpuTrainingKernels();

export type BackendName = 'tensorflow-gpu' | 'tensorflow' | 'openblas' | 'wasm' | 'cpu';
export type BackendPreference = 'auto' | BackendName;

export const BACKEND_PREFERENCES: readonly BackendPreference[] = [
  'auto',
  'tensorflow-gpu',
  'tensorflow',
  'openblas',
  'wasm',
  'cpu',
];

export interface BackendInfo {
  name: BackendName;
  /** The tfjs backend now active (tf.getBackend()). */
  tfBackend: string;
  /** Human-readable: what runs, and how (e.g. 'WebAssembly, SIMD, 1 thread'). */
  detail: string;
  /** What 'auto' tried before this one and why each failed, e.g. "tensorflow: ...". */
  fallbacks: string[];
}

export interface InitBackendOptions {
  /**
   * Where the tfjs-backend-wasm .wasm files are (a directory path or URL prefix ending in
   * '/'). Default in Node: the installed package's dist/; in a browser, tfjs's default.
   */
  wasmPath?: string;
  /**
   * Threads OpenBLAS may use for one product on the 'openblas' backend (process-wide).
   * Default: OpenBLAS's own (OPENBLAS_NUM_THREADS, else every core). Give 1 where several
   * training processes share the cores.
   */
  threads?: number;
}

/**
 * The native bindings are optional and never dependencies: their install downloads
 * libtensorflow, which not every machine can. Held in a variable so that TypeScript
 * and bundlers do not try to resolve them.
 */
const NATIVE_PACKAGES = {
  'tensorflow-gpu': '@tensorflow/tfjs-node-gpu',
  tensorflow: '@tensorflow/tfjs-node',
} as const;

/**
 * The Node-only addon behind 'openblas' (a workspace package built where OpenBLAS and a
 * C++ compiler are present). In a variable, like the packages above, so that bundlers
 * leave it alone.
 */
const OPENBLAS_PACKAGE = '@tessera/ml-native';

interface OpenblasAddonWithThreads extends OpenblasAddon {
  setThreads(threads: number): void;
  getThreads(): number;
  blasCore(): string;
}

type Attempt = { ok: true; info: Omit<BackendInfo, 'fallbacks'> } | { ok: false; reason: string };

const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';

function describeError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n')[0] ?? message;
}

async function tryNative(name: 'tensorflow-gpu' | 'tensorflow'): Promise<Attempt> {
  const specifier: string = NATIVE_PACKAGES[name];
  try {
    await import(specifier);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const notInstalled = code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND';
    return {
      ok: false,
      reason: notInstalled
        ? `${specifier} is not installed (optional; install it where libtensorflow can be downloaded${name === 'tensorflow-gpu' ? ' and CUDA is present' : ''})`
        : `${specifier} failed to load: ${describeError(error)}`,
    };
  }
  // Both packages register a backend called 'tensorflow'; it lands in *this* copy of
  // tfjs-core only when npm resolved the same version for both.
  if (tf.findBackendFactory('tensorflow') === null) {
    return {
      ok: false,
      reason: `${specifier} loaded but registered no 'tensorflow' backend with this @tensorflow/tfjs-core ${tf.version_core}; install versions that match`,
    };
  }
  if (!(await setBackendSafely('tensorflow'))) {
    return { ok: false, reason: `${specifier} loaded but its backend failed to initialise` };
  }
  return {
    ok: true,
    info: { name, tfBackend: 'tensorflow', detail: `libtensorflow via ${specifier}` },
  };
}

/** tf.setBackend returns false on most failures but throws on some; make it one shape. */
async function setBackendSafely(backendName: string): Promise<boolean> {
  try {
    return await tf.setBackend(backendName);
  } catch {
    return false;
  }
}

async function defaultWasmPath(): Promise<string | undefined> {
  if (!isNode) return undefined;
  const { createRequire } = await import('node:module');
  const path = await import('node:path');
  const packageJson = createRequire(import.meta.url).resolve(
    '@tensorflow/tfjs-backend-wasm/package.json',
  );
  return `${path.join(path.dirname(packageJson), 'dist')}${path.sep}`;
}

/** A tiny computation with a known answer: setBackend can succeed with a broken module. */
function backendComputesCorrectly(): boolean {
  const sum = tf.tidy(() => tf.add(tf.tensor1d([1, 2]), tf.tensor1d([3, 4])).dataSync());
  return sum[0] === 4 && sum[1] === 6;
}

let wasmStarted = false;

async function tryWasm(options: InitBackendOptions): Promise<Attempt> {
  let wasmModule: typeof import('@tensorflow/tfjs-backend-wasm');
  try {
    // Loaded on demand: importing it registers 'wasm' as a higher-priority backend that
    // needs async start-up, which would break synchronous use of tfjs on 'cpu' before
    // initBackend is called.
    wasmModule = await import('@tensorflow/tfjs-backend-wasm');
  } catch (error) {
    return {
      ok: false,
      reason: `@tensorflow/tfjs-backend-wasm failed to load: ${describeError(error)}`,
    };
  }
  // In this order: the wasm replacements must wrap the packaged kernels, never ours.
  uninstallOpenblasKernels();
  registerWasmTrainingKernels();
  try {
    const wasmPath = options.wasmPath ?? (await defaultWasmPath());
    // The path is read once, when the module starts; later calls would only warn.
    if (wasmPath !== undefined && !wasmStarted) wasmModule.setWasmPaths(wasmPath);
  } catch (error) {
    return { ok: false, reason: `cannot locate the .wasm files: ${describeError(error)}` };
  }
  if (!(await setBackendSafely('wasm'))) {
    return { ok: false, reason: 'the WebAssembly module failed to initialise' };
  }
  wasmStarted = true;
  if (!backendComputesCorrectly()) {
    return {
      ok: false,
      reason: 'the WebAssembly backend started but computed [1, 2] + [3, 4] wrong',
    };
  }
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  const threads = wasmModule.getThreadsCount();
  return {
    ok: true,
    info: {
      name: 'wasm',
      tfBackend: 'wasm',
      detail: `WebAssembly (XNNPACK), ${simd ? 'SIMD' : 'no SIMD'}, ${threads} thread${threads === 1 ? '' : 's'}`,
    },
  };
}

/** [[1, 2]] x [[3], [4]] = [[11]] through the installed BatchMatMul. */
function matMulComputesCorrectly(): boolean {
  const product = tf.tidy(() =>
    tf.matMul(tf.tensor2d([1, 2], [1, 2]), tf.tensor2d([3, 4], [2, 1])).dataSync(),
  );
  return product[0] === 11;
}

async function tryOpenblas(options: InitBackendOptions): Promise<Attempt> {
  if (!isNode) return { ok: false, reason: 'OpenBLAS kernels exist only in Node' };
  let addon: OpenblasAddonWithThreads;
  try {
    const specifier: string = OPENBLAS_PACKAGE;
    const native = (await import(specifier)) as {
      loadNativeKernels():
        | { ok: true; kernels: OpenblasAddonWithThreads }
        | { ok: false; reason: string };
    };
    const loaded = native.loadNativeKernels();
    if (!loaded.ok) return { ok: false, reason: loaded.reason };
    addon = loaded.kernels;
  } catch (error) {
    return { ok: false, reason: `${OPENBLAS_PACKAGE} failed to load: ${describeError(error)}` };
  }
  const wasm = await tryWasm(options);
  if (!wasm.ok) return wasm;
  // Also when no count is given: OpenBLAS's pool and oneDNN's (OpenMP) then agree.
  addon.setThreads(options.threads ?? addon.getThreads());
  installOpenblasKernels(addon);
  if (!matMulComputesCorrectly()) {
    uninstallOpenblasKernels();
    return { ok: false, reason: 'the OpenBLAS kernels computed [1, 2] x [3, 4] wrong' };
  }
  const threads = addon.getThreads();
  return {
    ok: true,
    info: {
      name: 'openblas',
      tfBackend: 'wasm',
      detail: `WebAssembly (XNNPACK) with convolutions and matrix products on OpenBLAS (${addon.blasCore()} kernels), ${threads} thread${threads === 1 ? '' : 's'}; native training loop with convolutions on ${addon.convEngine()} and dense products on ${addon.denseEngine()}`,
    },
  };
}

async function tryCpu(): Promise<Attempt> {
  if (!(await setBackendSafely('cpu'))) {
    return { ok: false, reason: 'the plain JavaScript backend failed to initialise' };
  }
  return { ok: true, info: { name: 'cpu', tfBackend: 'cpu', detail: 'plain JavaScript (slow)' } };
}

function attempt(name: BackendName, options: InitBackendOptions): Promise<Attempt> {
  switch (name) {
    case 'tensorflow-gpu':
    case 'tensorflow':
      return tryNative(name);
    case 'openblas':
      return tryOpenblas(options);
    case 'wasm':
      return tryWasm(options);
    case 'cpu':
      return tryCpu();
  }
}

const AUTO_ORDER: readonly BackendName[] = [
  'tensorflow-gpu',
  'tensorflow',
  'openblas',
  'wasm',
  'cpu',
];

let current:
  | { preference: BackendPreference; threads: number | undefined; info: BackendInfo }
  | undefined;
let inFlight: Promise<unknown> = Promise.resolve();

async function select(
  preference: BackendPreference,
  options: InitBackendOptions,
): Promise<BackendInfo> {
  if (
    current !== undefined &&
    (current.preference === preference || current.info.name === preference) &&
    (options.threads === undefined || options.threads === current.threads) &&
    tf.getBackend() === current.info.tfBackend
  ) {
    return current.info;
  }
  const candidates = preference === 'auto' ? AUTO_ORDER : [preference];
  const fallbacks: string[] = [];
  for (const name of candidates) {
    const result = await attempt(name, options);
    if (result.ok) {
      const info: BackendInfo = { ...result.info, fallbacks };
      current = { preference, threads: options.threads, info };
      return info;
    }
    fallbacks.push(`${name}: ${result.reason}`);
  }
  if (preference === 'auto') {
    throw new TesseraError(
      ErrorCode.UNAVAILABLE,
      `No TensorFlow.js backend could start: ${fallbacks.join('; ')}`,
      { fallbacks },
    );
  }
  const others = BACKEND_PREFERENCES.filter((p) => p !== preference).join(', ');
  throw new TesseraError(
    ErrorCode.UNAVAILABLE,
    `Backend '${preference}' is unavailable: ${fallbacks[0]?.replace(`${preference}: `, '')}. Choose another (${others})`,
    { preference, reason: fallbacks[0] },
  );
}

/**
 * Selects the tfjs backend for training. 'auto' tries, in order, tfjs-node-gpu,
 * tfjs-node (both optional, loaded lazily), WebAssembly with the OpenBLAS kernels of
 * @tessera/ml-native (Node, where built), WebAssembly and plain JavaScript, and
 * reports what it skipped and why in `fallbacks`. An explicit preference that cannot
 * start throws UNAVAILABLE with the reason. Calling it again with the same preference
 * returns the same answer without retrying; calls are serialised.
 */
export function initBackend(
  preference: BackendPreference = 'auto',
  options: InitBackendOptions = {},
): Promise<BackendInfo> {
  if (!BACKEND_PREFERENCES.includes(preference)) {
    return Promise.reject(
      new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `initBackend: unknown backend '${String(preference)}'; valid: ${BACKEND_PREFERENCES.join(', ')}`,
      ),
    );
  }
  const { threads } = options;
  if (threads !== undefined && !(Number.isSafeInteger(threads) && threads >= 1)) {
    return Promise.reject(
      new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `initBackend: threads must be a positive integer, got ${String(threads)}`,
      ),
    );
  }
  const result = inFlight.then(() => select(preference, options));
  inFlight = result.catch(() => undefined);
  return result;
}

/** The backend chosen by the last successful initBackend, if any. */
export function currentBackend(): BackendInfo | undefined {
  return current?.info;
}
