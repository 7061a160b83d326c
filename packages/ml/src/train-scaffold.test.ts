import { loadMnist, partitionIid, toExamples } from '@tessera/data';
import { loadNativeKernels } from '@tessera/ml-native';
import { ErrorCode } from '@tessera/protocol';
import { afterAll, describe, expect, it } from 'vitest';
import { initBackend } from './backend.js';
import { createModel } from './models.js';
import { EXAMPLE_X, expectRefused, oneStep as stepFrom } from './testing/tiny-dense.js';
import { type TrainOptions, trainLocal } from './train.js';
import { getFlatWeights, setFlatWeights } from './weights.js';

/**
 * SCAFFOLD's corrected step in trainLocal (Karimireddy et al. 2020): w' = w - lr (g - c_i + c),
 * g the data loss's gradient; the loop takes the correction c - c_i, flat.
 */

const native = loadNativeKernels();

afterAll(async () => {
  await initBackend('wasm');
});

const W = Float32Array.of(0.1, -0.2, 0.3, 0.4, 0.05, -0.05);
const CORRECTION = Float32Array.of(0.2, -0.1, 0.05, 0.3, -0.25, 0.15);
const x = EXAMPLE_X;
const label = 1;

/** One SGD step on (x, label) by hand: the cross-entropy gradient plus the correction. */
function handStep(correction: Float32Array, lr: number): number[] {
  const [k00, k01, k10, k11, b0, b1] = [...W] as [number, number, number, number, number, number];
  const [x0, x1] = x as [number, number];
  const z0 = x0 * k00 + x1 * k10 + b0;
  const z1 = x0 * k01 + x1 * k11 + b1;
  const p0 = Math.exp(z0) / (Math.exp(z0) + Math.exp(z1));
  const [d0, d1] = [p0, 1 - p0 - 1];
  const g = [x0 * d0, x0 * d1, x1 * d0, x1 * d1, d0, d1];
  return [...W].map((w, i) => w - lr * ((g[i] as number) + (correction[i] as number)));
}

const oneStep = (options: Partial<TrainOptions>) => stepFrom(W, label, options);

const loops: ['cpu' | 'openblas', 'tfjs' | 'native'][] = [
  ['cpu', 'tfjs'],
  ...(native.ok ? [['openblas', 'native'] as ['openblas', 'native']] : []),
];

describe.each(loops)('the SCAFFOLD correction on %s, %s loop', (backend, loop) => {
  it('one step equals the hand-computed step w - lr (g - c_i + c), and counts K = 1 step', async () => {
    await initBackend(backend, backend === 'openblas' ? { threads: 1 } : {});
    const { result, weights } = await oneStep({ loop, gradientCorrection: CORRECTION });
    expect(result.loop).toBe(loop);
    expect(result.steps).toBe(1);
    const expected = handStep(CORRECTION, 0.1);
    for (const [i, w] of weights.entries())
      expect(w, `weight ${i}`).toBeCloseTo(expected[i] as number, 6);
    // Not plain SGD's step: every weight moved by lr (c - c_i) besides.
    const plain = handStep(new Float32Array(6), 0.1);
    expect(Math.abs((weights[4] as number) - (plain[4] as number))).toBeCloseTo(0.025, 6);
  });

  it('a zero correction is plain SGD', async () => {
    await initBackend(backend, backend === 'openblas' ? { threads: 1 } : {});
    const plain = await oneStep({ loop });
    const zero = await oneStep({ loop, gradientCorrection: new Float32Array(6) });
    for (const [i, w] of zero.weights.entries())
      expect(w, `weight ${i}`).toBeCloseTo(plain.weights[i] as number, 7);
  });
});

describe.runIf(native.ok)('the SCAFFOLD correction: native loop against the tfjs loop', () => {
  it('trains the 2NN on real MNIST to the same weights, 2 epochs of 20 steps', async () => {
    const indices = (partitionIid(60_000, 300, 5)[0] ?? new Uint32Array()).subarray(0, 200);
    const data = toExamples(loadMnist('train'), indices);
    const start = getFlatWeights(createModel('fedavg-2nn', { seed: 3 }));
    const correction = Float32Array.from(start, (_, i) => 0.01 * Math.sin(i));
    const train = async (backend: 'cpu' | 'openblas', loop: 'tfjs' | 'native') => {
      await initBackend(backend, backend === 'openblas' ? { threads: 1 } : {});
      const model = createModel('fedavg-2nn', { seed: 3 });
      setFlatWeights(model, start);
      const result = await trainLocal(model, data, {
        epochs: 2,
        batchSize: 10,
        learningRate: 0.05,
        seed: 9,
        loop,
        gradientCorrection: correction,
      });
      expect(result.loop).toBe(loop);
      expect(result.steps).toBe(40);
      const weights = getFlatWeights(model);
      model.dispose();
      return weights;
    };
    const viaTfjs = await train('cpu', 'tfjs');
    const viaNative = await train('openblas', 'native');
    let largest = 0;
    let moved = 0;
    for (let i = 0; i < start.length; i++) {
      largest = Math.max(largest, Math.abs((viaTfjs[i] as number) - (viaNative[i] as number)));
      moved = Math.max(moved, Math.abs((viaTfjs[i] as number) - (start[i] as number)));
    }
    // Float rounding only: the correction alone moves weights by 40 x 0.05 x 0.01 = 0.02.
    expect(largest).toBeLessThan(1e-4);
    expect(moved).toBeGreaterThan(0.01);
  });
});

describe('trainLocal refuses a bad correction, training nothing', () => {
  const cases: [string, Partial<TrainOptions>, string][] = [
    [
      'a correction of another size',
      { gradientCorrection: CORRECTION.subarray(1) },
      ErrorCode.WEIGHTS_LENGTH_MISMATCH,
    ],
    [
      'a non-finite correction',
      { gradientCorrection: Float32Array.of(0, 0, Number.POSITIVE_INFINITY, 0, 0, 0) },
      ErrorCode.NON_FINITE_WEIGHTS,
    ],
    [
      'data-parallel workers',
      { gradientCorrection: CORRECTION, workers: 2 },
      ErrorCode.INVALID_ARGUMENT,
    ],
  ];
  it.each(cases)('%s', (_what, options, code) => expectRefused(W, label, options, code));
});
