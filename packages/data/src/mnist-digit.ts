// A drawing prepared the way MNIST's digits were made (LeCun et al.): the ink's bounding box
// scaled to fit 20x20 with its aspect ratio kept (anti-aliased), then placed in a 28x28 frame
// so that its centre of mass sits at the frame's centre. Pure: the page reads the canvas.

export const MNIST_SIDE = 28;
/** The box MNIST's digits were scaled into, inside the 28x28 frame. */
export const DIGIT_BOX = 20;
/** Below this a pixel is background: canvas anti-aliasing leaves faint values around strokes. */
const INK_THRESHOLD = 0.1;

/** A grayscale picture, row by row, ink bright (1) on a dark (0) background. */
export interface Grayscale {
  width: number;
  height: number;
  pixels: Float32Array;
}

/** The bounding box of the ink, or null when there is none. */
export function inkBounds(
  image: Grayscale,
): { x: number; y: number; width: number; height: number } | null {
  const { width, height, pixels } = image;
  let minX = width;
  let minY = height;
  let maxX = -1;
  let maxY = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if ((pixels[y * width + x] ?? 0) > INK_THRESHOLD) {
        if (x < minX) minX = x;
        if (x > maxX) maxX = x;
        if (y < minY) minY = y;
        if (y > maxY) maxY = y;
      }
    }
  }
  if (maxX < 0) return null;
  return { x: minX, y: minY, width: maxX - minX + 1, height: maxY - minY + 1 };
}

/** Area-average resampling of a region to outWidth x outHeight (no aliasing when shrinking). */
function resampleRegion(
  image: Grayscale,
  region: { x: number; y: number; width: number; height: number },
  outWidth: number,
  outHeight: number,
): Float32Array {
  const out = new Float32Array(outWidth * outHeight);
  const stepX = region.width / outWidth;
  const stepY = region.height / outHeight;
  for (let oy = 0; oy < outHeight; oy++) {
    const y0 = region.y + oy * stepY;
    for (let ox = 0; ox < outWidth; ox++) {
      const x0 = region.x + ox * stepX;
      let sum = 0;
      let weight = 0;
      for (let y = Math.floor(y0); y < Math.ceil(y0 + stepY); y++) {
        const wy = Math.min(y + 1, y0 + stepY) - Math.max(y, y0);
        for (let x = Math.floor(x0); x < Math.ceil(x0 + stepX); x++) {
          const wx = Math.min(x + 1, x0 + stepX) - Math.max(x, x0);
          sum += (image.pixels[y * image.width + x] ?? 0) * wx * wy;
          weight += wx * wy;
        }
      }
      out[oy * outWidth + ox] = weight > 0 ? Math.min(1, Math.max(0, sum / weight)) : 0;
    }
  }
  return out;
}

/** Centre of mass, in pixel units from the top-left corner (a pixel's centre is at +0.5). */
export function centreOfMass(pixels: Float32Array, width: number): { x: number; y: number } | null {
  let total = 0;
  let sumX = 0;
  let sumY = 0;
  pixels.forEach((value, index) => {
    total += value;
    sumX += value * ((index % width) + 0.5);
    sumY += value * (Math.floor(index / width) + 0.5);
  });
  return total > 0 ? { x: sumX / total, y: sumY / total } : null;
}

/**
 * The 784 values the model reads (row by row, in [0, 1]), or null for a blank drawing: there is
 * nothing to classify, and a model asked anyway answers with confidence about nothing.
 */
export function drawingToMnist(image: Grayscale): Float32Array | null {
  const bounds = inkBounds(image);
  if (!bounds) return null;
  const scale = DIGIT_BOX / Math.max(bounds.width, bounds.height);
  const digitWidth = Math.max(1, Math.round(bounds.width * scale));
  const digitHeight = Math.max(1, Math.round(bounds.height * scale));
  const digit = resampleRegion(image, bounds, digitWidth, digitHeight);
  const mass = centreOfMass(digit, digitWidth) ?? { x: digitWidth / 2, y: digitHeight / 2 };
  const left = Math.round(MNIST_SIDE / 2 - mass.x);
  const top = Math.round(MNIST_SIDE / 2 - mass.y);
  const out = new Float32Array(MNIST_SIDE * MNIST_SIDE);
  for (let y = 0; y < digitHeight; y++) {
    const ty = top + y;
    if (ty < 0 || ty >= MNIST_SIDE) continue;
    for (let x = 0; x < digitWidth; x++) {
      const tx = left + x;
      if (tx < 0 || tx >= MNIST_SIDE) continue;
      out[ty * MNIST_SIDE + tx] = digit[y * digitWidth + x] ?? 0;
    }
  }
  return out;
}

/** Canvas RGBA (white ink on black) to grayscale: luma, transparent pixels count as background. */
export function rgbaToGrayscale(rgba: Uint8ClampedArray, width: number, height: number): Grayscale {
  const pixels = new Float32Array(width * height);
  for (let k = 0; k < pixels.length; k++) {
    const luma =
      0.299 * (rgba[4 * k] ?? 0) + 0.587 * (rgba[4 * k + 1] ?? 0) + 0.114 * (rgba[4 * k + 2] ?? 0);
    pixels[k] = (luma / 255) * ((rgba[4 * k + 3] ?? 255) / 255);
  }
  return { width, height, pixels };
}
