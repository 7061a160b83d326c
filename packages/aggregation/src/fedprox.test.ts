import { ErrorCode, TesseraError } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import { createStrategy, parseStrategyOptions } from './index.js';

const global = Float32Array.of(1, 2);
const updates = [
  { clientId: 'a', numExamples: 1, weights: Float32Array.of(2, 2), metrics: { loss: 1 } },
  { clientId: 'b', numExamples: 3, weights: Float32Array.of(6, -2), metrics: { loss: 3 } },
];

function aggregate(name: string, options: Record<string, unknown> = {}) {
  const round = createStrategy(name, options).beginRound(1, global);
  for (const update of updates) round.add(update);
  return round.finish();
}

describe('fedprox', () => {
  it("aggregates as FedAvg: (1 x (2, 2) + 3 x (6, -2)) / 4 = (5, -1), bit for bit FedAvg's", () => {
    const result = aggregate('fedprox', { mu: 0.3 });
    expect([...(result.weights ?? [])]).toEqual([5, -1]);
    expect(result.metrics['loss']).toBe(2.5);
    expect(result).toEqual(aggregate('fedavg'));
  });

  it('asks every selected client for the proximal term with its mu (default 0.01)', () => {
    expect(createStrategy('fedprox', { mu: 0.25 }).configureTrain?.(3, ['a', 'b'])).toEqual({
      proximalMu: 0.25,
    });
    expect(createStrategy('fedprox').configureTrain?.(1, ['a'])).toEqual({ proximalMu: 0.01 });
    expect(createStrategy('fedavg').configureTrain).toBeUndefined();
  });

  it('refuses a mu below 0, above 100, not a number, or an unknown option, naming it', () => {
    for (const mu of [-0.1, 100.5, Number.NaN, '0.1', null]) {
      let error: unknown;
      try {
        parseStrategyOptions('fedprox', { mu });
      } catch (caught) {
        error = caught;
      }
      expect(error, String(mu)).toBeInstanceOf(TesseraError);
      expect((error as TesseraError).code).toBe(ErrorCode.INVALID_ARGUMENT);
      expect((error as TesseraError).data?.['field']).toBe('strategyOptions.mu');
    }
    expect(() => parseStrategyOptions('fedprox', { mu: 0.1, lambda: 1 })).toThrow(/takes mu/);
    expect(parseStrategyOptions('fedprox', { mu: 0 })).toEqual({
      mu: 0,
      arithmetic: 'float64-sequential',
    });
    expect(parseStrategyOptions('fedprox', { mu: 100 })).toEqual({
      mu: 100,
      arithmetic: 'float64-sequential',
    });
  });
});
