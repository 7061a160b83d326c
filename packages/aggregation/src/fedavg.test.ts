import { ErrorCode, TesseraError } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import { createStrategy, FedAvg } from './index.js';

const global = new Float32Array([0, 0, 0]);

function update(clientId: string, numExamples: number, weights: number[], loss = 1) {
  return { clientId, numExamples, weights: new Float32Array(weights), metrics: { loss } };
}

describe('FedAvg', () => {
  it('weights each update by its examples over those that replied (hand-computed)', () => {
    const round = new FedAvg().beginRound(1, global);
    round.add(update('a', 100, [1, 2, 3], 0.5));
    round.add(update('b', 300, [5, 6, -1], 0.1));
    const result = round.finish();
    // m = 400; w = 100/400 * [1,2,3] + 300/400 * [5,6,-1] = [4, 5, 0]
    expect([...(result.weights ?? [])]).toEqual([4, 5, 0]);
    // loss = (100*0.5 + 300*0.1) / 400 = 0.2
    expect(result.metrics['loss']).toBeCloseTo(0.2, 12);
    expect(result.numExamples).toBe(400);
    expect(result.numUpdates).toBe(2);
  });

  it('is not the unweighted mean when sizes differ', () => {
    const round = new FedAvg().beginRound(1, new Float32Array(1));
    round.add(update('a', 1, [0]));
    round.add(update('b', 3, [1]));
    expect(round.finish().weights?.[0]).toBe(0.75);
  });

  it('keeps the previous model when nobody replied', () => {
    const result = new FedAvg().beginRound(1, global).finish();
    expect(result.weights).toBeNull();
    expect(result.numUpdates).toBe(0);
  });

  it('averages in float64 and rounds once to float32', () => {
    const round = new FedAvg().beginRound(1, new Float32Array(1));
    const third = Math.fround(1 / 3);
    for (let k = 0; k < 1000; k++) round.add(update(`c${k}`, 7, [third]));
    expect(round.finish().weights?.[0]).toBe(third);
  });

  it('is deterministic for a given arrival order', () => {
    const run = () => {
      const round = new FedAvg().beginRound(1, new Float32Array(4));
      for (let k = 0; k < 25; k++) {
        round.add(update(`c${k}`, 10 + k, [Math.sin(k), Math.cos(k), k / 7, -k / 3]));
      }
      return round.finish().weights;
    };
    expect(run()).toEqual(run());
  });

  it('refuses an update of the wrong length', () => {
    const round = new FedAvg().beginRound(1, global);
    expect(() => round.add(update('a', 1, [1, 2]))).toThrow(TesseraError);
  });

  it('aggregates federated evaluation weighted by examples', () => {
    const result = new FedAvg().aggregateEvaluation([
      { clientId: 'a', numExamples: 10, loss: 1, accuracy: 0.5 },
      { clientId: 'b', numExamples: 30, loss: 3, accuracy: 0.9 },
    ]);
    expect(result).toEqual({ loss: 2.5, accuracy: expect.closeTo(0.8, 12), numExamples: 40 });
    expect(new FedAvg().aggregateEvaluation([])).toBeNull();
  });
});

describe('createStrategy', () => {
  it('builds fedavg and refuses unknown names and options', () => {
    expect(createStrategy('fedavg').name).toBe('fedavg');
    expect(() => createStrategy('fednova')).toThrow(
      /unknown strategy "fednova"; available: fedavg/,
    );
    try {
      createStrategy('fedavg', { mu: 1 });
    } catch (error) {
      expect((error as TesseraError).code).toBe(ErrorCode.INVALID_ARGUMENT);
    }
  });
});

describe('metric means cannot overflow', () => {
  it('averages train metrics of 1e308 (and -1e308) to finite example-weighted means', () => {
    const round = new FedAvg().beginRound(1, new Float32Array(1));
    round.add({
      clientId: 'a',
      numExamples: 1e9,
      weights: new Float32Array([1]),
      metrics: { loss: 1e308, x: -1e308 },
    });
    round.add({
      clientId: 'b',
      numExamples: 1e9,
      weights: new Float32Array([1]),
      metrics: { loss: 1e308, x: 1e308 },
    });
    round.add({
      clientId: 'c',
      numExamples: 2e9,
      weights: new Float32Array([1]),
      metrics: { loss: 1e308, x: 1e308 },
    });
    const { metrics, numExamples } = round.finish();
    expect(metrics['loss']).toBeCloseTo(1e308, -295);
    expect(Number.isFinite(metrics['loss'])).toBe(true);
    // (-1 * 1 + 1 * 1 + 1 * 2) / 4 * 1e308 = 0.5e308
    expect((metrics['x'] as number) / 1e308).toBeCloseTo(0.5, 12);
    expect(numExamples).toBe(4e9);
  });

  it('keeps the largest finite double finite, and one huge value cannot erase the others', () => {
    const round = new FedAvg().beginRound(1, new Float32Array(1));
    for (const [k, loss] of [Number.MAX_VALUE, Number.MAX_VALUE, Number.MAX_VALUE].entries())
      round.add({
        clientId: `c${k}`,
        numExamples: 3,
        weights: new Float32Array([0]),
        metrics: { loss },
      });
    expect(round.finish().metrics['loss']).toBe(Number.MAX_VALUE);
    const mixed = new FedAvg().beginRound(1, new Float32Array(1));
    mixed.add({
      clientId: 'a',
      numExamples: 1,
      weights: new Float32Array([0]),
      metrics: { loss: 1e308 },
    });
    mixed.add({
      clientId: 'b',
      numExamples: 1,
      weights: new Float32Array([0]),
      metrics: { loss: -1e308 },
    });
    expect(mixed.finish().metrics['loss']).toBe(0);
  });

  it('aggregates evaluation replies of loss 1e308 and 2^31 examples each', () => {
    const result = new FedAvg().aggregateEvaluation([
      { clientId: 'a', numExamples: 2 ** 31, loss: 1e308, accuracy: 1 },
      { clientId: 'b', numExamples: 2 ** 31, loss: 1e308, accuracy: 0 },
      { clientId: 'c', numExamples: 2 ** 31, loss: -1e308, accuracy: 1 },
    ]);
    expect(result?.numExamples).toBe(3 * 2 ** 31);
    expect(Number.isFinite(result?.loss)).toBe(true);
    expect((result?.loss as number) / 1e308).toBeCloseTo(1 / 3, 12);
    expect(result?.accuracy).toBeCloseTo(2 / 3, 12);
  });

  it('still weights metrics by examples exactly where the old sums were exact', () => {
    const round = new FedAvg().beginRound(1, new Float32Array(1));
    round.add(update('a', 1, [0], 4));
    round.add(update('b', 3, [0], 8));
    expect(round.finish().metrics['loss']).toBe(7);
  });

  it('refuses an update weight above 2^53 (so the float64 weight sums cannot overflow)', () => {
    const round = new FedAvg().beginRound(1, new Float32Array(1));
    expect(() =>
      round.add({
        clientId: 'a',
        numExamples: 1e300,
        weights: new Float32Array([3e38]),
        metrics: {},
      }),
    ).toThrow(/up to 2\^53/);
    expect(round.numUpdates).toBe(0);
  });
});
