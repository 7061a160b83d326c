import { ErrorCode, TesseraError } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import {
  controlCorrection,
  MemoryControlVariates,
  scaffoldControlStep,
} from './control-variates.js';

describe("SCAFFOLD's client side", () => {
  it('option II by hand: c_i+ = c_i - c + (x - y) / (K eta), delta = c_i+ - c_i', () => {
    const clientControl = Float32Array.of(0.5, -1);
    const serverControl = Float32Array.of(0.25, 0.5);
    const global = Float32Array.of(1, 2);
    const trained = Float32Array.of(0.5, 3);
    // K eta = 4 x 0.125 = 0.5: (x - y) / 0.5 = [1, -2].
    const { next, delta } = scaffoldControlStep(
      clientControl,
      serverControl,
      global,
      trained,
      4,
      0.125,
    );
    expect([...next]).toEqual([0.5 - 0.25 + 1, -1 - 0.5 - 2]);
    expect([...delta]).toEqual([-0.25 + 1, -0.5 - 2]);
    expect([...controlCorrection(serverControl, clientControl)]).toEqual([-0.25, 1.5]);
  });

  it('refuses vectors of other lengths, K < 1 or eta <= 0', () => {
    const v = Float32Array.of(1, 2);
    for (const [a, k, eta] of [
      [Float32Array.of(1), 1, 0.1],
      [v, 0, 0.1],
      [v, 1, 0],
    ] as const) {
      const call = () => scaffoldControlStep(a, v, v, v, k, eta);
      expect(call).toThrow(TesseraError);
      expect(call).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
    }
  });

  it('the in-memory store keeps a copy per run, and nothing of another model size', async () => {
    const store = new MemoryControlVariates();
    const values = Float32Array.of(1, 2, 3);
    await store.save('r1', values);
    values[0] = 9;
    expect([...((await store.load('r1', 3)) ?? [])]).toEqual([1, 2, 3]);
    expect(await store.load('r1', 4)).toBeNull();
    expect(await store.load('r2', 3)).toBeNull();
  });
});
