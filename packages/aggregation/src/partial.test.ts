import { ErrorCode } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import { FedAvg } from './fedavg.js';
import { FedAdam } from './fedopt.js';
import { PartialRound, type RoundPartial } from './partial.js';
import type { Strategy, TrainUpdate } from './strategy.js';
import { expectCode, seededRandom } from './testing/fixtures.js';

const PARAMS = 257;

/** Updates with values over many magnitudes, so a float64 sum would depend on the order. */
function updates(count: number, seed: number): TrainUpdate[] {
  const random = seededRandom(seed);
  return Array.from({ length: count }, (_, k) => ({
    clientId: `c${k}`,
    numExamples: 1 + Math.floor(random() * 900),
    weights: Float32Array.from(
      { length: PARAMS },
      () => (random() - 0.5) * 10 ** (random() * 12 - 6),
    ),
    metrics: { loss: random() * 3, ...(k % 2 === 0 ? { accuracy: random() } : {}) },
  }));
}

const bytesOf = (weights: Float32Array | null) =>
  weights === null ? null : Buffer.from(weights.buffer, weights.byteOffset, weights.byteLength);

function partialOf(part: readonly TrainUpdate[]): RoundPartial {
  const partial = new PartialRound(PARAMS);
  for (const update of part) partial.add(update);
  return partial.toPartial();
}

const global = new Float32Array(PARAMS).fill(0.25);
const strategies: Array<[string, () => Strategy]> = [
  ['fedavg', () => new FedAvg({ arithmetic: 'exact' })],
  // A server optimiser steps from the float64 mean: the split must not change it either.
  [
    'fedadam',
    () =>
      new FedAdam({
        serverLearningRate: 0.1,
        beta1: 0.9,
        beta2: 0.99,
        tau: 1e-9,
        arithmetic: 'exact',
      }),
  ],
];

describe.each(strategies)('addPartial (%s, exact)', (_name, make) => {
  const all = updates(9, 11);

  it('equals folding the same updates directly, bytes equal, for any split', () => {
    const direct = make().beginRound(1, global);
    for (const update of all) direct.add(update);
    const expected = direct.finish();

    // Here: the first three; two other processes: four and two, merged in either order.
    for (const order of [
      [1, 2],
      [2, 1],
    ]) {
      const split = [all.slice(3, 7), all.slice(7)];
      const round = make().beginRound(1, global);
      for (const update of all.slice(0, 3)) round.add(update);
      for (const k of order) round.addPartial?.(partialOf(split[k - 1] as TrainUpdate[]));
      const result = round.finish();
      expect(bytesOf(result.weights)).toEqual(bytesOf(expected.weights));
      expect(result.numUpdates).toBe(all.length);
      expect(result.numExamples).toBe(expected.numExamples);
      // Metrics are example-weighted means either way, up to float64 rounding.
      expect(result.metrics['loss']).toBeCloseTo(expected.metrics['loss'] as number, 12);
      expect(result.metrics['accuracy']).toBeCloseTo(expected.metrics['accuracy'] as number, 12);
    }
  });

  it('a round of partials only (nothing arrived at the owner) is the same too', () => {
    const direct = make().beginRound(1, global);
    for (const update of all) direct.add(update);
    const round = make().beginRound(1, global);
    round.addPartial?.(partialOf(all.slice(0, 5)));
    round.addPartial?.(partialOf(all.slice(5)));
    expect(bytesOf(round.finish().weights)).toEqual(bytesOf(direct.finish().weights));
  });

  it('refuses a bad partial with its code and leaves the round unchanged', () => {
    const good = partialOf(all.slice(3));
    const other = new PartialRound(PARAMS + 1);
    other.add({ ...(all[0] as TrainUpdate), weights: new Float32Array(PARAMS + 1) });
    const truncated = good.sum.slice(0, good.sum.length - 4);
    const cases: Array<[RoundPartial, string]> = [
      [{ ...good, sum: truncated }, ErrorCode.MALFORMED_FRAME],
      [other.toPartial(), ErrorCode.WEIGHTS_LENGTH_MISMATCH],
      [{ ...good, numUpdates: good.numUpdates + 1 }, ErrorCode.INVALID_ARGUMENT],
      // Without metrics, so that only the count check can refuse it.
      [{ ...good, numExamples: good.numExamples - 1, metrics: {} }, ErrorCode.INVALID_ARGUMENT],
      [{ ...good, numExamples: good.numExamples + 1, metrics: {} }, ErrorCode.INVALID_ARGUMENT],
      [{ ...good, numUpdates: 0 }, ErrorCode.INVALID_ARGUMENT],
      [{ ...good, metrics: { loss: { mean: Number.NaN, weight: 1 } } }, ErrorCode.INVALID_ARGUMENT],
      [
        { ...good, metrics: { loss: { mean: 1, weight: good.numExamples + 1 } } },
        ErrorCode.INVALID_ARGUMENT,
      ],
    ];
    const reference = make().beginRound(1, global);
    for (const update of all.slice(0, 3)) reference.add(update);
    const expected = reference.finish();

    const round = make().beginRound(1, global);
    for (const update of all.slice(0, 3)) round.add(update);
    for (const [partial, code] of cases)
      expectCode(() => round.addPartial?.(partial), code, 'partial');
    expect(round.numUpdates).toBe(3);
    const result = round.finish();
    expect(bytesOf(result.weights)).toEqual(bytesOf(expected.weights));
    expect(result.metrics).toEqual(expected.metrics);
    expect(result.numExamples).toBe(expected.numExamples);
  });
});

describe('addPartial refusals that are not about the partial', () => {
  it('a float64-sequential round refuses partials (CONFLICT): its sum depends on the split', () => {
    const round = new FedAvg().beginRound(1, global);
    expectCode(() => round.addPartial?.(partialOf(updates(2, 3))), ErrorCode.CONFLICT, 'partial');
  });

  it('a finished round refuses one', () => {
    const round = new FedAvg({ arithmetic: 'exact' }).beginRound(1, global);
    round.finish();
    expectCode(() => round.addPartial?.(partialOf(updates(2, 3))), ErrorCode.CONFLICT);
  });

  it('PartialRound checks each update as an aggregator does, and folds nothing it refuses', () => {
    const partial = new PartialRound(PARAMS);
    const [first] = updates(1, 5) as [TrainUpdate];
    expectCode(
      () => partial.add({ ...first, weights: new Float32Array(PARAMS - 1) }),
      ErrorCode.WEIGHTS_LENGTH_MISMATCH,
      'weights',
    );
    const bad = first.weights.slice();
    bad[7] = Number.POSITIVE_INFINITY;
    expectCode(() => partial.add({ ...first, weights: bad }), ErrorCode.NON_FINITE_WEIGHTS);
    expectCode(() => partial.add({ ...first, numExamples: 2.5 }), ErrorCode.INVALID_ARGUMENT);
    expect(partial.numUpdates).toBe(0);
  });
});
