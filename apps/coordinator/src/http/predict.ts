import { Worker } from 'node:worker_threads';
import {
  drawingToMnist,
  jsonRowsExamples,
  pixelsExamples,
  rgbaToGrayscale,
  textPredictExamples,
  type UnlabelledExamples,
} from '@tessera/data/browser';
import type { Database } from '@tessera/db';
import {
  modelWithWeights,
  type TfjsArtifacts,
  taskModelWithWeights,
  toTfjsArtifacts,
} from '@tessera/ml';
import {
  bytesToWeights,
  ErrorCode,
  type PredictRequestBody,
  TesseraError,
} from '@tessera/protocol';
import { outputUnits, type TaskDefinition } from '@tessera/tasks';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { runTaskDefinition } from '../run-task.js';
import { builtWorkerExecArgv } from '../worker-argv.js';
import type {
  PredictInput,
  PredictRequest,
  PredictResponse,
  ServedModel,
} from './predict-worker.js';

/** Largest predict upload, in bytes. A 28x28 digit is a few hundred bytes; photos are bigger. */
export const MAX_IMAGE_BYTES = 2 * 1024 * 1024;
/** Largest image, in pixels per side: decoding allocates width x height x 4 bytes. */
export const MAX_IMAGE_SIDE = 4096;

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const JPEG_MAGIC = [0xff, 0xd8, 0xff];

export type ImageKind = 'png' | 'jpeg';

function startsWith(bytes: Uint8Array, magic: number[]): boolean {
  return bytes.length >= magic.length && magic.every((byte, k) => bytes[k] === byte);
}

/** The image's real type from its first bytes, whatever the request claimed. */
export function sniffImage(bytes: Uint8Array): ImageKind | null {
  if (startsWith(bytes, PNG_MAGIC)) return 'png';
  if (startsWith(bytes, JPEG_MAGIC)) return 'jpeg';
  return null;
}

interface Rgba {
  width: number;
  height: number;
  data: Uint8Array;
}

/** A PNG or JPEG as RGBA, refusing huge ones before decoding them (PAYLOAD_TOO_LARGE). */
export function decodeImage(bytes: Uint8Array, kind: ImageKind): Rgba {
  try {
    if (kind === 'png') {
      // The IHDR chunk sits at a fixed place: refuse huge images before inflating them.
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      if (bytes.length < 24) throw new Error('truncated PNG header');
      const width = view.getUint32(16);
      const height = view.getUint32(20);
      checkSize(width, height);
      const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      return { width: png.width, height: png.height, data: png.data };
    }
    const image = jpeg.decode(bytes, {
      useTArray: true,
      formatAsRGBA: true,
      maxResolutionInMP: (MAX_IMAGE_SIDE * MAX_IMAGE_SIDE) / 1e6,
      maxMemoryUsageInMB: 128,
    });
    checkSize(image.width, image.height);
    return image;
  } catch (cause) {
    if (cause instanceof TesseraError) throw cause;
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `the ${kind.toUpperCase()} image cannot be decoded: ${(cause as Error).message}`,
      { field: '(body)' },
    );
  }
}

function checkSize(width: number, height: number): void {
  if (width < 1 || height < 1 || width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE) {
    throw new TesseraError(
      ErrorCode.PAYLOAD_TOO_LARGE,
      `image is ${width}x${height}; at most ${MAX_IMAGE_SIDE}x${MAX_IMAGE_SIDE} pixels`,
      { width, height },
    );
  }
}

/**
 * Any picture of one digit as MNIST sees digits: 28x28 grayscale in [0, 1], white on black,
 * prepared as the console's drawing pad prepares a drawing (@tessera/data's drawingToMnist:
 * the ink's box scaled into 20x20, centred by mass). Transparent pixels count as black; a
 * picture whose border is mostly light (ink on paper) is inverted first. A picture with no
 * ink is refused: a model asked anyway answers with confidence about nothing.
 */
export function imageToMnist(bytes: Uint8Array, kind: ImageKind): Float32Array {
  const { width, height, data } = decodeImage(bytes, kind);
  const gray = rgbaToGrayscale(
    new Uint8ClampedArray(data.buffer, data.byteOffset, data.byteLength),
    width,
    height,
  );
  const pixels = gray.pixels;
  let border = 0;
  let borderCount = 0;
  for (let x = 0; x < width; x++) {
    border += (pixels[x] ?? 0) + (pixels[(height - 1) * width + x] ?? 0);
    borderCount += 2;
  }
  for (let y = 0; y < height; y++) {
    border += (pixels[y * width] ?? 0) + (pixels[y * width + width - 1] ?? 0);
    borderCount += 2;
  }
  if (border / borderCount > 0.5) {
    for (let k = 0; k < pixels.length; k++) pixels[k] = 1 - (pixels[k] ?? 0);
  }
  const digit = drawingToMnist(gray);
  if (digit === null) {
    throw new TesseraError(ErrorCode.INVALID_ARGUMENT, 'the image shows no digit (no ink found)', {
      field: '(body)',
    });
  }
  return digit;
}

/** One example's answer, in the task's terms. */
export type TaskPrediction =
  | {
      /** The most probable class's name. */
      class: string;
      /** Every class's probability by name (binary: both classes). */
      probabilities: Record<string, number>;
      /** Text tasks: the text's tokens, and whether the model read only its first maxLength. */
      tokens?: number;
      truncated?: boolean;
    }
  | { value: number; tokens?: number; truncated?: boolean };

export interface Prediction {
  runId: string;
  round: number;
  /** The task whose terms the answer is in. */
  task: { name: string; version: number; sha256: string };
  /** One per example sent, in order. */
  predictions: TaskPrediction[];
  /** The built-in MNIST tasks also answer as before tasks existed: the digit and its 10 probabilities. */
  class?: number;
  probabilities?: number[];
}

/** What a predict request carries: its parsed JSON body, or an uploaded image. */
export type PredictBody =
  | { kind: 'json'; body: PredictRequestBody }
  | { kind: 'image'; bytes: Uint8Array; imageKind: ImageKind };

/** The inputs each kind of task takes, for the refusal of any other. */
const TAKES: Record<TaskDefinition['input']['kind'], string> = {
  tabular: 'features (one row: column name -> value) or rows (a few)',
  text: 'text (one string) or texts (a few)',
  image: 'pixels (height x width x channels values) or a PNG/JPEG upload',
};

/**
 * A predict request as the model's input, encoded as the clients encode their data for the
 * task: refused with INVALID_ARGUMENT and the field when it is not the task's kind of input or
 * does not fit it (the image upload of a non-image task: UNSUPPORTED_MEDIA_TYPE).
 */
export function encodePredictInput(
  task: TaskDefinition,
  zooModel: string | null,
  request: PredictBody,
): { input: PredictInput; tokenCounts?: number[] } {
  const { input } = task;
  if (request.kind === 'image') {
    if (input.kind !== 'image') {
      throw new TesseraError(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        `task '${task.name}' takes ${TAKES[input.kind]}, as application/json, not an image`,
        { field: '(body)' },
      );
    }
    const { bytes, imageKind } = request;
    // The built-in MNIST tasks prepare a picture as MNIST's digits were (centred by mass).
    if (zooModel !== null) return { input: { kind: 'mnist-image', bytes, imageKind } };
    return { input: { kind: 'image', bytes, imageKind, schema: input } };
  }
  const { body } = request;
  const given = (Object.keys(body) as (keyof PredictRequestBody)[]).find(
    (key) => body[key] !== undefined,
  ) as keyof PredictRequestBody;
  const wrongInput = () =>
    new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `${String(given)}: task '${task.name}' is a ${input.kind} task: send ${TAKES[input.kind]}`,
      { field: given },
    );
  const features = (examples: UnlabelledExamples) => ({
    kind: 'features' as const,
    x: examples.x,
    count: examples.count,
  });
  switch (input.kind) {
    case 'tabular':
      if (body.features !== undefined) {
        return { input: features(jsonRowsExamples([body.features], input, () => 'features')) };
      }
      if (body.rows !== undefined) {
        return { input: features(jsonRowsExamples(body.rows, input, (row) => `rows.${row}`)) };
      }
      throw wrongInput();
    case 'text': {
      const texts = body.text !== undefined ? [body.text] : body.texts;
      if (texts === undefined) throw wrongInput();
      const examples = textPredictExamples(texts, input);
      return { input: features(examples), tokenCounts: examples.tokenCounts };
    }
    case 'image':
      if (body.pixels === undefined) throw wrongInput();
      return { input: features(pixelsExamples(body.pixels, input)) };
  }
}

/** The model's outputs (units per example, one example after another) in the task's terms. */
export function taskPredictions(
  output: TaskDefinition['output'],
  outputs: readonly number[],
  count: number,
): TaskPrediction[] {
  const units = outputUnits(output);
  if (outputs.length !== units * count) {
    throw new TesseraError(
      ErrorCode.INTERNAL,
      `the model gave ${outputs.length} outputs for ${count} examples of ${units} units`,
    );
  }
  return Array.from({ length: count }, (_, example) => {
    const at = example * units;
    if (output.kind === 'regression') return { value: outputs[at] as number };
    if (output.kind === 'binary') {
      // The one output is the probability of the second (positive) class.
      const positive = outputs[at] as number;
      const [negativeName, positiveName] = output.classes;
      return {
        class: positive >= 0.5 ? positiveName : negativeName,
        probabilities: { [negativeName]: 1 - positive, [positiveName]: positive },
      };
    }
    let best = 0;
    const probabilities: Record<string, number> = {};
    output.classes.forEach((name, k) => {
      probabilities[name] = outputs[at + k] as number;
      if ((outputs[at + k] as number) > (outputs[at + best] as number)) best = k;
    });
    return { class: output.classes[best] as string, probabilities };
  });
}

interface CachedModel {
  model: Awaited<ReturnType<typeof taskModelWithWeights>>;
  sha256: string;
  artifacts?: Promise<TfjsArtifacts>;
}

/**
 * Serves a run's global models: predictions and tfjs downloads, for any task (the model
 * built from the task's topology, the weights a round's checkpoint). Models are built from
 * the stored checkpoints and kept for the few most recently used (run, round) pairs; evicted
 * ones are disposed, so the tensor count stays bounded however many rounds are asked for.
 */
export class ModelServer {
  private readonly cache = new Map<string, CachedModel>();
  private readonly worker = new PredictWorker();

  constructor(
    private readonly db: Database,
    private readonly capacity = 4,
  ) {}

  /** The round a request means (the one asked for, else the latest checkpoint), and its task. */
  private async resolve(runId: string, round: number | undefined) {
    const run = await this.db.runs.get(runId);
    const checkpoint =
      round === undefined
        ? await this.db.rounds.latestCheckpoint(runId)
        : await this.db.rounds.checkpoint(runId, round);
    if (checkpoint === null) {
      throw new TesseraError(
        ErrorCode.CONFLICT,
        `run ${runId} has no model yet: start it first (the initial model is saved at the start)`,
      );
    }
    const task = await runTaskDefinition(this.db, run);
    return { run, checkpoint, task };
  }

  private async entry(runId: string, round: number | undefined) {
    const { run, checkpoint, task } = await this.resolve(runId, round);
    const key = `${runId}:${checkpoint.round}`;
    let cached = this.cache.get(key);
    if (cached === undefined || cached.sha256 !== checkpoint.sha256) {
      if (cached) cached.model.dispose();
      const weights = bytesToWeights(checkpoint.weights, checkpoint.paramCount);
      cached = {
        model: await builtModel(run.config.model, task.definition, weights),
        sha256: checkpoint.sha256,
      };
    }
    // Most recently used last; evict from the front.
    this.cache.delete(key);
    this.cache.set(key, cached);
    while (this.cache.size > this.capacity) {
      const [oldestKey, oldest] = this.cache.entries().next().value as [string, CachedModel];
      this.cache.delete(oldestKey);
      oldest.model.dispose();
    }
    return { run, round: checkpoint.round, sha256: checkpoint.sha256, cached };
  }

  /**
   * Answers a predict request with a round's model, in the task's terms. The input is checked
   * and encoded here (cheap, and its refusals name the field); image decoding and inference
   * run on the predict worker thread, so a burst of large uploads does not stall the sockets.
   */
  async predict(
    runId: string,
    round: number | undefined,
    request: PredictBody,
  ): Promise<Prediction> {
    const { run, checkpoint, task } = await this.resolve(runId, round);
    const zooModel = run.config.model;
    const { input, tokenCounts } = encodePredictInput(task.definition, zooModel, request);
    const { outputs, count } = await this.worker.predict({
      modelKey: `${runId}:${checkpoint.round}:${checkpoint.sha256}:${task.sha256}`,
      model: () => ({
        served:
          zooModel === null
            ? { kind: 'task', task: task.definition }
            : { kind: 'zoo', name: zooModel },
        weights: bytesToWeights(checkpoint.weights, checkpoint.paramCount),
      }),
      input,
    });
    const predictions = taskPredictions(task.definition.output, outputs, count);
    if (tokenCounts !== undefined && task.definition.input.kind === 'text') {
      const { maxLength } = task.definition.input;
      predictions.forEach((prediction, k) => {
        const tokens = tokenCounts[k] as number;
        Object.assign(prediction, { tokens, truncated: tokens > maxLength });
      });
    }
    const answer: Prediction = {
      runId,
      round: checkpoint.round,
      task: run.config.task,
      predictions,
    };
    if (zooModel !== null && predictions.length === 1) {
      // The answer of the MNIST predict before tasks: class index and probabilities in order.
      answer.probabilities = outputs;
      answer.class = outputs.indexOf(Math.max(...outputs));
    }
    return answer;
  }

  /** model.json (whose weights path pins the round) and weights.bin of a round's model. */
  async artifacts(
    runId: string,
    round: number | undefined,
  ): Promise<TfjsArtifacts & { round: number; sha256: string }> {
    const { round: used, sha256, cached } = await this.entry(runId, round);
    cached.artifacts ??= toTfjsArtifacts(cached.model, `weights.bin?round=${used}`);
    return { ...(await cached.artifacts), round: used, sha256 };
  }

  dispose(): void {
    for (const { model } of this.cache.values()) model.dispose();
    this.cache.clear();
    void this.worker.close();
  }
}

/**
 * A round's model: a built-in MNIST task's zoo model by name (as before tasks, so downloads
 * stay what they were), any other task's from its topology, the checkpoint's weights loaded.
 */
async function builtModel(
  zooModel: string | null,
  task: TaskDefinition,
  weights: Float32Array,
): ReturnType<typeof taskModelWithWeights> {
  return zooModel !== null
    ? modelWithWeights(zooModel, weights)
    : taskModelWithWeights(task, weights);
}

/**
 * The predict worker thread (predict-worker.ts): started on first use, one request at a time.
 * It caches models by checkpoint; weights are sent only when it says it lacks them.
 */
export class PredictWorker {
  private worker: Worker | null = null;
  private nextId = 0;
  private readonly pending = new Map<number, (response: PredictResponse) => void>();
  private readonly failures = new Map<number, (error: Error) => void>();

  async predict(request: {
    modelKey: string;
    /** The model and weights, made only when the worker says it lacks them. */
    model: () => { served: ServedModel; weights: Float32Array };
    input: PredictInput;
  }): Promise<{ outputs: number[]; count: number }> {
    const send = (model: PredictRequest['model']) =>
      this.send({ modelKey: request.modelKey, model, input: request.input });
    let response = await send(null);
    if (!response.ok && response.missing) response = await send(request.model());
    if (response.ok) return { outputs: response.outputs, count: response.count };
    if (response.missing)
      throw new TesseraError(ErrorCode.INTERNAL, 'predict worker lost the model');
    const { code, message, data } = response.error;
    throw new TesseraError(code, message, data);
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = null;
    if (worker) await worker.terminate();
  }

  private send(request: Omit<PredictRequest, 'id'>): Promise<PredictResponse> {
    const worker = this.start();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, resolve);
      this.failures.set(id, reject);
      worker.postMessage({ id, ...request } satisfies PredictRequest);
    });
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    // Built JavaScript runs the worker (see WorkerCentralEvaluator): dist/http/ next door, or
    // from ../../dist/http/ when this module is loaded from its TypeScript source (tests).
    const script = new URL(
      import.meta.url.endsWith('.ts') ? '../../dist/http/predict-worker.js' : './predict-worker.js',
      import.meta.url,
    );
    const worker = new Worker(script, { execArgv: builtWorkerExecArgv() });
    worker.unref();
    worker.on('message', (response: PredictResponse) => {
      const resolve = this.pending.get(response.id);
      this.pending.delete(response.id);
      this.failures.delete(response.id);
      resolve?.(response);
    });
    const failAll = (error: Error) => {
      for (const reject of this.failures.values()) reject(error);
      this.pending.clear();
      this.failures.clear();
      this.worker = null;
    };
    worker.on('error', (error) => failAll(error));
    worker.on('exit', (code) => {
      if (this.pending.size > 0) {
        failAll(new TesseraError(ErrorCode.INTERNAL, `predict worker exited (${code})`));
      }
    });
    this.worker = worker;
    return worker;
  }
}
