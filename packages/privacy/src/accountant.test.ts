import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Accountant, noiseMultiplierFor } from './accountant.js';
import { expectCode } from './testing/fixtures.js';

const step = { samplingRate: 0.01, noiseMultiplier: 1.1 };

describe('Accountant', () => {
  it('starts at epsilon 0 and is immutable: withSteps returns a new accountant', () => {
    const empty = Accountant.empty();
    expect(empty.steps).toBe(0);
    expect(empty.epsilon(1e-5).epsilon).toBe(0);
    const after = empty.withSteps(step, 10);
    expect(after.steps).toBe(10);
    expect(empty.steps).toBe(0);
    expect(after.epsilon(1e-5).epsilon).toBeGreaterThan(0);
    expect(after.withSteps(step, 0)).toBe(after);
  });

  it('round-trips through JSON exactly, mixed steps included', () => {
    const accountant = Accountant.empty()
      .withSteps(step, 100)
      .withSteps({ samplingRate: 1, noiseMultiplier: 3 }, 2)
      .withSteps(step, 5);
    const json = JSON.parse(JSON.stringify(accountant));
    expect(json).toEqual({
      version: 1,
      orders: [...accountant.orders],
      steps: [
        { ...step, count: 105 },
        { samplingRate: 1, noiseMultiplier: 3, count: 2 },
      ],
    });
    const back = Accountant.fromJSON(json);
    expect([...back.rdp()]).toEqual([...accountant.rdp()]);
    expect(back.epsilon(1e-6)).toEqual(accountant.epsilon(1e-6));
  });

  it('refuses state that is not its own, naming the field', () => {
    const good = Accountant.empty().withSteps(step, 3).toJSON();
    for (const bad of [
      null,
      'x',
      { ...good, version: 2 },
      { ...good, orders: 'all' },
      { ...good, orders: [0.5] },
      { ...good, steps: {} },
      { ...good, steps: [{ samplingRate: 2, noiseMultiplier: 1, count: 1 }] },
      { ...good, steps: [{ samplingRate: 0.1, noiseMultiplier: 0, count: 1 }] },
      { ...good, steps: [{ samplingRate: 0.1, noiseMultiplier: 1, count: -1 }] },
      { ...good, steps: [{ samplingRate: 0.1, noiseMultiplier: 1, count: 1.5 }] },
      { ...good, steps: [{ samplingRate: '0.1', noiseMultiplier: 1, count: 1 }] },
    ]) {
      expectCode(() => Accountant.fromJSON(bad), 'INVALID_ARGUMENT', 'accountant');
    }
  });

  it('wouldExceed is true exactly when the next step takes epsilon past the budget', () => {
    let accountant = Accountant.empty();
    const budget = { epsilon: 1, delta: 1e-5 };
    let rounds = 0;
    while (!accountant.wouldExceed(budget, step)) {
      accountant = accountant.withSteps(step);
      rounds++;
      expect(accountant.epsilon(budget.delta).epsilon).toBeLessThanOrEqual(budget.epsilon);
    }
    expect(rounds).toBeGreaterThan(0);
    expect(accountant.withSteps(step).epsilon(budget.delta).epsilon).toBeGreaterThan(
      budget.epsilon,
    );
    // Several steps ahead at once, for an engine that checks a whole epoch.
    expect(Accountant.empty().wouldExceed(budget, step, rounds)).toBe(false);
    expect(Accountant.empty().wouldExceed(budget, step, rounds + 1)).toBe(true);
  });

  it('refuses bad steps, counts and budgets', () => {
    const accountant = Accountant.empty();
    expectCode(
      () => accountant.withSteps({ samplingRate: 1.2, noiseMultiplier: 1 }),
      'INVALID_ARGUMENT',
      'samplingRate',
    );
    expectCode(
      () => accountant.withSteps({ samplingRate: 0.1, noiseMultiplier: -1 }),
      'INVALID_ARGUMENT',
      'noiseMultiplier',
    );
    expectCode(() => accountant.withSteps(step, -1), 'INVALID_ARGUMENT', 'count');
    expectCode(() => accountant.withSteps(step, 0.5), 'INVALID_ARGUMENT', 'count');
    expectCode(
      () => accountant.wouldExceed({ epsilon: 0, delta: 1e-5 }, step),
      'INVALID_ARGUMENT',
      'budget.epsilon',
    );
    expectCode(
      () => accountant.wouldExceed({ epsilon: 1, delta: 1 }, step),
      'INVALID_ARGUMENT',
      'budget.delta',
    );
    expectCode(() => Accountant.empty([]), 'INVALID_ARGUMENT', 'orders');
  });
});

describe('noiseMultiplierFor', () => {
  it('finds the sigma of the MNIST example from its epsilon (the inverse of the accountant)', () => {
    // 14062 steps at q = 256/60000 with sigma 1.12 spend 2.5215 at delta 1e-5 (rdp.test.ts).
    const sigma = noiseMultiplierFor({
      epsilon: 2.521465890911382,
      delta: 1e-5,
      samplingRate: 256 / 60000,
      steps: 14062,
      tolerance: 1e-4,
    });
    expect(Math.abs(sigma - 1.12) / 1.12).toBeLessThan(2e-4);
  });

  it('always meets the budget, and a sigma below it by the tolerance does not (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.3, max: 8, noNaN: true }),
        fc.double({ min: 1e-3, max: 0.3, noNaN: true }),
        fc.integer({ min: 1, max: 2000 }),
        (epsilon, samplingRate, steps) => {
          const tolerance = 1e-3;
          const sigma = noiseMultiplierFor({
            epsilon,
            delta: 1e-5,
            samplingRate,
            steps,
            tolerance,
          });
          const spent = (s: number) =>
            Accountant.empty().withSteps({ samplingRate, noiseMultiplier: s }, steps).epsilon(1e-5)
              .epsilon;
          expect(spent(sigma)).toBeLessThanOrEqual(epsilon);
          expect(spent(sigma * (1 - 2 * tolerance))).toBeGreaterThan(epsilon);
        },
      ),
      { numRuns: 15 },
    );
  });

  it('refuses what has no answer or makes no sense', () => {
    const base = { epsilon: 1, delta: 1e-5, samplingRate: 0.01, steps: 100 };
    expectCode(
      () => noiseMultiplierFor({ ...base, epsilon: 0 }),
      'INVALID_ARGUMENT',
      'budget.epsilon',
    );
    expectCode(() => noiseMultiplierFor({ ...base, steps: 0 }), 'INVALID_ARGUMENT', 'steps');
    expectCode(
      () => noiseMultiplierFor({ ...base, samplingRate: 0 }),
      'INVALID_ARGUMENT',
      'samplingRate',
    );
    expectCode(
      () => noiseMultiplierFor({ ...base, tolerance: 0 }),
      'INVALID_ARGUMENT',
      'tolerance',
    );
    // epsilon below what even huge noise gives at this delta: (log(1/delta)) needs sigma > 1e6.
    expectCode(
      () => noiseMultiplierFor({ ...base, epsilon: 1e-9, samplingRate: 1, steps: 1_000_000 }),
      'INVALID_ARGUMENT',
      'epsilon',
    );
  });
});
