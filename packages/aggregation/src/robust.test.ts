import { ErrorCode, type TesseraError } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import {
  createStrategy,
  FedAvg,
  FedAvgM,
  FedMedian,
  parseStrategyOptions,
  STRATEGY_NAMES,
  STRATEGY_OPTIONS,
  TrimmedMean,
} from './index.js';

function update(clientId: string, numExamples: number, weights: number[]) {
  return { clientId, numExamples, weights: new Float32Array(weights), metrics: { loss: 1 } };
}

function aggregate(
  strategy: FedMedian | TrimmedMean | FedAvgM | FedAvg,
  rows: number[][],
  global = [0, 0],
) {
  const round = strategy.beginRound(1, new Float32Array(global));
  for (const [k, row] of rows.entries()) round.add(update(`c${k}`, 10 * (k + 1), row));
  return [...(round.finish().weights ?? [])];
}

describe('FedMedian', () => {
  it('takes the coordinate-wise median, ignoring example counts (hand-computed)', () => {
    expect(
      aggregate(new FedMedian(), [
        [1, 100],
        [2, -5],
        [50, 0],
      ]),
    ).toEqual([2, 0]);
    // Even count: mean of the two middle values.
    expect(
      aggregate(new FedMedian(), [
        [1, 4],
        [3, 8],
        [10, 0],
        [-2, 2],
      ]),
    ).toEqual([2, 3]);
  });

  it('does not depend on arrival order, and one outlier cannot move it far', () => {
    const rows = [
      [0.5, 1],
      [0.25, 2],
      [1e6, -1e6],
      [0.75, 3],
      [0.5, 2.5],
    ];
    const forward = aggregate(new FedMedian(), rows);
    expect(aggregate(new FedMedian(), [...rows].reverse())).toEqual(forward);
    expect(forward).toEqual([0.5, 2]);
  });
});

describe('TrimmedMean', () => {
  it('drops floor(beta K) values at each end per coordinate (hand-computed)', () => {
    // K = 5, beta = 0.2: drop 1 at each end. Coordinate 0: 1,2,3,4,100 -> mean(2,3,4) = 3.
    const rows = [
      [100, 5],
      [2, 1],
      [3, 2],
      [1, 3],
      [4, 4],
    ];
    expect(aggregate(new TrimmedMean(0.2), rows)).toEqual([3, 3]);
    // beta = 0 is the plain unweighted mean.
    expect(
      aggregate(new TrimmedMean(0), [
        [1, 2],
        [3, 6],
      ]),
    ).toEqual([2, 4]);
  });

  it('refuses beta outside [0, 0.5)', () => {
    expect(() => new TrimmedMean(0.5)).toThrow(/beta must be in/);
    expect(() => createStrategy('trimmed-mean', { beta: -0.1 })).toThrow(/beta/);
  });
});

describe('FedAvgM', () => {
  it('with momentum 0 and eta 1 is FedAvg', () => {
    const rows = [
      [1, 2],
      [5, -2],
      [0.5, 0.25],
    ];
    expect(aggregate(new FedAvgM({ serverLearningRate: 1, momentum: 0 }), rows, [3, 3])).toEqual(
      aggregate(new FedAvg(), rows, [3, 3]),
    );
  });

  it('accumulates the server velocity across rounds (hand-computed)', () => {
    const strategy = new FedAvgM({ serverLearningRate: 1, momentum: 0.5 });
    // Round 1: global 0, average 1 -> d = -1, v = -1, w = 1.
    const first = strategy.beginRound(1, new Float32Array([0]));
    first.add(update('a', 1, [1]));
    const w1 = first.finish().weights;
    expect([...(w1 ?? [])]).toEqual([1]);
    // Round 2: global 1, average 2 -> d = -1, v = 0.5 * -1 - 1 = -1.5, w = 2.5.
    const second = strategy.beginRound(2, new Float32Array([1]));
    second.add(update('a', 1, [2]));
    expect([...(second.finish().weights ?? [])]).toEqual([2.5]);
  });
});

describe('the strategy registry', () => {
  it('lists every strategy and builds each with its defaults', () => {
    expect(STRATEGY_NAMES).toEqual([
      'fedavg',
      'fedavgm',
      'fedprox',
      'scaffold',
      'fedmedian',
      'trimmed-mean',
      'fedadam',
      'fedyogi',
      'fedadagrad',
      'krum',
      'multi-krum',
      'bulyan',
      'centered-clipping',
      'norm-bounded-fedavg',
      'dp-fedavg',
    ]);
    // dp-fedavg has no default noise or clipping: a privacy parameter is chosen, never implied.
    for (const name of STRATEGY_NAMES.filter((n) => n !== 'dp-fedavg')) {
      expect(createStrategy(name).name).toBe(name);
    }
    expect(() => createStrategy('dp-fedavg')).toThrow(
      expect.objectContaining({
        code: ErrorCode.INVALID_ARGUMENT,
        data: { field: 'strategyOptions.noiseMultiplier' },
      }),
    );
    // Options without `arithmetic` are a run recorded before it existed: float64, as it ran.
    expect(createStrategy('fedavgm', { momentum: 0 }).options).toEqual({
      serverLearningRate: 1,
      momentum: 0,
      arithmetic: 'float64-sequential',
    });
  });

  it('refuses unknown options and non-numeric values, naming the field', () => {
    for (const [name, options, field] of [
      ['fedmedian', { beta: 1 }, 'strategyOptions'],
      ['fedavgm', { momentum: 'high' }, 'strategyOptions.momentum'],
      ['trimmed-mean', { gamma: 1 }, 'strategyOptions'],
    ] as const) {
      try {
        createStrategy(name, options);
        expect.unreachable();
      } catch (error) {
        expect((error as TesseraError).code).toBe(ErrorCode.INVALID_ARGUMENT);
        expect((error as TesseraError).data?.['field']).toBe(field);
      }
    }
  });
});

describe('strategy option schemas', () => {
  it('parse with defaults filled in, and refuse what the strategy cannot build, naming the field', () => {
    expect(parseStrategyOptions('trimmed-mean', {})).toEqual({ beta: 0.1 });
    expect(parseStrategyOptions('fedavgm', { momentum: 0 })).toEqual({
      serverLearningRate: 1,
      momentum: 0,
      arithmetic: 'float64-sequential',
    });
    for (const [name, options, field] of [
      ['trimmed-mean', { beta: 0.9 }, 'strategyOptions.beta'],
      ['fedavgm', { momentum: 1 }, 'strategyOptions.momentum'],
      [
        'fedavgm',
        { serverLearningRate: Number.POSITIVE_INFINITY },
        'strategyOptions.serverLearningRate',
      ],
      ['fedavg', { mu: 1 }, 'strategyOptions'],
    ] as const) {
      expect(() => parseStrategyOptions(name, options)).toThrow(
        expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT, data: { field } }),
      );
      // The published schema (the one runs are created with) refuses it too.
      expect(STRATEGY_OPTIONS[name]?.safeParse(options).success).toBe(false);
    }
    // What a run stores (the parsed options) builds the strategy again, unchanged.
    const given = (name: string) =>
      name === 'dp-fedavg' ? { noiseMultiplier: 1, clipNorm: 1, expectedClientsPerRound: 10 } : {};
    for (const name of STRATEGY_NAMES) {
      const parsed = parseStrategyOptions(name, given(name));
      expect(parseStrategyOptions(name, parsed)).toEqual(parsed);
      expect(createStrategy(name, parsed).name).toBe(name);
    }
  });
});
