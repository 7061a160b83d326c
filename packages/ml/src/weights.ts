import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { createModel } from './models.js';

/**
 * All of a model's weights as one Float32Array, in the order of `model.weights` (layer
 * by layer, kernel then bias): the form weights take on the wire and in aggregation.
 */
export function getFlatWeights(model: LayersModel): Float32Array {
  // read() returns each variable's own tensor, not a copy: nothing to dispose.
  const tensors = model.weights.map((variable) => variable.read());
  let total = 0;
  for (const tensor of tensors) total += tensor.size;
  const flat = new Float32Array(total);
  let offset = 0;
  for (const tensor of tensors) {
    const values = tensor.dataSync() as Float32Array;
    flat.set(values, offset);
    offset += values.length;
  }
  return flat;
}

/**
 * getFlatWeights without blocking: reads every weight asynchronously. On the GPU
 * backends of browsers (WebGL, WebGPU) a synchronous read stalls the thread until the
 * GPU finishes and, on WebGPU, is not available at all in some contexts; this is the
 * read to use after training.
 */
export async function readFlatWeights(model: LayersModel): Promise<Float32Array> {
  const tensors = model.weights.map((variable) => variable.read());
  const arrays = await Promise.all(tensors.map((tensor) => tensor.data() as Promise<Float32Array>));
  let total = 0;
  for (const values of arrays) total += values.length;
  const flat = new Float32Array(total);
  let offset = 0;
  for (const values of arrays) {
    flat.set(values, offset);
    offset += values.length;
  }
  return flat;
}

/** Loads a flat vector made by `getFlatWeights` (for a model of the same architecture). */
export function setFlatWeights(model: LayersModel, flat: Float32Array): void {
  const variables = model.weights;
  let expected = 0;
  for (const variable of variables) expected += variable.read().size;
  if (flat.length !== expected) {
    throw new TesseraError(
      ErrorCode.WEIGHTS_LENGTH_MISMATCH,
      `setFlatWeights: model '${model.name}' has ${expected} parameters, got a vector of ${flat.length}`,
      { expected, got: flat.length },
    );
  }
  let offset = 0;
  for (const variable of variables) {
    const { shape, size } = variable.read();
    // slice, not subarray: some backends (cpu) keep the array they are given, and the
    // caller's buffer must stay the caller's.
    const value = tf.tensor(flat.slice(offset, offset + size), shape, 'float32');
    variable.write(value);
    value.dispose();
    offset += size;
  }
}

/** The initial flat weights of a zoo model for a seed, without keeping the model. */
export function initialWeights(name: string, seed: number): Float32Array {
  const model = createModel(name, { seed });
  try {
    return getFlatWeights(model);
  } finally {
    model.dispose();
  }
}
