import * as tf from '@tensorflow/tfjs-core';
import { ErrorCode } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import { createModel, MODEL_NAMES, modelSpec } from './models.js';
import { getFlatWeights, initialWeights, readFlatWeights, setFlatWeights } from './weights.js';

// No initBackend here: the zoo and the flat weights must work on the default 'cpu'
// backend, as the coordinator uses them.

describe('model zoo', () => {
  it.each([
    ['fedavg-2nn', 199_210, [784]],
    ['fedavg-cnn', 1_663_370, [28, 28, 1]],
    ['mlp', 218_058, [784]],
    ['cnn', 225_034, [28, 28, 1]],
  ] as const)('%s has exactly %i parameters', (name, paramCount, inputShape) => {
    const spec = modelSpec(name);
    expect(spec).toMatchObject({ name, paramCount, inputShape, featureSize: 784, numClasses: 10 });
    const model = createModel(name, { seed: 1 });
    expect(model.countParams()).toBe(paramCount);
    expect(model.inputs[0]?.shape).toEqual([null, ...inputShape]);
    expect(model.outputs[0]?.shape).toEqual([null, 10]);
    expect(getFlatWeights(model).length).toBe(paramCount);
    model.dispose();
  });

  it('lists every model name', () => {
    expect([...MODEL_NAMES]).toEqual(['fedavg-2nn', 'fedavg-cnn', 'mlp', 'cnn']);
  });

  it('rejects an unknown model, listing the valid ones', () => {
    for (const attempt of [() => modelSpec('resnet'), () => createModel('resnet', { seed: 1 })]) {
      expect(attempt).toThrow(
        expect.objectContaining({
          code: ErrorCode.INVALID_ARGUMENT,
          message: expect.stringMatching(
            /unknown model 'resnet'; valid models: fedavg-2nn, fedavg-cnn, mlp, cnn/,
          ),
        }),
      );
    }
    expect(() => createModel('mlp', { seed: 0.5 })).toThrow(/seed must be an integer/);
  });
});

describe('flat weights', () => {
  it('gives identical initial weights for a seed, different ones across seeds', () => {
    for (const name of MODEL_NAMES) {
      const first = initialWeights(name, 7);
      expect(initialWeights(name, 7)).toEqual(first);
      expect(initialWeights(name, 8)).not.toEqual(first);
    }
  });

  it('initialises layers of one shape differently (each layer has its own seed)', () => {
    const model = createModel('fedavg-2nn', { seed: 1 });
    const [firstKernel, , secondKernel] = model.getWeights();
    // Layer 2 is 200x200; compare its first rows with layer 1's (784x200).
    const firstRows = firstKernel?.dataSync().subarray(0, 200 * 200);
    const secondRows = secondKernel?.dataSync();
    expect(firstRows).toBeDefined();
    expect(firstRows).not.toEqual(secondRows);
    model.dispose();
  });

  it('has Glorot-uniform kernels and zero biases', () => {
    const model = createModel('fedavg-2nn', { seed: 2 });
    const [kernel, bias] = model.getWeights();
    const limit = Math.sqrt(6 / (784 + 200));
    const kernelValues = (kernel?.dataSync() ?? new Float32Array()) as Float32Array;
    const largest = kernelValues.reduce((a, b) => Math.max(a, b), -Infinity);
    const smallest = kernelValues.reduce((a, b) => Math.min(a, b), Infinity);
    expect(largest).toBeLessThanOrEqual(limit);
    expect(smallest).toBeGreaterThanOrEqual(-limit);
    expect(largest).toBeGreaterThan(limit * 0.99);
    expect([...(bias?.dataSync() ?? [])].every((v) => v === 0)).toBe(true);
    model.dispose();
  });

  it('round-trips through setFlatWeights and getFlatWeights', () => {
    const model = createModel('cnn', { seed: 1 });
    const other = initialWeights('cnn', 2);
    setFlatWeights(model, other);
    expect(getFlatWeights(model)).toEqual(other);
    // The model holds its own copy: changing the vector afterwards changes nothing.
    other[0] = 123;
    expect(getFlatWeights(model)[0]).not.toBe(123);
    model.dispose();
  });

  it('reads the same weights asynchronously (readFlatWeights)', async () => {
    const model = createModel('cnn', { seed: 1 });
    const weights = initialWeights('cnn', 3);
    setFlatWeights(model, weights);
    expect(await readFlatWeights(model)).toEqual(weights);
    model.dispose();
  });

  it('rejects a vector of the wrong length, naming expected and got', () => {
    const model = createModel('fedavg-2nn', { seed: 1 });
    expect(() => setFlatWeights(model, new Float32Array(199_209))).toThrow(
      expect.objectContaining({
        code: ErrorCode.WEIGHTS_LENGTH_MISMATCH,
        message: expect.stringMatching(/has 199210 parameters, got a vector of 199209/),
        data: { expected: 199_210, got: 199_209 },
      }),
    );
    model.dispose();
  });

  it('leaks no tensors', () => {
    const before = tf.memory().numTensors;
    initialWeights('fedavg-cnn', 1);
    const model = createModel('mlp', { seed: 1 });
    setFlatWeights(model, getFlatWeights(model));
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
