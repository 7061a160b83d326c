/**
 * What the tests of trainLocal's gradient terms share (FedProx's proximal term, SCAFFOLD's
 * correction): a dense 2 -> 2 softmax model, one SGD step of it on one example, and the check
 * that a refused option trains nothing and leaks no tensor. Test support only: not built.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { TesseraError } from '@tessera/protocol';
import { expect } from 'vitest';
import { initBackend } from '../backend.js';
import { type TrainOptions, trainLocal } from '../train.js';
import { getFlatWeights, setFlatWeights } from '../weights.js';

/** Dense 2 -> 2 with softmax; flat weights: kernel [[k00, k01], [k10, k11]] row-major, bias. */
export function tinyModel(): tfl.LayersModel {
  return tfl.sequential({
    layers: [tfl.layers.dense({ inputShape: [2], units: 2, activation: 'softmax' })],
  });
}

/** The one example both tests step on. */
export const EXAMPLE_X = [1, 2] as const;

/** One epoch of one batch of the one example (x, label), from `weights`, lr 0.1. */
export async function oneStep(
  weights: Float32Array,
  label: number,
  options: Partial<TrainOptions>,
) {
  const model = tinyModel();
  setFlatWeights(model, weights);
  const result = await trainLocal(
    model,
    { x: Float32Array.from(EXAMPLE_X), y: Uint8Array.of(label), count: 1 },
    { epochs: 1, batchSize: 1, learningRate: 0.1, seed: 1, ...options },
  );
  const trained = getFlatWeights(model);
  model.dispose();
  return { result, weights: trained };
}

/** trainLocal with `options` is refused with `code`, the weights as they were, no tensor left. */
export async function expectRefused(
  weights: Float32Array,
  label: number,
  options: Partial<TrainOptions>,
  code: string,
): Promise<void> {
  await initBackend('cpu');
  const model = tinyModel();
  setFlatWeights(model, weights);
  const tensors = tf.memory().numTensors;
  const error = await trainLocal(
    model,
    { x: Float32Array.from(EXAMPLE_X), y: Uint8Array.of(label), count: 1 },
    { epochs: 1, batchSize: 1, learningRate: 0.1, seed: 1, ...options },
  ).catch((caught: unknown) => caught);
  expect(error).toBeInstanceOf(TesseraError);
  expect((error as TesseraError).code).toBe(code);
  expect([...getFlatWeights(model)]).toEqual([...weights]);
  expect(tf.memory().numTensors).toBe(tensors);
  model.dispose();
}
