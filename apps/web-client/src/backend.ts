/// <reference types="vite/client" />
/// <reference lib="dom" />
import * as tf from '@tensorflow/tfjs-core';
import { registerWasmTrainingKernels } from '@tessera/ml';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import '@tensorflow/tfjs-backend-webgl';
import '@tensorflow/tfjs-backend-webgpu';
import { getThreadsCount, setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
// Served from this site (Vite copies them into the build): nothing is fetched from elsewhere.
import wasmPlainUrl from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import wasmSimdUrl from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import wasmThreadedUrl from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';
import type { BackendPreference } from './messages.js';
import type { BrowserBackendName } from './probe.js';

export type { BrowserBackendName } from './probe.js';

export interface BrowserBackend {
  name: BrowserBackendName;
  detail: string;
  /** What 'auto' tried first and why it did not start. */
  fallbacks: string[];
}

const AUTO_ORDER: readonly BrowserBackendName[] = ['webgpu', 'webgl', 'wasm'];

function describe(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n')[0] ?? message;
}

/** A tiny computation with a known answer: a backend can start and still compute garbage. */
async function computesCorrectly(): Promise<boolean> {
  const sum = tf.add(tf.tensor1d([1, 2]), tf.tensor1d([3, 4]));
  const values = await sum.data();
  sum.dispose();
  return values[0] === 4 && values[1] === 6;
}

async function tryBackend(name: BrowserBackendName): Promise<string> {
  if (name === 'webgpu' && !('gpu' in navigator)) throw new Error('this browser has no WebGPU');
  if (name === 'wasm') {
    setWasmPaths({
      'tfjs-backend-wasm.wasm': wasmPlainUrl,
      'tfjs-backend-wasm-simd.wasm': wasmSimdUrl,
      'tfjs-backend-wasm-threaded-simd.wasm': wasmThreadedUrl,
    });
    // The CNNs need gradients the stock WASM backend lacks; @tessera/ml provides them.
    registerWasmTrainingKernels();
  }
  let started: boolean;
  try {
    started = await tf.setBackend(name);
  } catch (error) {
    throw new Error(`failed to start: ${describe(error)}`);
  }
  if (!started) throw new Error('failed to start');
  await tf.ready();
  if (!(await computesCorrectly())) throw new Error('started but computed [1, 2] + [3, 4] wrong');
  switch (name) {
    case 'webgpu':
      return 'WebGPU';
    case 'webgl':
      return `WebGL ${tf.env().getNumber('WEBGL_VERSION')}`;
    case 'wasm': {
      const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
      const threads = getThreadsCount();
      return `WebAssembly, ${simd ? 'SIMD' : 'no SIMD'}, ${threads} thread${threads === 1 ? '' : 's'}`;
    }
  }
}

/**
 * Starts a tfjs backend: the named one alone (failing with its reason), or for 'auto' the first
 * that starts of WebGPU, WebGL, WebAssembly. The page does not use 'auto' here for training: it
 * measures the candidates first (probe.ts) and names the fastest.
 */
export async function initBrowserBackend(preference: BackendPreference): Promise<BrowserBackend> {
  const candidates = preference === 'auto' ? AUTO_ORDER : [preference];
  const fallbacks: string[] = [];
  for (const name of candidates) {
    try {
      const detail = await tryBackend(name);
      return { name, detail, fallbacks };
    } catch (error) {
      fallbacks.push(`${name}: ${describe(error)}`);
    }
  }
  throw new TesseraError(
    ErrorCode.UNAVAILABLE,
    preference === 'auto'
      ? `no TensorFlow.js backend could start: ${fallbacks.join('; ')}`
      : `backend '${preference}' is unavailable here (${fallbacks[0]}); try another ?backend=`,
  );
}
