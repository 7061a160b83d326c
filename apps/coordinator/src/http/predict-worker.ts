/**
 * The worker thread behind PredictWorker: decodes uploaded images and runs the model off the
 * coordinator's event loop, one request at a time. It keeps the few most recently used models,
 * keyed by run, round and checkpoint hash; a request for a model it lacks and without the
 * model and its weights is answered `missing`, and the caller sends it again with them.
 */
import { parentPort } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { type ImageSchema, imageFeatures } from '@tessera/data/browser';
import {
  initBackend,
  modelWithWeights,
  predictProbabilities,
  taskModelWithWeights,
} from '@tessera/ml';
import { TesseraError, type WireError } from '@tessera/protocol';
import type { TaskDefinition } from '@tessera/tasks';
import { decodeImage, type ImageKind, imageToMnist } from './predict.js';

export type PredictInput =
  /** A picture of a digit, prepared as MNIST's digits were (the built-in MNIST tasks). */
  | { kind: 'mnist-image'; bytes: Uint8Array; imageKind: ImageKind }
  /** A picture for an image task, made its example as the clients make theirs (imageFeatures). */
  | { kind: 'image'; bytes: Uint8Array; imageKind: ImageKind; schema: ImageSchema }
  /** Encoded examples (count x the model's input size), as the clients encode their data. */
  | { kind: 'features'; x: Float32Array; count: number };

/** How the worker builds a model: a zoo model by name, or a task's topology. */
export type ServedModel = { kind: 'zoo'; name: string } | { kind: 'task'; task: TaskDefinition };

export interface PredictRequest {
  id: number;
  /** `<runId>:<round>:<checkpoint sha256>:<task sha256>`. */
  modelKey: string;
  /** The model and the checkpoint's weights, or null when the worker should have them already. */
  model: { served: ServedModel; weights: Float32Array } | null;
  input: PredictInput;
}

/** `outputs`: the model's output units of each example, one example after another. */
export type PredictResponse =
  | { id: number; ok: true; outputs: number[]; count: number }
  | { id: number; ok: false; missing: true }
  | { id: number; ok: false; missing: false; error: WireError };

const port = parentPort;
if (port === null) throw new Error('predict-worker must run as a worker thread');

interface LoadedModel {
  model: Awaited<ReturnType<typeof taskModelWithWeights>>;
  served: ServedModel;
}

const CAPACITY = 4;
const models = new Map<string, LoadedModel>();
let queue: Promise<void> = Promise.resolve();

async function load(served: ServedModel, weights: Float32Array): Promise<LoadedModel> {
  if (served.kind === 'zoo') return { model: modelWithWeights(served.name, weights), served };
  return { model: await taskModelWithWeights(served.task, weights), served };
}

/** The model's outputs for `count` examples of flat features, reshaped to its input. */
function run(loaded: LoadedModel, x: Float32Array, count: number): number[] {
  const { model, served } = loaded;
  if (served.kind === 'zoo') return predictProbabilities(model, served.name, x);
  const inputShape = (model.inputs[0]?.shape ?? []).slice(1) as number[];
  return tf.tidy(() => {
    const output = model.predict(tf.tensor(x, [count, ...inputShape], 'float32')) as tf.Tensor;
    return Array.from(output.dataSync());
  });
}

async function answer(request: PredictRequest): Promise<PredictResponse> {
  await initBackend();
  let loaded = models.get(request.modelKey);
  if (loaded === undefined) {
    if (request.model === null) return { id: request.id, ok: false, missing: true };
    loaded = await load(request.model.served, request.model.weights);
  }
  // Most recently used last; evict (and dispose) from the front.
  models.delete(request.modelKey);
  models.set(request.modelKey, loaded);
  while (models.size > CAPACITY) {
    const [oldestKey, oldest] = models.entries().next().value as [string, LoadedModel];
    models.delete(oldestKey);
    oldest.model.dispose();
  }
  const { input } = request;
  let x: Float32Array;
  let count = 1;
  if (input.kind === 'mnist-image') x = imageToMnist(input.bytes, input.imageKind);
  else if (input.kind === 'image') {
    const { width, height, data } = decodeImage(input.bytes, input.imageKind);
    x = imageFeatures({ width, height, channels: 4, data }, input.schema);
  } else {
    x = input.x;
    count = input.count;
  }
  return { id: request.id, ok: true, outputs: run(loaded, x, count), count };
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
