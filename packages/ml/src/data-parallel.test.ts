import * as tf from '@tensorflow/tfjs-core';
import { loadMnist, toExamples } from '@tessera/data';
import { ErrorCode } from '@tessera/protocol';
import { afterAll, describe, expect, it } from 'vitest';
import { initBackend } from './backend.js';
import { closeTrainingWorkers, shardSizes } from './data-parallel.js';
import { createModel, type ModelName } from './models.js';
import { type TrainingData, trainLocal } from './train.js';
import { getFlatWeights, setFlatWeights } from './weights.js';

function mnistFirst(count: number): TrainingData {
  const examples = toExamples(
    loadMnist('train'),
    Array.from({ length: count }, (_, i) => i),
  );
  return { x: examples.x, y: examples.y, count };
}

/** Weights after one trainLocal call from the same start, with `workers` threads. */
async function trainedWeights(
  name: ModelName,
  data: TrainingData,
  batchSize: number,
  workers: number,
): Promise<{ weights: Float32Array; loss: number; accuracy: number; workers: number }> {
  const model = createModel(name, { seed: 4 });
  try {
    const result = await trainLocal(model, data, {
      epochs: 2,
      batchSize,
      learningRate: 0.05,
      seed: 9,
      workers,
    });
    return { weights: getFlatWeights(model), ...result };
  } finally {
    model.dispose();
  }
}

/** max |a - b| <= tolerance * max |b|. */
function expectRelativelyClose(actual: Float32Array, expected: Float32Array, tolerance: number) {
  expect(actual.length).toBe(expected.length);
  let scale = 0;
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    scale = Math.max(scale, Math.abs(expected[i] ?? 0));
    worst = Math.max(worst, Math.abs((actual[i] ?? 0) - (expected[i] ?? 0)));
  }
  expect(worst / scale).toBeLessThanOrEqual(tolerance);
}

afterAll(async () => {
  await closeTrainingWorkers();
});

describe('shardSizes', () => {
  it('splits a batch into near-equal contiguous shards, larger ones first', () => {
    expect(shardSizes(10, 2)).toEqual([5, 5]);
    expect(shardSizes(11, 3)).toEqual([4, 4, 3]);
    expect(shardSizes(2, 3)).toEqual([1, 1, 0]);
  });
});

describe('data-parallel trainLocal (worker_threads) on wasm', () => {
  it.each([
    ['fedavg-2nn', 2, 20],
    ['cnn', 2, 16],
    // 3 threads; the last batch of each epoch (2 examples) has fewer examples than threads.
    ['fedavg-2nn', 3, 17],
  ] as const)(
    '%s with %i threads gives the SGD steps of one thread',
    async (name, workers, batchSize) => {
      await initBackend('wasm');
      const data = mnistFirst(70);
      const single = await trainedWeights(name, data, batchSize, 1);
      const parallel = await trainedWeights(name, data, batchSize, workers);
      expect(single.workers).toBe(1);
      expect(parallel.workers).toBe(workers);
      // Only the order of float additions differs.
      expectRelativelyClose(parallel.weights, single.weights, 1e-5);
      expect(parallel.loss).toBeCloseTo(single.loss, 4);
      expect(parallel.accuracy).toBe(single.accuracy);
      // It trained: the weights moved from the initial ones.
      const initial = createModel(name, { seed: 4 });
      expect(getFlatWeights(initial)).not.toEqual(single.weights);
      initial.dispose();
    },
  );

  it('starts the workers again from the current weights on every call, and keeps no tensors', async () => {
    await initBackend('wasm');
    const data = mnistFirst(40);
    const model = createModel('fedavg-2nn', { seed: 5 });
    const options = { epochs: 1, batchSize: 20, learningRate: 0.05, seed: 1, workers: 2 };
    await trainLocal(model, data, options);
    const other = createModel('fedavg-2nn', { seed: 6 });
    const restart = getFlatWeights(other);
    other.dispose();
    const tensors = tf.memory().numTensors;
    const bytes = tf.memory().numBytes;
    // New global weights, as in the next round: the workers must train from these.
    setFlatWeights(model, restart);
    await trainLocal(model, data, options);
    const parallelResult = getFlatWeights(model);
    expect(tf.memory().numTensors).toBe(tensors);
    expect(tf.memory().numBytes).toBe(bytes);
    setFlatWeights(model, restart);
    await trainLocal(model, data, { ...options, workers: 1 });
    expectRelativelyClose(parallelResult, getFlatWeights(model), 1e-5);
    model.dispose();
  });

  it.each([0, 1.5, -2])('rejects workers = %s', async (workers) => {
    await initBackend('wasm');
    const model = createModel('fedavg-2nn', { seed: 1 });
    await expect(
      trainLocal(model, mnistFirst(10), {
        epochs: 1,
        batchSize: 5,
        learningRate: 0.1,
        seed: 1,
        workers,
      }),
    ).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
      message: expect.stringContaining('workers must be a positive integer'),
    });
    model.dispose();
  });

  it('refuses a second data-parallel trainLocal while one runs, and serves it afterwards', async () => {
    await initBackend('wasm');
    const data = mnistFirst(40);
    const first = createModel('fedavg-2nn', { seed: 1 });
    const second = createModel('fedavg-2nn', { seed: 2 });
    const options = { epochs: 1, batchSize: 20, learningRate: 0.05, seed: 1, workers: 2 };
    const running = trainLocal(first, data, options);
    await expect(trainLocal(second, data, options)).rejects.toMatchObject({
      code: ErrorCode.CONFLICT,
      message: expect.stringContaining('another data-parallel trainLocal is running'),
    });
    await running;
    expect((await trainLocal(second, data, options)).workers).toBe(2);
    first.dispose();
    second.dispose();
  });

  it("uses one thread on 'auto' for small batches", async () => {
    await initBackend('wasm');
    const model = createModel('fedavg-2nn', { seed: 1 });
    const result = await trainLocal(model, mnistFirst(20), {
      epochs: 1,
      batchSize: 10,
      learningRate: 0.1,
      seed: 1,
    });
    expect(result.workers).toBe(1);
    model.dispose();
  });
});
