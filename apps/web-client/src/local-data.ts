/// <reference lib="dom" />
import { type Examples, MNIST_INPUT, parseCsvExamples, parseMnistIdx } from '@tessera/data';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { MNIST_SAMPLE_IMAGES, MNIST_SAMPLE_LABELS } from './assets.js';
import type { DataChoice, LabelledFile } from './messages.js';

/** The built-in models read 28x28 grayscale images in [0, 1], light digits on black, 10 classes. */
const SIDE = 28;
const FEATURES = MNIST_INPUT.featureSize; // SIDE * SIDE
const NUM_CLASSES = MNIST_INPUT.numClasses;

export interface LocalExamples {
  examples: Examples;
  description: string;
  /** Class names in label order (label k is classes[k]). */
  classes: string[];
}

function invalid(message: string): TesseraError {
  return new TesseraError(ErrorCode.INVALID_ARGUMENT, message);
}

async function fetchBytes(url: string): Promise<Uint8Array> {
  const response = await fetch(url);
  if (!response.ok) {
    throw new TesseraError(
      ErrorCode.UNAVAILABLE,
      `the built-in MNIST sample is missing from this site (${url}: HTTP ${response.status})`,
    );
  }
  return new Uint8Array(await response.arrayBuffer());
}

async function loadSample(count: number, assetBase: string): Promise<LocalExamples> {
  const imagesUrl = new URL(MNIST_SAMPLE_IMAGES, assetBase).href;
  const labelsUrl = new URL(MNIST_SAMPLE_LABELS, assetBase).href;
  const split = parseMnistIdx(
    { bytes: await fetchBytes(imagesUrl), source: imagesUrl },
    { bytes: await fetchBytes(labelsUrl), source: labelsUrl },
  );
  if (!Number.isInteger(count) || count < 1 || count > split.count) {
    throw invalid(`the MNIST sample has ${split.count} examples; pick 1 to ${split.count}`);
  }
  const x = new Float32Array(count * FEATURES);
  for (let i = 0; i < x.length; i++) x[i] = (split.images[i] ?? 0) / 255;
  return {
    examples: { x, y: split.labels.slice(0, count), count, featureSize: FEATURES },
    description: `built-in MNIST sample (${count} examples)`,
    classes: Array.from({ length: NUM_CLASSES }, (_, k) => String(k)),
  };
}

/**
 * Label order for class folders: folders named 0..9 keep their digit as the label (so MNIST-style
 * folders line up with other clients'); any other names are numbered in sorted order.
 */
export function classLabels(classNames: readonly string[]): string[] {
  const unique = [...new Set(classNames)].sort((a, b) => a.localeCompare(b));
  if (unique.length > NUM_CLASSES) {
    throw invalid(
      `found ${unique.length} class folders (${unique.slice(0, 12).join(', ')}${unique.length > 12 ? ', ...' : ''}); the models have ${NUM_CLASSES} classes`,
    );
  }
  if (unique.every((name) => /^[0-9]$/.test(name))) {
    return Array.from({ length: NUM_CLASSES }, (_, k) => String(k));
  }
  return unique;
}

/**
 * Decodes one image to 28x28 grayscale in [0, 1]. Images are stretched to the square; dark
 * strokes on a light background (most scans and drawings) are inverted to MNIST's convention,
 * judged by the border, which is background in a centred digit.
 */
async function decodeImage(
  file: File,
  context: OffscreenCanvasRenderingContext2D,
): Promise<Float32Array> {
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw invalid(`${file.name} is not an image this browser can decode`);
  }
  context.fillStyle = 'black';
  context.fillRect(0, 0, SIDE, SIDE);
  context.drawImage(bitmap, 0, 0, SIDE, SIDE);
  bitmap.close();
  const rgba = context.getImageData(0, 0, SIDE, SIDE).data;
  const gray = new Float32Array(FEATURES);
  let border = 0;
  let borderCount = 0;
  for (let i = 0; i < FEATURES; i++) {
    const value =
      (0.299 * (rgba[i * 4] ?? 0) +
        0.587 * (rgba[i * 4 + 1] ?? 0) +
        0.114 * (rgba[i * 4 + 2] ?? 0)) /
      255;
    gray[i] = value;
    const row = Math.floor(i / SIDE);
    const col = i % SIDE;
    if (row === 0 || col === 0 || row === SIDE - 1 || col === SIDE - 1) {
      border += value;
      borderCount++;
    }
  }
  if (border / borderCount > 0.5) for (let i = 0; i < FEATURES; i++) gray[i] = 1 - (gray[i] ?? 0);
  return gray;
}

async function loadImages(images: LabelledFile[]): Promise<LocalExamples> {
  if (images.length === 0) {
    throw invalid('the folder holds no images: pick a folder with one sub-folder per class');
  }
  const classes = classLabels(images.map((f) => f.className));
  const canvas = new OffscreenCanvas(SIDE, SIDE);
  const context = canvas.getContext('2d', { willReadFrequently: true });
  if (!context)
    throw new TesseraError(ErrorCode.UNAVAILABLE, 'this browser cannot draw images off screen');
  const x = new Float32Array(images.length * FEATURES);
  const y = new Uint8Array(images.length);
  for (const [row, { file, className }] of images.entries()) {
    x.set(await decodeImage(file, context), row * FEATURES);
    y[row] = classes.indexOf(className);
  }
  return {
    examples: { x, y, count: images.length, featureSize: FEATURES },
    description: `${images.length} images in ${new Set(images.map((f) => f.className)).size} class folders`,
    classes,
  };
}

async function loadCsv(file: File, featureScale: number): Promise<LocalExamples> {
  // The same checks as the Node client's: the models' feature count, classes and value range.
  const examples = parseCsvExamples(await file.text(), {
    source: file.name,
    schema: MNIST_INPUT,
    featureScale,
    ...(featureScale === 1
      ? { scaleHint: "if the file holds 0..255 pixels, tick 'pixels are 0..255'" }
      : {}),
  });
  return {
    examples,
    description: `CSV ${file.name} (${examples.count} examples)`,
    classes: Array.from({ length: NUM_CLASSES }, (_, k) => String(k)),
  };
}

/** Reads and preprocesses the chosen local data, in this browser only. */
export function loadLocalExamples(choice: DataChoice, assetBase: string): Promise<LocalExamples> {
  switch (choice.kind) {
    case 'sample':
      return loadSample(choice.count, assetBase);
    case 'images':
      return loadImages(choice.files);
    case 'csv':
      return loadCsv(choice.file, choice.featureScale);
    case 'task-file':
    case 'task-images':
      // The worker reads these per task (FileTaskData, ImageSetTaskData), not as MNIST examples.
      throw invalid("a task's data is read per task, not as MNIST examples");
  }
}
