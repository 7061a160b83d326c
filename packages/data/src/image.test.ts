import { describe, expect, it } from 'vitest';
import { convertChannels, imageFeatures, resizeBilinear } from './image.js';

const gray = (width: number, height: number, values: number[]) => ({
  width,
  height,
  channels: 1 as const,
  data: values,
});

describe('resizeBilinear (half-pixel centres)', () => {
  it('is a copy at the same size', () => {
    const image = gray(3, 2, [1, 2, 3, 4, 5, 6]);
    expect(Array.from(resizeBilinear(image, 3, 2).data)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('upsamples 2x1 to 4x1 as hand-computed: sources at -0.25, 0.25, 0.75, 1.25 (edges clamped)', () => {
    // x = 0: -0.25 clamps to 0 -> 10; x = 1: 0.25 -> 10 + 0.25 * 30 = 17.5; x = 2: 0.75 -> 32.5; x = 3: 40.
    expect(Array.from(resizeBilinear(gray(2, 1, [10, 40]), 4, 1).data)).toEqual([
      10, 17.5, 32.5, 40,
    ]);
  });

  it('downsamples 4x4 to 2x2 by the centres of 2x2 blocks, per channel', () => {
    const values = Array.from({ length: 16 }, (_, i) => i);
    // Output (0, 0) reads source (0.5, 0.5): the mean of 0, 1, 4, 5.
    expect(Array.from(resizeBilinear(gray(4, 4, values), 2, 2).data)).toEqual([
      2.5, 4.5, 10.5, 12.5,
    ]);
    const rgb = { width: 2, height: 1, channels: 3 as const, data: [0, 100, 200, 10, 110, 210] };
    expect(Array.from(resizeBilinear(rgb, 1, 1).data)).toEqual([5, 105, 205]);
  });

  it('refuses a size of 0 and data of the wrong length', () => {
    expect(() => resizeBilinear(gray(2, 1, [1, 2]), 0, 1)).toThrow(/at least 1x1, got 0x1/);
    expect(() => resizeBilinear(gray(2, 2, [1, 2, 3]), 1, 1)).toThrow(/needs 4 values, got 3/);
  });
});

describe('convertChannels', () => {
  it('makes gray from RGB(A) by BT.601 luma, RGB from gray by repeating, and drops alpha', () => {
    const rgba = { width: 2, height: 1, channels: 4 as const, data: [255, 0, 0, 7, 0, 0, 255, 9] };
    const luma = Array.from(convertChannels(rgba, 1).data);
    expect(luma[0]).toBeCloseTo(0.299 * 255, 4);
    expect(luma[1]).toBeCloseTo(0.114 * 255, 4);
    expect(Array.from(convertChannels(rgba, 3).data)).toEqual([255, 0, 0, 0, 0, 255]);
    expect(Array.from(convertChannels(gray(1, 1, [42]), 3).data)).toEqual([42, 42, 42]);
  });
});

describe('imageFeatures', () => {
  it("converts, resizes and scales by the task's valueRange to [0, 1]", () => {
    const schema = {
      kind: 'image' as const,
      height: 1,
      width: 4,
      channels: 1 as const,
      valueRange: { min: 0, max: 255 },
    };
    const rgb = { width: 2, height: 1, channels: 3 as const, data: [0, 0, 0, 255, 255, 255] };
    const features = Array.from(imageFeatures(rgb, schema));
    // Gray 0 and 255 (luma of white is 255 up to float rounding), then 0, 0.25, 0.75, 1.
    for (const [i, expected] of [0, 0.25, 0.75, 1].entries()) {
      expect(features[i]).toBeCloseTo(expected, 5);
    }
  });
});
