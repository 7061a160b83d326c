import * as tf from '@tensorflow/tfjs-core';
import { loadNativeKernels } from '@tessera/ml-native';
import { ErrorCode } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import { type BackendPreference, currentBackend, initBackend } from './backend.js';

// The tfjs-node bindings cannot be installed on these machines, so they are absent here;
// @tessera/ml-native (the 'openblas' backend) is there where OpenBLAS is (always in CI).
const openblas = loadNativeKernels();
describe('initBackend', () => {
  it.each([
    ['tensorflow', '@tensorflow/tfjs-node'],
    ['tensorflow-gpu', '@tensorflow/tfjs-node-gpu'],
  ] as const)('throws UNAVAILABLE for %s, saying why', async (preference, packageName) => {
    await expect(initBackend(preference)).rejects.toMatchObject({
      code: ErrorCode.UNAVAILABLE,
      message: expect.stringContaining(
        `Backend '${preference}' is unavailable: ${packageName} is not installed`,
      ),
    });
  });

  it("'auto' falls back to openblas (else wasm) and reports what it skipped", async () => {
    const info = await initBackend('auto');
    expect(info.name).toBe(openblas.ok ? 'openblas' : 'wasm');
    expect(info.tfBackend).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(info.detail).toMatch(openblas.ok ? /WebAssembly .* on OpenBLAS/ : /WebAssembly/);
    expect(info.fallbacks).toHaveLength(openblas.ok ? 2 : 3);
    expect(info.fallbacks[0]).toMatch(
      /^tensorflow-gpu: @tensorflow\/tfjs-node-gpu is not installed/,
    );
    expect(info.fallbacks[1]).toMatch(/^tensorflow: @tensorflow\/tfjs-node is not installed/);
    if (!openblas.ok) expect(info.fallbacks[2]).toBe(`openblas: ${openblas.reason}`);
    expect(currentBackend()).toBe(info);
  });

  it('is idempotent, and switches when asked for another backend', async () => {
    const auto = await initBackend('auto');
    expect(await initBackend('auto')).toBe(auto);
    expect(await initBackend(auto.name)).toBe(auto);
    const cpu = await initBackend('cpu');
    expect(cpu).toMatchObject({ name: 'cpu', tfBackend: 'cpu', fallbacks: [] });
    expect(tf.getBackend()).toBe('cpu');
    expect(await initBackend('cpu')).toBe(cpu);
    const wasm = await initBackend('wasm');
    expect(wasm.name).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
  });

  it('serialises concurrent calls', async () => {
    const results = await Promise.all([
      initBackend('cpu'),
      initBackend('wasm'),
      initBackend('cpu'),
    ]);
    expect(results.map((r) => r.name)).toEqual(['cpu', 'wasm', 'cpu']);
    expect(tf.getBackend()).toBe('cpu');
  });

  it('rejects an unknown preference', async () => {
    await expect(initBackend('webgpu' as BackendPreference)).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
      message: expect.stringMatching(
        /unknown backend 'webgpu'; valid: auto, tensorflow-gpu, tensorflow, openblas, wasm, cpu/,
      ),
    });
  });
});
