import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { loadMnist, partitionIid, toExamples } from '@tessera/data';
import { ErrorCode } from '@tessera/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { initBackend } from './backend.js';
import { createModel, type ModelName } from './models.js';
import { evaluateModel, type TrainProgress, trainLocal } from './train.js';
import { getFlatWeights } from './weights.js';

/** `count` real MNIST training examples, a random (seeded) sample. */
function mnistSample(count: number, seed = 1) {
  const indices = (
    partitionIid(60_000, Math.floor(60_000 / count), seed)[0] ?? new Uint32Array()
  ).subarray(0, count);
  return toExamples(loadMnist('train'), indices);
}

const models: LayersModel[] = [];
function model(name: ModelName, seed = 1): LayersModel {
  const created = createModel(name, { seed });
  models.push(created);
  return created;
}
afterEach(() => {
  for (const created of models.splice(0)) created.dispose();
});

describe.each(['cpu', 'wasm'] as const)('trainLocal fedavg-2nn on %s', (backend) => {
  it('reduces the loss on a few hundred real MNIST examples', async () => {
    await initBackend(backend);
    const data = mnistSample(300);
    const net = model('fedavg-2nn');
    const before = await evaluateModel(net, data);
    const result = await trainLocal(net, data, {
      epochs: 3,
      batchSize: 10,
      learningRate: 0.1,
      seed: 1,
    });
    const after = await evaluateModel(net, data);
    expect(before.loss).toBeGreaterThan(2);
    expect(after.loss).toBeLessThan(before.loss * 0.5);
    expect(after.accuracy).toBeGreaterThan(0.8);
    expect(result.numExamples).toBe(300);
    expect(result.loss).toBeGreaterThan(0);
    expect(result.loss).toBeLessThan(before.loss);
    expect(result.accuracy).toBeGreaterThan(0.6);
    expect(result.samplesPerSecond).toBeGreaterThan(0);
    expect(result.durationMs).toBeGreaterThan(0);
  });

  it('keeps the tensor count flat over three train/evaluate cycles', async () => {
    await initBackend(backend);
    const data = mnistSample(45);
    const net = model('fedavg-2nn');
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      await trainLocal(net, data, { epochs: 1, batchSize: 10, learningRate: 0.05, seed: i });
      await evaluateModel(net, data, 20);
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe.each(['fedavg-cnn', 'cnn'] as const)('trainLocal %s on wasm', (name) => {
  it('trains a few batches with a finite, falling loss and no leaked tensors', async () => {
    await initBackend('wasm');
    const data = mnistSample(40, 2);
    const net = model(name);
    const before = await evaluateModel(net, data);
    const tensorsBefore = tf.memory().numTensors;
    const losses: number[] = [];
    for (let round = 0; round < 3; round++) {
      const result = await trainLocal(net, data, {
        epochs: 1,
        batchSize: 10,
        learningRate: 0.05,
        seed: round,
      });
      losses.push(result.loss);
    }
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    const after = await evaluateModel(net, data);
    for (const loss of losses) expect(Number.isFinite(loss)).toBe(true);
    expect(losses[2]).toBeLessThan(losses[0] ?? 0);
    expect(after.loss).toBeLessThan(before.loss);
    expect(getFlatWeights(net).every(Number.isFinite)).toBe(true);
  });
});

describe('trainLocal on cpu', () => {
  it('is deterministic for a seed, and the seed changes the batch order', async () => {
    await initBackend('cpu');
    const data = mnistSample(50);
    const train = async (seed: number) => {
      const net = model('mlp', 4);
      await trainLocal(net, data, { epochs: 2, batchSize: 8, learningRate: 0.05, seed });
      return getFlatWeights(net);
    };
    const first = await train(1);
    expect(await train(1)).toEqual(first);
    expect(await train(2)).not.toEqual(first);
  });

  it('reports progress per batch, including the last partial batch', async () => {
    await initBackend('cpu');
    const data = mnistSample(25);
    const progress: TrainProgress[] = [];
    await trainLocal(model('fedavg-2nn'), data, {
      epochs: 2,
      batchSize: 10,
      learningRate: 0.01,
      seed: 1,
      onProgress: (p) => progress.push(p),
    });
    expect(progress.map((p) => `${p.epoch}/${p.epochs}:${p.batch}/${p.batches}`)).toEqual([
      '1/2:1/3',
      '1/2:2/3',
      '1/2:3/3',
      '2/2:1/3',
      '2/2:2/3',
      '2/2:3/3',
    ]);
    for (const p of progress) expect(p.loss).toBeGreaterThan(0);
  });

  it('yields to the event loop while it trains', async () => {
    await initBackend('cpu');
    const data = mnistSample(30);
    let timerFired = false;
    const firedAtBatch: boolean[] = [];
    setTimeout(() => {
      timerFired = true;
    }, 0);
    await trainLocal(model('fedavg-2nn'), data, {
      epochs: 1,
      batchSize: 5,
      learningRate: 0.01,
      seed: 1,
      yieldEveryBatches: 1,
      onProgress: () => firedAtBatch.push(timerFired),
    });
    expect(firedAtBatch[0]).toBe(false);
    expect(firedAtBatch.at(-1)).toBe(true);
  });

  it('rejects bad data and options with INVALID_ARGUMENT', async () => {
    await initBackend('cpu');
    const data = mnistSample(10);
    const net = model('fedavg-2nn');
    const options = { epochs: 1, batchSize: 5, learningRate: 0.1, seed: 1 };
    const cases: [Parameters<typeof trainLocal>[1], Partial<typeof options>, RegExp][] = [
      [{ ...data, count: 11 }, {}, /x has 7840 values, expected 11 examples x 784 features/],
      [
        { ...data, y: Uint8Array.of(...data.y.subarray(0, 9), 10) },
        {},
        /label 10 of example 9 is outside 0\.\.9/,
      ],
      [{ x: new Float32Array(0), y: new Uint8Array(0), count: 0 }, {}, /no examples to train on/],
      [data, { batchSize: 0 }, /batchSize must be a positive integer, got 0/],
      [data, { epochs: 1.5 }, /epochs must be a positive integer/],
      [data, { learningRate: -1 }, /learningRate must be a positive number/],
    ];
    for (const [badData, badOptions, message] of cases) {
      await expect(trainLocal(net, badData, { ...options, ...badOptions })).rejects.toMatchObject({
        code: ErrorCode.INVALID_ARGUMENT,
        message: expect.stringMatching(message),
      });
    }
  });
});

describe('evaluateModel', () => {
  it('gives the same answer whatever the batch size, and zeros for no data', async () => {
    await initBackend('cpu');
    const data = mnistSample(37);
    const net = model('mlp');
    const whole = await evaluateModel(net, data);
    const batched = await evaluateModel(net, data, 10);
    expect(batched.numExamples).toBe(37);
    expect(batched.accuracy).toBeCloseTo(whole.accuracy, 10);
    expect(batched.loss).toBeCloseTo(whole.loss, 5);
    expect(
      await evaluateModel(net, { x: new Float32Array(0), y: new Uint8Array(0), count: 0 }),
    ).toEqual({
      loss: 0,
      accuracy: 0,
      numExamples: 0,
      metrics: { loss: 0, accuracy: 0 },
      sums: { examples: 0, lossSum: 0, correct: 0 },
    });
  });
});
