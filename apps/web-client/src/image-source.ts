/// <reference lib="dom" />
import type { ImageSource, LabelledImage } from '@tessera/client/core';
import type { DecodedImage } from '@tessera/data';
import type { LabelledFile } from './messages.js';

// The browser's half of image tasks: it lists the picked class folders and decodes each image
// at its own size, as RGBA, with the browser's decoders. What an image becomes for a task
// (channels, size, scale, label) is @tessera/client's ImageSetTaskData, the same as the Node
// client's --data DIR.

async function decode(file: File): Promise<DecodedImage> {
  const bitmap = await createImageBitmap(file);
  try {
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const context = canvas.getContext('2d', { willReadFrequently: true });
    if (!context) throw new Error('this browser cannot draw images off screen');
    context.drawImage(bitmap, 0, 0);
    const { data } = context.getImageData(0, 0, bitmap.width, bitmap.height);
    return { width: bitmap.width, height: bitmap.height, channels: 4, data };
  } finally {
    bitmap.close();
  }
}

/** Code-unit order, as the Node client sorts folder entries: the same in every locale. */
const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The picked images in a stable order (class, then path), so the hold-out split is the same
 * at every round and in every session with the same folder.
 */
export function browserImageSource(name: string, files: readonly LabelledFile[]): ImageSource {
  const images: LabelledImage[] = files
    .map(({ file, className, path }) => ({
      className,
      name: path ?? file.name,
      decode: () => decode(file),
    }))
    .sort((a, b) => byCodeUnits(a.className, b.className) || byCodeUnits(a.name, b.name));
  return { name, list: () => images };
}
