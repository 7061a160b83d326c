import { Worker } from 'node:worker_threads';
import { drawingToMnist, rgbaToGrayscale } from '@tessera/data/browser';
import type { Database } from '@tessera/db';
import { modelWithWeights, type TfjsArtifacts, toTfjsArtifacts } from '@tessera/ml';
import { bytesToWeights, ErrorCode, TesseraError, zooModelOf } from '@tessera/protocol';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { builtWorkerExecArgv } from '../worker-argv.js';
import type { PredictInput, PredictRequest, PredictResponse } from './predict-worker.js';

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

function decode(bytes: Uint8Array, kind: ImageKind): Rgba {
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
  const { width, height, data } = decode(bytes, kind);
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

export interface Prediction {
  runId: string;
  round: number;
  class: number;
  probabilities: number[];
}

interface CachedModel {
  model: ReturnType<typeof modelWithWeights>;
  sha256: string;
  artifacts?: Promise<TfjsArtifacts>;
}

/**
 * Serves a run's global models: predictions and tfjs downloads. Models are built from the
 * stored checkpoints and kept for the few most recently used (run, round) pairs; evicted ones
 * are disposed, so the tensor count stays bounded however many rounds are asked for.
 */
export class ModelServer {
  private readonly cache = new Map<string, CachedModel>();
  private readonly worker = new PredictWorker();

  constructor(
    private readonly db: Database,
    private readonly capacity = 4,
  ) {}

  /** The round a request means: the one asked for, else the latest checkpoint. */
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
    return { run, checkpoint };
  }

  private async entry(runId: string, round: number | undefined) {
    const { run, checkpoint } = await this.resolve(runId, round);
    const key = `${runId}:${checkpoint.round}`;
    let cached = this.cache.get(key);
    if (cached === undefined || cached.sha256 !== checkpoint.sha256) {
      if (cached) cached.model.dispose();
      const weights = bytesToWeights(checkpoint.weights, checkpoint.paramCount);
      cached = {
        model: modelWithWeights(zooModelOf(run.config, 'the model download'), weights),
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
   * Classifies one input with a round's model. The image decode and the inference run on the
   * predict worker thread, so a burst of large uploads does not stall the sockets and the API.
   */
  async predict(
    runId: string,
    round: number | undefined,
    input: PredictInput,
  ): Promise<Prediction> {
    const { run, checkpoint } = await this.resolve(runId, round);
    const probabilities = await this.worker.predict({
      modelKey: `${runId}:${checkpoint.round}:${checkpoint.sha256}`,
      model: zooModelOf(run.config, 'predict'),
      weights: () => bytesToWeights(checkpoint.weights, checkpoint.paramCount),
      input,
    });
    let best = 0;
    for (let k = 1; k < probabilities.length; k++) {
      if ((probabilities[k] ?? 0) > (probabilities[best] ?? 0)) best = k;
    }
    return { runId, round: checkpoint.round, class: best, probabilities };
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
    model: string;
    weights: () => Float32Array;
    input: PredictInput;
  }): Promise<number[]> {
    const send = (weights: Float32Array | null) =>
      this.send({
        modelKey: request.modelKey,
        model: request.model,
        weights,
        input: request.input,
      });
    let response = await send(null);
    if (!response.ok && response.missing) response = await send(request.weights());
    if (response.ok) return response.probabilities;
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
