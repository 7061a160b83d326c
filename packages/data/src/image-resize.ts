import { ErrorCode, TesseraError } from '@tessera/protocol';

/** The shape an image task's model takes: rows, columns, and 1 (gray) or 3 (RGB) channels. */
export interface ImageShape {
  height: number;
  width: number;
  channels: 1 | 3;
}

/** A decoded picture: 4 bytes a pixel (red, green, blue, alpha), row by row. */
export interface RgbaImage {
  width: number;
  height: number;
  data: Uint8Array | Uint8ClampedArray;
}

// ITU-R BT.601 luma, the weights image libraries (and tfjs' grayscale conversions) use.
const LUMA = [0.299, 0.587, 0.114] as const;

/**
 * A picture of any size as an image task's model takes it: area-average resampled to the
 * task's height x width (each output pixel the mean of the source area it covers, so a
 * shrunk photo does not alias; an enlarged one is blocky, never invented), channels converted
 * (3 -> 1 by BT.601 luma; 1 channel of a gray source is that gray), values in [0, 1] row by
 * row, channels last: what `(pixel - min) / (max - min)` of the task's valueRange gives.
 * Transparent pixels count as black (colour times alpha), as the MNIST drawing pad does.
 * The aspect ratio is not kept: the task's shape is what the model was trained on.
 */
export function rgbaToTaskPixels(image: RgbaImage, shape: ImageShape): Float32Array {
  const { width, height, data } = image;
  if (
    !Number.isInteger(width) ||
    !Number.isInteger(height) ||
    width < 1 ||
    height < 1 ||
    data.length !== width * height * 4
  ) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `rgbaToTaskPixels: ${width}x${height} needs ${width * height * 4} RGBA bytes, got ${data.length}`,
      { field: '(body)' },
    );
  }
  const out = new Float32Array(shape.height * shape.width * shape.channels);
  const stepX = width / shape.width;
  const stepY = height / shape.height;
  // Colour times overlap area, summed over the source pixels an output pixel covers.
  let red = 0;
  let green = 0;
  let blue = 0;
  for (let row = 0; row < shape.height; row++) {
    const top = row * stepY;
    const bottom = top + stepY;
    for (let column = 0; column < shape.width; column++) {
      const left = column * stepX;
      const right = left + stepX;
      red = green = blue = 0;
      let area = 0;
      for (let y = Math.floor(top); y < Math.min(height, Math.ceil(bottom)); y++) {
        const overlapY = Math.min(bottom, y + 1) - Math.max(top, y);
        if (overlapY <= 0) continue;
        for (let x = Math.floor(left); x < Math.min(width, Math.ceil(right)); x++) {
          const overlapX = Math.min(right, x + 1) - Math.max(left, x);
          if (overlapX <= 0) continue;
          const weight = overlapX * overlapY;
          const at = 4 * (y * width + x);
          const scale = (weight * (data[at + 3] ?? 0)) / (255 * 255);
          red += scale * (data[at] ?? 0);
          green += scale * (data[at + 1] ?? 0);
          blue += scale * (data[at + 2] ?? 0);
          area += weight;
        }
      }
      const at = (row * shape.width + column) * shape.channels;
      if (shape.channels === 3) {
        out[at] = red / area;
        out[at + 1] = green / area;
        out[at + 2] = blue / area;
      } else {
        out[at] = (LUMA[0] * red + LUMA[1] * green + LUMA[2] * blue) / area;
      }
    }
  }
  return out;
}
