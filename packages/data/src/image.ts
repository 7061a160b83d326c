import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { ImageSchema } from './task-schema.js';

/**
 * Images for image tasks: a decoded picture of any size and channel count made into the
 * task's example (height x width x channels, channels last as tfjs takes them, scaled by the
 * task's valueRange). Pure and browser-safe: decoders (pngjs, jpeg-js, a canvas) live with the
 * hosts.
 */

/** Pixels as decoded: row-major, channels interleaved (1 gray, 3 RGB, 4 RGBA). */
export interface DecodedImage {
  width: number;
  height: number;
  channels: 1 | 3 | 4;
  data: ArrayLike<number>;
}

function invalid(message: string): TesseraError {
  return new TesseraError(ErrorCode.INVALID_ARGUMENT, message);
}

function checkImage(image: DecodedImage, where: string): void {
  const { width, height, channels, data } = image;
  if (!Number.isInteger(width) || width < 1 || !Number.isInteger(height) || height < 1) {
    throw invalid(`${where}: an image is at least 1x1, got ${width}x${height}`);
  }
  if (data.length !== width * height * channels) {
    throw invalid(
      `${where}: ${width}x${height}x${channels} needs ${width * height * channels} values, got ${data.length}`,
    );
  }
}

/**
 * `image` with `channels` channels. RGB(A) to gray is the luma of ITU-R BT.601 (0.299 R +
 * 0.587 G + 0.114 B, what the web client's digits use); gray to RGB repeats the value; alpha is
 * dropped (the colour as stored, as most loaders read it; a transparent background keeps its
 * colour rather than turning black).
 */
export function convertChannels(image: DecodedImage, channels: 1 | 3): DecodedImage {
  checkImage(image, 'convertChannels');
  const pixels = image.width * image.height;
  const out = new Float32Array(pixels * channels);
  const from = image.channels;
  const { data } = image;
  for (let p = 0; p < pixels; p++) {
    const base = p * from;
    if (from === 1) {
      const value = data[base] as number;
      for (let c = 0; c < channels; c++) out[p * channels + c] = value;
    } else if (channels === 1) {
      out[p] =
        0.299 * (data[base] as number) +
        0.587 * (data[base + 1] as number) +
        0.114 * (data[base + 2] as number);
    } else {
      out[p * 3] = data[base] as number;
      out[p * 3 + 1] = data[base + 1] as number;
      out[p * 3 + 2] = data[base + 2] as number;
    }
  }
  return { width: image.width, height: image.height, channels, data: out };
}

/**
 * Bilinear resampling to width x height with half-pixel centres: output pixel (x, y) reads the
 * source at ((x + 0.5) * sw / w - 0.5, (y + 0.5) * sh / h - 0.5), clamped to the edge pixels,
 * as tf.image.resizeBilinear with halfPixelCenters and Pillow (without its antialias filter) do.
 * Each corner is the same pixel in both images when the sizes are equal (a copy).
 */
export function resizeBilinear(image: DecodedImage, width: number, height: number): DecodedImage {
  checkImage(image, 'resizeBilinear');
  if (!Number.isInteger(width) || width < 1 || !Number.isInteger(height) || height < 1) {
    throw invalid(`resizeBilinear: the target size must be at least 1x1, got ${width}x${height}`);
  }
  const { channels, data } = image;
  const sourceWidth = image.width;
  const sourceHeight = image.height;
  const out = new Float32Array(width * height * channels);
  const sample = (target: number, targetSize: number, sourceSize: number) => {
    const position = Math.min(
      Math.max(((target + 0.5) * sourceSize) / targetSize - 0.5, 0),
      sourceSize - 1,
    );
    const low = Math.floor(position);
    return { low, high: Math.min(low + 1, sourceSize - 1), fraction: position - low };
  };
  const columns = Array.from({ length: width }, (_, x) => sample(x, width, sourceWidth));
  for (let y = 0; y < height; y++) {
    const row = sample(y, height, sourceHeight);
    for (let x = 0; x < width; x++) {
      const column = columns[x] as ReturnType<typeof sample>;
      for (let c = 0; c < channels; c++) {
        const at = (sy: number, sx: number) =>
          data[(sy * sourceWidth + sx) * channels + c] as number;
        const top =
          at(row.low, column.low) * (1 - column.fraction) +
          at(row.low, column.high) * column.fraction;
        const bottom =
          at(row.high, column.low) * (1 - column.fraction) +
          at(row.high, column.high) * column.fraction;
        out[(y * width + x) * channels + c] = top * (1 - row.fraction) + bottom * row.fraction;
      }
    }
  }
  return { width, height, channels, data: out };
}

/**
 * One example of an image task: the image's channels converted to the task's, resized to its
 * height x width (bilinear), each value scaled by the valueRange, (v - min) / (max - min), so
 * that pixels in [min, max] reach the model in [0, 1]. Row-major, channels last.
 */
export function imageFeatures(image: DecodedImage, schema: ImageSchema): Float32Array {
  const converted = convertChannels(image, schema.channels);
  const resized =
    converted.width === schema.width && converted.height === schema.height
      ? converted
      : resizeBilinear(converted, schema.width, schema.height);
  const { min, max } = schema.valueRange;
  if (!(max > min))
    throw invalid(`imageFeatures: valueRange.max must exceed min, got [${min}, ${max}]`);
  const values = resized.data as Float32Array;
  const out = new Float32Array(values.length);
  const scale = 1 / (max - min);
  for (let i = 0; i < values.length; i++) out[i] = ((values[i] as number) - min) * scale;
  return out;
}
