import * as tf from '@tensorflow/tfjs-core';
import { ErrorCode } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import { type BackendPreference, currentBackend, initBackend } from './backend.js';

// The native bindings cannot be installed on these machines, so they are absent here.
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

  it("'auto' falls back to wasm and reports what it skipped", async () => {
    const info = await initBackend('auto');
    expect(info.name).toBe('wasm');
    expect(info.tfBackend).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(info.detail).toMatch(/WebAssembly/);
    expect(info.fallbacks).toHaveLength(2);
    expect(info.fallbacks[0]).toMatch(
      /^tensorflow-gpu: @tensorflow\/tfjs-node-gpu is not installed/,
    );
    expect(info.fallbacks[1]).toMatch(/^tensorflow: @tensorflow\/tfjs-node is not installed/);
    expect(currentBackend()).toBe(info);
  });

  it('is idempotent, and switches when asked for another backend', async () => {
    const auto = await initBackend('auto');
    expect(await initBackend('auto')).toBe(auto);
    expect(await initBackend('wasm')).toBe(auto);
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
        /unknown backend 'webgpu'; valid: auto, tensorflow-gpu, tensorflow, wasm, cpu/,
      ),
    });
  });
});
