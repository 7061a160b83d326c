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
 * FedProx's proximal term in trainLocal (Li et al. 2020): the step is
 * w' = w - lr (g + mu (w - anchor)), g the data loss's gradient.
 */

const native = loadNativeKernels();

afterAll(async () => {
  await initBackend('wasm');
});

const W = Float32Array.of(0.1, -0.2, 0.3, 0.4, 0.05, -0.05);
const ANCHOR = Float32Array.of(0.5, 0.1, -0.3, 0.2, 0, 0.25);
const x = EXAMPLE_X;
const label: number = 0;

/**
 * One SGD step on the one example (x, label) by hand: z = x K + b, p = softmax(z), the
 * cross-entropy gradient dz = p - onehot(label), dK[i][j] = x_i dz_j, db = dz; plus the
 * proximal gradient mu (w - anchor).
 */
function handStep(mu: number, lr: number): { weights: number[]; loss: number } {
  const [k00, k01, k10, k11, b0, b1] = [...W] as [number, number, number, number, number, number];
  const [x0, x1] = x as [number, number];
  const z0 = x0 * k00 + x1 * k10 + b0;
  const z1 = x0 * k01 + x1 * k11 + b1;
  const p0 = Math.exp(z0) / (Math.exp(z0) + Math.exp(z1));
  const p1 = 1 - p0;
  const [d0, d1] = [p0 - (label === 0 ? 1 : 0), p1 - (label === 1 ? 1 : 0)];
  const g = [x0 * d0, x0 * d1, x1 * d0, x1 * d1, d0, d1];
  return {
    weights: [...W].map((w, i) => w - lr * ((g[i] as number) + mu * (w - (ANCHOR[i] as number)))),
    loss: -Math.log(label === 0 ? p0 : p1),
  };
}

const oneStep = (options: Partial<TrainOptions>) => stepFrom(W, label, options);

const loops: ['cpu' | 'openblas', 'tfjs' | 'native'][] = [
  ['cpu', 'tfjs'],
  ...(native.ok ? [['openblas', 'native'] as ['openblas', 'native']] : []),
];

describe.each(loops)('the proximal term on %s, %s loop', (backend, loop) => {
  it('one step equals the hand-computed step w - lr (g + mu (w - anchor)); the loss is the data loss', async () => {
    await initBackend(backend, backend === 'openblas' ? { threads: 1 } : {});
    const { result, weights } = await oneStep({ loop, proximal: { mu: 0.5, anchor: ANCHOR } });
    expect(result.loop).toBe(loop);
    const expected = handStep(0.5, 0.1);
    for (const [i, w] of weights.entries())
      expect(w, `weight ${i}`).toBeCloseTo(expected.weights[i] as number, 6);
    // Not FedAvg's step: the term moved every weight by lr mu (w - anchor), up to 0.02 here.
    const plain = handStep(0, 0.1);
    expect(
      Math.max(...weights.map((w, i) => Math.abs(w - (plain.weights[i] as number)))),
    ).toBeGreaterThan(0.01);
    expect(result.loss).toBeCloseTo(expected.loss, 6);
  });

  it('mu = 0 is plain SGD, bit for bit', async () => {
    await initBackend(backend, backend === 'openblas' ? { threads: 1 } : {});
    const plain = await oneStep({ loop });
    const zero = await oneStep({ loop, proximal: { mu: 0, anchor: ANCHOR } });
    expect([...zero.weights]).toEqual([...plain.weights]);
  });
});

/** Distance between two flat weight vectors. */
function distance(a: Float32Array, b: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += ((a[i] as number) - (b[i] as number)) ** 2;
  return Math.sqrt(sum);
}

describe('the proximal term on real MNIST', () => {
  it('keeps the trained weights closer to the global model, the more the larger mu', async () => {
    await initBackend('cpu');
    const indices = (partitionIid(60_000, 300, 3)[0] ?? new Uint32Array()).subarray(0, 200);
    const data = toExamples(loadMnist('train'), indices);
    const model = createModel('fedavg-2nn', { seed: 2 });
    const global = getFlatWeights(model);
    const drift: number[] = [];
    for (const mu of [0, 0.1, 1]) {
      setFlatWeights(model, global);
      await trainLocal(model, data, {
        epochs: 2,
        batchSize: 10,
        learningRate: 0.1,
        seed: 4,
        proximal: { mu, anchor: global },
      });
      drift.push(distance(getFlatWeights(model), global));
    }
    model.dispose();
    const [none = 0, small = 0, large = 0] = drift;
    expect(small).toBeLessThan(none);
    // 40 steps at lr mu = 0.1 contract the drift a lot: well under half of plain SGD's.
    expect(large).toBeLessThan(0.5 * none);
  });
});

describe('trainLocal refuses a bad proximal term, training nothing', () => {
  const cases: [string, Partial<TrainOptions>, string][] = [
    ['a negative mu', { proximal: { mu: -1, anchor: ANCHOR } }, ErrorCode.INVALID_ARGUMENT],
    ['a NaN mu', { proximal: { mu: Number.NaN, anchor: ANCHOR } }, ErrorCode.INVALID_ARGUMENT],
    [
      'an anchor of another size',
      { proximal: { mu: 0.1, anchor: ANCHOR.subarray(1) } },
      ErrorCode.WEIGHTS_LENGTH_MISMATCH,
    ],
    [
      'a non-finite anchor',
      { proximal: { mu: 0.1, anchor: Float32Array.of(0, 0, 0, Number.NaN, 0, 0) } },
      ErrorCode.NON_FINITE_WEIGHTS,
    ],
    [
      'data-parallel workers',
      { proximal: { mu: 0.1, anchor: ANCHOR }, workers: 2 },
      ErrorCode.INVALID_ARGUMENT,
    ],
  ];
  it.each(cases)('%s', (_what, options, code) => expectRefused(W, label, options, code));
});
