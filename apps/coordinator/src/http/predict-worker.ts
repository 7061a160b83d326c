/**
 * The worker thread behind PredictWorker: decodes uploaded images and runs the model off the
 * coordinator's event loop, one request at a time. It keeps the few most recently used models,
 * keyed by run, round and checkpoint hash; a request for a model it lacks and without weights
 * is answered `missing`, and the caller sends it again with the weights.
 */
import { parentPort } from 'node:worker_threads';
import { initBackend, modelWithWeights, predictProbabilities } from '@tessera/ml';
import { TesseraError, type WireError } from '@tessera/protocol';
import { type ImageKind, imageToMnist } from './predict.js';

export type PredictInput =
  | { kind: 'image'; bytes: Uint8Array; imageKind: ImageKind }
  | { kind: 'pixels'; pixels: Float32Array };

export interface PredictRequest {
  id: number;
  /** `<runId>:<round>:<sha256>` of the checkpoint. */
  modelKey: string;
  model: string;
  /** The checkpoint's weights, or null when the worker should have them already. */
  weights: Float32Array | null;
  input: PredictInput;
}

export type PredictResponse =
  | { id: number; ok: true; probabilities: number[] }
  | { id: number; ok: false; missing: true }
  | { id: number; ok: false; missing: false; error: WireError };

const port = parentPort;
if (port === null) throw new Error('predict-worker must run as a worker thread');

const CAPACITY = 4;
const models = new Map<string, ReturnType<typeof modelWithWeights>>();
let queue: Promise<void> = Promise.resolve();

async function answer(request: PredictRequest): Promise<PredictResponse> {
  await initBackend();
  let model = models.get(request.modelKey);
  if (model === undefined) {
    if (request.weights === null) return { id: request.id, ok: false, missing: true };
    model = modelWithWeights(request.model, request.weights);
  }
  // Most recently used last; evict (and dispose) from the front.
  models.delete(request.modelKey);
  models.set(request.modelKey, model);
  while (models.size > CAPACITY) {
    const [oldestKey, oldest] = models.entries().next().value as [string, typeof model];
    models.delete(oldestKey);
    oldest.dispose();
  }
  const { input } = request;
  const pixels = input.kind === 'image' ? imageToMnist(input.bytes, input.imageKind) : input.pixels;
  return {
    id: request.id,
    ok: true,
    probabilities: predictProbabilities(model, request.model, pixels),
  };
}

port.on('message', (request: PredictRequest) => {
  queue = queue.then(async () => {
    let response: PredictResponse;
    try {
      response = await answer(request);
    } catch (cause) {
      response = {
        id: request.id,
        ok: false,
        missing: false,
        error: TesseraError.from(cause).toWire(),
      };
    }
    port.postMessage(response);
  });
});
