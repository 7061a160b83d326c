import type * as tfl from '@tensorflow/tfjs-layers';
import { expect } from 'vitest';

/**
 * Expects `actual` weights to have moved from `start` as `expected` did: in each weight
 * tensor of `model` (flat, in model.weights order), every update within 1e-4 of that
 * tensor's largest update (updates, not weights: a weight that barely moved would hide an
 * error in a relative comparison, and a bias's updates are far smaller than a kernel's).
 */
export function expectSameUpdate(
  model: tfl.LayersModel,
  start: Float32Array,
  actual: Float32Array,
  expected: Float32Array,
  /**
   * Tensors whose gradient is 0 in exact arithmetic (an attention's key bias: a row's
   * softmax ignores a constant added to all its scores): both loops' updates are rounding
   * noise around 0 there, so each must be below 1e-7 instead of matching the other's.
   */
  exactlyZero?: RegExp,
): void {
  let offset = 0;
  for (const variable of model.weights) {
    const size = variable.shape.reduce<number>((a, b) => a * (b ?? 0), 1);
    let largest = 0;
    let worst = 0;
    for (let i = offset; i < offset + size; i++) {
      const want = (expected[i] ?? 0) - (start[i] ?? 0);
      const got = (actual[i] ?? 0) - (start[i] ?? 0);
      largest = Math.max(largest, Math.abs(want));
      worst = Math.max(worst, Math.abs(got - want));
    }
    offset += size;
    if (exactlyZero?.test(variable.name) === true) {
      expect(largest, variable.name).toBeLessThan(1e-7);
      expect(worst, variable.name).toBeLessThan(2e-7);
      continue;
    }
    // A bias can stay put (a ReLU that never fired): then it must not move either.
    expect(worst, variable.name).toBeLessThanOrEqual(1e-4 * largest + 1e-9);
  }
  expect(offset).toBe(start.length);
}
