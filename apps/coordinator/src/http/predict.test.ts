import { ErrorCode } from '@tessera/protocol';
import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { imageToMnist } from './predict.js';

/** A width x height PNG, `background` everywhere except a bar of `ink` in the given box. */
function png(
  width: number,
  height: number,
  box: { x: number; y: number; w: number; h: number } | null,
  colours = { ink: 255, background: 0 },
): Uint8Array {
  const image = new PNG({ width, height });
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const lit =
        box !== null && x >= box.x && x < box.x + box.w && y >= box.y && y < box.y + box.h;
      const value = lit ? colours.ink : colours.background;
      const at = 4 * (y * width + x);
      image.data[at] = image.data[at + 1] = image.data[at + 2] = value;
      image.data[at + 3] = 255;
    }
  }
  return new Uint8Array(PNG.sync.write(image));
}

const massCentre = (pixels: Float32Array) => {
  let total = 0;
  let sx = 0;
  let sy = 0;
  pixels.forEach((v, k) => {
    total += v;
    sx += v * ((k % 28) + 0.5);
    sy += v * (Math.floor(k / 28) + 0.5);
  });
  return { x: sx / total, y: sy / total };
};

describe('imageToMnist', () => {
  it('puts a stroke drawn in a corner into the 20x20 box, centred by mass', () => {
    const pixels = imageToMnist(png(280, 280, { x: 0, y: 0, w: 40, h: 120 }), 'png');
    const centre = massCentre(pixels);
    expect(Math.abs(centre.x - 14)).toBeLessThan(1);
    expect(Math.abs(centre.y - 14)).toBeLessThan(1);
    // 120 px tall scaled to 20 rows.
    const rows = new Set<number>();
    pixels.forEach((v, k) => {
      if (v > 0.5) rows.add(Math.floor(k / 28));
    });
    expect(rows.size).toBe(20);
  });

  it('inverts ink on paper (a light border) to white on black', () => {
    const dark = imageToMnist(
      png(100, 100, { x: 40, y: 20, w: 20, h: 60 }, { ink: 0, background: 255 }),
      'png',
    );
    const light = imageToMnist(png(100, 100, { x: 40, y: 20, w: 20, h: 60 }), 'png');
    expect(Array.from(dark)).toEqual(Array.from(light));
  });

  it('refuses a picture with no ink', () => {
    expect(() => imageToMnist(png(28, 28, null), 'png')).toThrow(
      expect.objectContaining({
        code: ErrorCode.INVALID_ARGUMENT,
        message: expect.stringMatching(/no digit/),
      }),
    );
  });
});
