import { describe, expect, it } from 'vitest';
import {
  centreOfMass,
  drawingToMnist,
  type Grayscale,
  inkBounds,
  MNIST_SIDE,
  rgbaToGrayscale,
} from './mnist-digit.js';

const SIZE = 280;

/** A black canvas with white rectangles drawn on it. */
function canvas(
  ...rects: Array<{ x: number; y: number; width: number; height: number }>
): Grayscale {
  const pixels = new Float32Array(SIZE * SIZE);
  for (const r of rects) {
    for (let y = r.y; y < r.y + r.height; y++) {
      for (let x = r.x; x < r.x + r.width; x++) pixels[y * SIZE + x] = 1;
    }
  }
  return { width: SIZE, height: SIZE, pixels };
}

function framed(image: Float32Array) {
  const grey = { width: MNIST_SIDE, height: MNIST_SIDE, pixels: image };
  return { bounds: inkBounds(grey), mass: centreOfMass(image, MNIST_SIDE) };
}

/** Shifted by whole pixels, the centre of mass is within half a pixel of the frame's centre. */
function expectCentred(mass: { x: number; y: number } | null): void {
  expect(Math.abs((mass?.x ?? 0) - 14)).toBeLessThanOrEqual(0.5);
  expect(Math.abs((mass?.y ?? 0) - 14)).toBeLessThanOrEqual(0.5);
}

describe('a drawing prepared as MNIST digits were made', () => {
  it('a blank canvas gives nothing to classify', () => {
    expect(drawingToMnist(canvas())).toBeNull();
    // Faint anti-aliasing specks are not ink either.
    const specks = canvas();
    specks.pixels[500] = 0.05;
    expect(drawingToMnist(specks)).toBeNull();
  });

  it('a stroke in a corner lands centred by its mass in the 28x28 frame, scaled to 20 pixels', () => {
    // A vertical bar in the top-left corner, touching the canvas edges.
    const image = drawingToMnist(canvas({ x: 0, y: 0, width: 40, height: 120 }));
    if (!image) throw new Error('expected an image');
    expect(image).toHaveLength(784);
    const { bounds, mass } = framed(image);
    expect(bounds?.height).toBe(20);
    expectCentred(mass);
    expect(Math.max(...image)).toBe(1);
    expect(Math.min(...image)).toBe(0);
  });

  it('keeps the aspect ratio: a tall bar stays tall, a wide one wide', () => {
    const tall = framed(
      drawingToMnist(canvas({ x: 200, y: 30, width: 30, height: 150 })) as Float32Array,
    );
    expect(tall.bounds).toMatchObject({ width: 4, height: 20 });
    const wide = framed(
      drawingToMnist(canvas({ x: 10, y: 250, width: 200, height: 20 })) as Float32Array,
    );
    expect(wide.bounds).toMatchObject({ width: 20, height: 2 });
    // A square fills the 20x20 box exactly, at 4..23 (its mass is at the frame's centre).
    const square = framed(
      drawingToMnist(canvas({ x: 100, y: 100, width: 60, height: 60 })) as Float32Array,
    );
    expect(square.bounds).toEqual({ x: 4, y: 4, width: 20, height: 20 });
  });

  it('centres by mass, not by the box: a heavy part pulls the digit off the box centre', () => {
    // An L: a long thin stem and a thick foot; the mass sits low and left of the box centre.
    const image = drawingToMnist(
      canvas({ x: 0, y: 0, width: 20, height: 200 }, { x: 0, y: 140, width: 200, height: 60 }),
    ) as Float32Array;
    const { bounds, mass } = framed(image);
    expectCentred(mass);
    // The box is 20x20 but not at 4..23: it is shifted so that the mass is centred.
    expect(bounds?.width).toBe(20);
    expect(bounds?.y).toBeLessThan(4);
  });

  it('reads a white-on-black canvas as ink, transparent pixels as background', () => {
    const rgba = new Uint8ClampedArray([255, 255, 255, 255, 0, 0, 0, 255, 255, 255, 255, 0]);
    expect(Array.from(rgbaToGrayscale(rgba, 3, 1).pixels)).toEqual([1, 0, 0]);
  });
});
