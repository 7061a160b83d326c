import { type ClientTrainSettings, createStrategy, type Strategy } from '@tessera/aggregation';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import { trainGroups } from './train-settings.js';

/** FedAvg with client settings of the test's choosing. */
function configuring(configure: Strategy['configureTrain']): Strategy {
  const strategy = createStrategy('fedavg');
  return Object.assign(Object.create(strategy) as Strategy, {
    name: 'test-rule',
    configureTrain: configure,
  });
}

describe('trainGroups (the strategy field of an attempt’s train instructions)', () => {
  it('a strategy without client settings: one instruction for all, without the field', () => {
    expect(trainGroups(createStrategy('fedavg'), 1, ['a', 'b'])).toEqual([
      { clientIds: ['a', 'b'], strategy: undefined },
    ]);
  });

  it('fedprox: one instruction for all, carrying its name and proximalMu', () => {
    expect(trainGroups(createStrategy('fedprox', { mu: 0.2 }), 4, ['a', 'b'])).toEqual([
      { clientIds: ['a', 'b'], strategy: { name: 'fedprox', settings: { proximalMu: 0.2 } } },
    ]);
  });

  it('per-client settings: clients with equal settings share an instruction; left out or empty gets none', () => {
    const strategy = configuring(
      () =>
        new Map<string, ClientTrainSettings>([
          ['a', { clip: 1 }],
          ['b', { clip: 2 }],
          ['c', { clip: 1 }],
          ['d', {}],
        ]),
    );
    expect(trainGroups(strategy, 1, ['a', 'b', 'c', 'd', 'e'])).toEqual([
      { clientIds: ['a', 'c'], strategy: { name: 'test-rule', settings: { clip: 1 } } },
      { clientIds: ['b'], strategy: { name: 'test-rule', settings: { clip: 2 } } },
      { clientIds: ['d', 'e'], strategy: undefined },
    ]);
  });

  it('refuses settings the wire cannot carry, naming the setting', () => {
    const cases: [Record<string, number | boolean | string>, string][] = [
      [{ mu: Number.NaN }, 'strategy.settings.mu'],
      [{ note: 'x'.repeat(65) }, 'strategy.settings.note'],
      [Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`s${i}`, i])), 'strategy.settings'],
    ];
    for (const [settings, field] of cases) {
      let error: unknown;
      try {
        trainGroups(
          configuring(() => settings),
          1,
          ['a'],
        );
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(TesseraError);
      expect((error as TesseraError).code).toBe(ErrorCode.INTERNAL);
      expect((error as TesseraError).data?.['field']).toBe(field);
    }
  });
});
