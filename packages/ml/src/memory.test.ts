import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { loadMnist, toExamples } from '@tessera/data';
import { describe, expect, it } from 'vitest';
import { initBackend } from './backend.js';
import { createModel } from './models.js';
import { evaluateModel, type TrainingData, trainLocal } from './train.js';
import { getFlatWeights, setFlatWeights } from './weights.js';

function mnistFirst(count: number): TrainingData {
  const examples = toExamples(
    loadMnist('train'),
    Array.from({ length: count }, (_, i) => i),
  );
  return { x: examples.x, y: examples.y, count };
}

/** Bytes of the wasm module's linear memory: it only grows, so a leak shows as growth. */
function wasmHeapBytes(): number {
  const module = (tf.backend() as BackendWasm).wasm as unknown as { HEAPU8?: Uint8Array };
  return module.HEAPU8?.buffer.byteLength ?? 0;
}

describe('no leaks across rounds', () => {
  // The cpu backend's own Conv2DBackpropFilter takes seconds per batch even for the small
  // cnn: the dense model there.
  it.each([
    ['wasm', 'fedavg-cnn'],
    ['cpu', 'fedavg-2nn'],
  ] as const)(
    '%s, %s: tensors, bytes and wasm data stay flat over rounds of new global weights',
    async (backend, modelName) => {
      await initBackend(backend);
      const data = mnistFirst(30);
      const batchSize = 10;
      const client = createModel(modelName, { seed: 1 });
      const server = createModel(modelName, { seed: 2 });
      const round = async (index: number) => {
        // As a client does each round: load the global weights, train, evaluate, report.
        setFlatWeights(client, getFlatWeights(server));
        await trainLocal(client, data, { epochs: 1, batchSize, learningRate: 0.05, seed: index });
        await evaluateModel(client, data, 16);
        setFlatWeights(server, getFlatWeights(client));
      };
      await round(0);
      await round(1);
      const tensors = tf.memory().numTensors;
      const bytes = tf.memory().numBytes;
      const dataIds = tf.backend().numDataIds();
      const heap = backend === 'wasm' ? wasmHeapBytes() : 0;
      for (let index = 2; index < 5; index++) {
        await round(index);
        expect(tf.memory().numTensors).toBe(tensors);
        expect(tf.memory().numBytes).toBe(bytes);
        expect(tf.backend().numDataIds()).toBe(dataIds);
      }
      if (backend === 'wasm') expect(wasmHeapBytes()).toBe(heap);
      // It trained: the weights are finite and moved.
      const weights = getFlatWeights(client);
      expect(weights.every(Number.isFinite)).toBe(true);
      client.dispose();
      server.dispose();
    },
    60_000,
  );
});
