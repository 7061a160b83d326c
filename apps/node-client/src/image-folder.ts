import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ImageSetTaskData,
  type ImageSource,
  type LabelledImage,
  type SplitOptions,
} from '@tessera/client';
import type { DecodedImage } from '@tessera/data';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';

// `--data DIR` for image tasks: one sub-folder per class, PNG and JPEG files in them, decoded
// with pure-JS decoders (no native build, no download). What an image becomes for a task is
// @tessera/client's ImageSetTaskData, shared with other hosts.

const IMAGE_FILE = /\.(png|jpe?g)$/i;

/** Decodes a PNG or a JPEG (by its first bytes, not its name) to RGBA pixels. */
export function decodeImageFile(bytes: Buffer): DecodedImage {
  if (bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) {
    const png = PNG.sync.read(bytes);
    return { width: png.width, height: png.height, channels: 4, data: png.data };
  }
  if (bytes[0] === 0xff && bytes[1] === 0xd8) {
    // maxMemoryUsageInMB bounds what one crafted file can make the decoder allocate.
    const image = jpeg.decode(bytes, {
      useTArray: true,
      formatAsRGBA: true,
      maxMemoryUsageInMB: 512,
    });
    return { width: image.width, height: image.height, channels: 4, data: image.data };
  }
  throw new Error('neither PNG nor JPEG');
}

/**
 * The images of `folder`: each sub-folder is a class (its name), each .png/.jpg/.jpeg file in
 * it one image; other files and deeper folders are ignored. Sorted by class, then file name, so
 * the hold-out split is the same at every start.
 */
export function listImageFolder(folder: string): LabelledImage[] {
  let classes: string[];
  try {
    classes = readdirSync(folder, { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => entry.name)
      .sort();
  } catch (cause) {
    throw new TesseraError(
      ErrorCode.NOT_FOUND,
      `${folder} cannot be read: ${cause instanceof Error ? cause.message : String(cause)}`,
      { file: folder },
      { cause },
    );
  }
  const images: LabelledImage[] = [];
  for (const className of classes) {
    const files = readdirSync(join(folder, className), { withFileTypes: true })
      .filter((entry) => entry.isFile() && IMAGE_FILE.test(entry.name))
      .map((entry) => entry.name)
      .sort();
    for (const file of files) {
      const path = join(folder, className, file);
      images.push({ className, name: path, decode: () => decodeImageFile(readFileSync(path)) });
    }
  }
  return images;
}

/** The images of a --data folder for image tasks; INVALID_ARGUMENT when it holds none. */
export async function openImageFolder(
  folder: string,
  split: SplitOptions,
): Promise<ImageSetTaskData> {
  const source: ImageSource = { name: folder, list: () => listImageFolder(folder) };
  const data = await ImageSetTaskData.open(source, split);
  if (data.numExamples + data.numHoldout === 0) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `${folder}: no images; put each class's PNG or JPEG files in a sub-folder named after the class (${folder}/CLASS/image.png)`,
      { field: '--data' },
    );
  }
  return data;
}
