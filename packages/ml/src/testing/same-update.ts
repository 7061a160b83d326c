import type * as tfl from '@tensorflow/tfjs-layers';
import { expect } from 'vitest';

/** The spacing of float32 values around x: what rounding a weight to float32 can move it by. */
function float32Spacing(x: number): number {
  const magnitude = Math.abs(x);
  return magnitude === 0 ? 2 ** -149 : 2 ** (Math.floor(Math.log2(magnitude)) - 23);
}

/**
 * Expects `actual` weights to have moved from `start` as `expected` did: in each weight
 * tensor of `model` (flat, in model.weights order), every update within 1e-4 of that
 * tensor's largest update (updates, not weights: a weight that barely moved would hide an
 * error in a relative comparison, and a bias's updates are far smaller than a kernel's),
 * plus two float32 spacings of the weight itself: where a tensor's updates are tiny next to
 * its weights (an attention's query and key kernels at initialisation: 1e-5 of the weight),
 * the two loops rounding a weight to neighbouring float32 values is already 1e-3 of the
 * update, and no loop can be closer than that.
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
      const rounding =
        2 * float32Spacing(Math.max(Math.abs(expected[i] ?? 0), Math.abs(actual[i] ?? 0)));
      worst = Math.max(worst, Math.abs(got - want) - rounding);
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
