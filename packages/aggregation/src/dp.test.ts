import { Accountant, l2Norm, SeededGaussianNoise } from '@tessera/privacy';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  createStrategy,
  type DpFedAvg,
  decodeStrategyState,
  encodeStrategyState,
  STRATEGY_OPTIONS,
  type Strategy,
  type TrainUpdate,
  vectorNoiseMultiplier,
} from './index.js';

function expectCode(fn: () => unknown, code: string, field: string): TesseraError {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(TesseraError);
  expect((thrown as TesseraError).code).toBe(code);
  expect((thrown as TesseraError).data?.['field']).toBe(field);
  return thrown as TesseraError;
}

const fixed = (extra: Record<string, unknown> = {}) => ({
  noiseMultiplier: 1,
  clipNorm: 1,
  expectedClientsPerRound: 4,
  ...extra,
});

const update = (clientId: string, weights: Float32Array, numExamples = 10): TrainUpdate => ({
  clientId,
  numExamples,
  weights,
  metrics: { loss: 1 },
});

function run(strategy: Strategy, round: number, global: Float32Array, updates: TrainUpdate[]) {
  const aggregator = strategy.beginRound(round, global);
  for (const u of updates) aggregator.add(u);
  return aggregator.finish();
}

describe('dp-fedavg: the step', () => {
  it('is g + (sum of clipped changes, unweighted, + noise) / m, bit for bit', () => {
    const seed = 99;
    const strategy = createStrategy('dp-fedavg', fixed({ noiseMultiplier: 0.7 }), {
      noise: new SeededGaussianNoise(seed),
    });
    const global = new Float32Array([0.5, -1, 2]);
    const a = new Float32Array([0.8, -1, 2]); // change 0.3: kept
    const b = new Float32Array([3.5, 3, 2]); // change (3, 4, 0), norm 5: clipped to (0.6, 0.8, 0)
    const result = run(strategy, 1, global, [update('a', a, 1), update('b', b, 1000)]);
    // The same arithmetic by hand, with the same draws.
    const draws = new Float64Array(3);
    new SeededGaussianNoise(seed).forRound(1).fill(draws);
    const clippedB = [3, 4, 0].map((x) => x * (1 / 5));
    const expected = Float32Array.from(global, (g, i) => {
      const sum = 0 + ((a[i] as number) - g) + (clippedB[i] as number);
      return g + (sum + 0.7 * 1 * (draws[i] as number)) / 4;
    });
    expect([...(result.weights as Float32Array)]).toEqual([...expected]);
    expect(result.numExamples).toBe(1001);
    expect(result.numUpdates).toBe(2);
    expect(result.privacy).toMatchObject({
      mechanism: 'sampled-gaussian',
      clipNorm: 1,
      nextClipNorm: 1,
      adaptiveClipping: false,
      noiseMultiplier: 0.7,
      noiseStd: 0.7,
      effectiveNoiseMultiplier: 0.7,
      countNoiseStd: null,
      clippedCount: 1,
      clippedCountNoised: false,
      denominator: 4,
      samplingRate: null,
      steps: 1,
      epsilon: null,
      delta: null,
    });
  });

  it('one client moves the model by at most C / m, however large its change (the sensitivity)', () => {
    const global = Float32Array.from({ length: 50 }, (_, i) => Math.sin(i));
    const honest = Array.from({ length: 3 }, (_, k) =>
      update(
        `h${k}`,
        Float32Array.from(global, (g, i) => g + 0.01 * Math.cos(i + k)),
      ),
    );
    const attacker = update(
      'evil',
      Float32Array.from(global, (g) => g + 1e6),
      1e9,
    );
    const options = fixed({ clipNorm: 0.25, expectedClientsPerRound: 4, noiseMultiplier: 1e-12 });
    const withIt = run(
      createStrategy('dp-fedavg', options, { noise: new SeededGaussianNoise(5) }),
      1,
      global,
      [...honest, attacker],
    ).weights as Float32Array;
    const without = run(
      createStrategy('dp-fedavg', options, { noise: new SeededGaussianNoise(5) }),
      1,
      global,
      honest,
    ).weights as Float32Array;
    const shift = l2Norm(Float64Array.from(withIt, (w, i) => w - (without[i] as number)));
    // C / m, plus the float32 rounding of both results (half an ulp of each coordinate).
    const rounding = 2 ** -24 * (l2Norm(withIt) + l2Norm(without));
    expect(shift).toBeLessThanOrEqual(0.25 / 4 + rounding);
    expect(shift).toBeGreaterThan(0.25 / 4 - 1e-3);
  });

  it('adds N(0, (z C / m)^2) per coordinate: mean and std within 6 standard errors (crypto noise)', () => {
    const d = 200_000;
    const z = 1.3;
    const C = 0.5;
    const m = 2;
    const strategy = createStrategy(
      'dp-fedavg',
      fixed({ noiseMultiplier: z, clipNorm: C, expectedClientsPerRound: m }),
    );
    const global = new Float32Array(d);
    // One client that changes nothing: the step is the noise alone.
    const step = run(strategy, 1, global, [update('a', global.slice())]).weights as Float32Array;
    let sum = 0;
    let squares = 0;
    for (const v of step) {
      sum += v;
      squares += v * v;
    }
    const mean = sum / d;
    const std = Math.sqrt(squares / d - mean * mean);
    const expected = (z * C) / m;
    expect(Math.abs(mean)).toBeLessThan((6 * expected) / Math.sqrt(d));
    expect(Math.abs(std - expected)).toBeLessThan((6 * expected) / Math.sqrt(2 * d));
  });

  it('with crypto noise, the same round twice gives different models (replay cannot recompute it)', () => {
    const global = new Float32Array(16);
    const updates = [
      update(
        'a',
        global.map(() => 0.1),
      ),
    ];
    const first = run(createStrategy('dp-fedavg', fixed()), 1, global, updates).weights;
    const second = run(createStrategy('dp-fedavg', fixed()), 1, global, updates).weights;
    expect([...(first as Float32Array)]).not.toEqual([...(second as Float32Array)]);
  });

  it('without sampling (no accountant), an empty round releases nothing and spends nothing', () => {
    const strategy = createStrategy('dp-fedavg', fixed(), { noise: new SeededGaussianNoise(1) });
    const global = new Float32Array(3);
    run(strategy, 1, global, [
      update(
        'a',
        global.map(() => 1),
      ),
    ]);
    const before = strategy.state();
    const empty = run(strategy, 2, global, []);
    expect(empty.weights).toBeNull();
    expect(empty.privacy).toBeUndefined();
    expect(strategy.state()).toBe(before);
  });

  it('under Poisson sampling, a round to which no update came still releases the noised zero sum and is one step', () => {
    // Declining it would have the engine draw the sample again, conditioned on bringing an
    // update: not the independent sampling at rate q that the accountant composes.
    const strategy = createStrategy('dp-fedavg', fixed({ samplingRate: 0.1, delta: 1e-5 }), {
      noise: new SeededGaussianNoise(1),
    });
    const global = new Float32Array([0.5, -1, 2]);
    run(strategy, 1, global, [
      update(
        'a',
        global.map((w) => w + 1),
      ),
    ]);
    expect(strategy.privacyStatus?.()?.steps).toBe(1);
    const empty = run(strategy, 2, global, []);
    expect(empty.numUpdates).toBe(0);
    expect(empty.privacy).toMatchObject({ steps: 2, clippedCount: 0, denominator: 4 });
    expect(strategy.privacyStatus?.()?.steps).toBe(2);
    // g + (0 + z C N(0, 1)) / m, with z = C = 1, m = 4: the round's own draws.
    const draws = new Float64Array(3);
    new SeededGaussianNoise(1).forRound(2).fill(draws);
    const expected = global.map((w, i) => w + (draws[i] as number) / 4);
    expect([...(empty.weights as Float32Array)]).toEqual([...expected]);
  });

  it('steps a server optimiser with the noised mean as its pseudo-gradient (FedAvgM)', () => {
    const noise = () => ({ noise: new SeededGaussianNoise(3) });
    const options = fixed({ innerStrategy: 'fedavgm', innerOptions: { momentum: 0.5 } });
    const dp = createStrategy('dp-fedavg', options, noise());
    const plain = createStrategy('dp-fedavg', fixed(), noise());
    const fedavgm = createStrategy('fedavgm', { momentum: 0.5 });
    let global: Float32Array = new Float32Array([0, 0]);
    let globalM: Float32Array = global.slice();
    for (let round = 1; round <= 3; round++) {
      const updates = [
        update(
          'a',
          global.map((g) => g + 0.2),
        ),
      ];
      // The plain wrapper's output is the pseudo-update FedAvgM sees inside the other.
      const pseudo = run(plain, round, global, updates).weights as Float32Array;
      const expected = run(fedavgm, round, globalM, [update('dp', pseudo, 1)]).weights;
      const got = run(dp, round, global, updates).weights as Float32Array;
      expect([...got]).toEqual([...(expected as Float32Array)]);
      global = got;
      globalM = got.slice();
    }
  });
});

describe('dp-fedavg: adaptive clipping', () => {
  it('the noise multiplier of the sum is (z^-2 - (2 sigma_b)^-2)^(-1/2)', () => {
    expect(vectorNoiseMultiplier(1, 5)).toBeCloseTo((1 - 1 / 100) ** -0.5, 14);
    expectCode(
      () => vectorNoiseMultiplier(1, 0.5),
      ErrorCode.INVALID_ARGUMENT,
      'strategyOptions.adaptive.countNoiseMultiplier',
    );
  });

  it('the clip norm converges to the target quantile of the update norms', () => {
    // Norms uniform on [0, 2]: the median is 1, the 0.8 quantile 1.6. 100 clients a round,
    // sigma_b = m/20 = 5 (the paper's choice), eta = 0.2, from C = 0.1.
    for (const [quantile, target] of [
      [0.5, 1],
      [0.8, 1.6],
    ] as const) {
      const m = 100;
      const strategy = createStrategy('dp-fedavg', {
        noiseMultiplier: 1,
        adaptive: { targetQuantile: quantile, learningRate: 0.2, initialClipNorm: 0.1 },
        expectedClientsPerRound: m,
      }) as DpFedAvg;
      const global = new Float32Array(4);
      const late: number[] = [];
      for (let round = 1; round <= 300; round++) {
        const updates = Array.from({ length: m }, (_, k) => {
          const norm = (2 * ((k + round * 37) % m) + 1) / m; // an even spread on (0, 2)
          return update(`c${k}`, new Float32Array([norm, 0, 0, 0]));
        });
        const result = run(strategy, round, global, updates);
        const privacy = result.privacy;
        expect(privacy?.clippedCountNoised).toBe(true);
        if (round > 200) late.push(privacy?.clipNorm as number);
      }
      const average = late.reduce((s, c) => s + c, 0) / late.length;
      expect(Math.abs(average - target) / target).toBeLessThan(0.05);
    }
  });

  it('keeps the clip norm in its state: resumed from the bytes, the next round is the same', () => {
    const options = {
      noiseMultiplier: 0.8,
      adaptive: { initialClipNorm: 0.05, countNoiseMultiplier: 1 },
      expectedClientsPerRound: 3,
    };
    const noise = () => ({ noise: new SeededGaussianNoise(11) });
    const global = new Float32Array([0, 0]);
    const updates = [0.01, 0.2, 0.5].map((x, k) => update(`c${k}`, new Float32Array([x, x])));
    const first = createStrategy('dp-fedavg', options, noise());
    const r1 = run(first, 1, global, updates);
    const saved = first.state();
    expect(saved?.scalars['clipNorm']).toBe(r1.privacy?.nextClipNorm);
    expect(r1.privacy?.nextClipNorm).not.toBe(0.05);
    // The sum's noise is what is left of z after the count's share: (z^-2 - (2 sigma_b)^-2)^-1/2.
    const zDelta = (0.8 ** -2 - 2 ** -2) ** -0.5;
    expect(r1.privacy?.noiseMultiplier).toBeCloseTo(zDelta, 12);
    expect(r1.privacy?.noiseStd).toBeCloseTo(zDelta * 0.05, 12);
    expect(r1.privacy?.effectiveNoiseMultiplier).toBe(0.8);
    expect(r1.privacy?.countNoiseStd).toBe(1);
    const resumed = createStrategy('dp-fedavg', options, noise());
    resumed.restore(decodeStrategyState(encodeStrategyState(saved as NonNullable<typeof saved>)));
    const g2 = r1.weights as Float32Array;
    const a = run(first, 2, g2, updates);
    const b = run(resumed, 2, g2, updates);
    expect(b.privacy?.clipNorm).toBe(r1.privacy?.nextClipNorm);
    expect([...(b.weights as Float32Array)]).toEqual([...(a.weights as Float32Array)]);
  });

  it('refuses a state written over another inner rule, changing nothing', () => {
    const over = (innerStrategy: string) =>
      createStrategy('dp-fedavg', fixed({ innerStrategy }), { noise: new SeededGaussianNoise(1) });
    const adam = over('fedadam');
    run(adam, 1, new Float32Array(2), [update('a', new Float32Array([1, 1]))]);
    const yogi = over('fedyogi');
    run(yogi, 1, new Float32Array(2), [update('a', new Float32Array([1, 1]))]);
    const before = yogi.state();
    expectCode(() => yogi.restore(adam.state()), ErrorCode.INVALID_ARGUMENT, 'strategyState');
    expect(yogi.state()).toBe(before);
    // A state with a bad clip norm is refused too.
    const bad = { ...(adam.state() as NonNullable<ReturnType<Strategy['state']>>) };
    bad.scalars = { ...bad.scalars, clipNorm: -1 };
    expectCode(() => over('fedadam').restore(bad), ErrorCode.INVALID_ARGUMENT, 'strategyState');
  });
});

describe('dp-fedavg: the accountant and the budget', () => {
  it('reports epsilon per round from the accountant, and stops before the budget is exceeded', () => {
    const options = fixed({
      noiseMultiplier: 2,
      samplingRate: 0.2,
      budget: { epsilon: 2, delta: 1e-5 },
    });
    const strategy = createStrategy('dp-fedavg', options, { noise: new SeededGaussianNoise(2) });
    const global = new Float32Array(2);
    let round = 0;
    let previous = 0;
    while (strategy.privacyStatus?.().nextRoundAllowed) {
      round++;
      const status = (strategy as DpFedAvg).privacyStatus();
      const result = run(strategy, round, global, [update('a', new Float32Array([0.1, 0.1]))]);
      const epsilon = result.privacy?.epsilon as number;
      expect(epsilon).toBe(status.epsilonAfterNextRound);
      expect(epsilon).toBe(
        Accountant.empty().withSteps({ samplingRate: 0.2, noiseMultiplier: 2 }, round).epsilon(1e-5)
          .epsilon,
      );
      expect(epsilon).toBeGreaterThan(previous);
      expect(epsilon).toBeLessThanOrEqual(2);
      expect(result.privacy?.delta).toBe(1e-5);
      previous = epsilon;
    }
    const status = strategy.privacyStatus?.();
    expect(round).toBeGreaterThan(5);
    expect(status?.steps).toBe(round);
    expect(status?.epsilonAfterNextRound).toBeGreaterThan(2);
    expect(Accountant.fromJSON(status?.accountant).steps).toBe(round);
  });

  it('without a budget every round is allowed; without q epsilon is not reported', () => {
    const strategy = createStrategy('dp-fedavg', fixed(), { noise: new SeededGaussianNoise(2) });
    expect(strategy.privacyStatus?.()).toMatchObject({
      nextRoundAllowed: true,
      epsilon: null,
      accountant: null,
      steps: 0,
    });
  });
});

describe('dp-fedavg: options', () => {
  const refused = [
    'fedmedian',
    'trimmed-mean',
    'krum',
    'multi-krum',
    'bulyan',
    'centered-clipping',
    'norm-bounded-fedavg',
    'fedprox',
    'scaffold',
    'dp-fedavg',
  ];

  it.each(refused)('refuses %s as the inner rule, saying why', (innerStrategy) => {
    const error = expectCode(
      () => createStrategy('dp-fedavg', fixed({ innerStrategy })),
      ErrorCode.INVALID_ARGUMENT,
      'strategyOptions.innerStrategy',
    );
    expect(error.message).toMatch(/individual updates|already clips|itself|proximalMu/);
  });

  it('refuses bad combinations, naming the field', () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ noiseMultiplier: 1, expectedClientsPerRound: 4 }, 'strategyOptions.clipNorm'],
      [fixed({ adaptive: {} }), 'strategyOptions.clipNorm'],
      [fixed({ noiseMultiplier: 0 }), 'strategyOptions.noiseMultiplier'],
      [fixed({ expectedClientsPerRound: 0 }), 'strategyOptions.expectedClientsPerRound'],
      [fixed({ expectedClientsPerRound: 2.5 }), 'strategyOptions.expectedClientsPerRound'],
      [fixed({ samplingRate: 0 }), 'strategyOptions.samplingRate'],
      [fixed({ budget: { epsilon: 1, delta: 1e-5 } }), 'strategyOptions.samplingRate'],
      [
        fixed({ samplingRate: 0.1, delta: 1e-6, budget: { epsilon: 1, delta: 1e-5 } }),
        'strategyOptions.delta',
      ],
      [
        fixed({ samplingRate: 0.1, budget: { epsilon: 1, delta: 1 } }),
        'strategyOptions.budget.delta',
      ],
      [fixed({ innerStrategy: 'nope' }), 'strategyOptions.innerStrategy'],
      [
        fixed({ innerStrategy: 'fedavgm', innerOptions: { momentum: 2 } }),
        'strategyOptions.innerOptions.momentum',
      ],
      [
        {
          noiseMultiplier: 2,
          adaptive: { countNoiseMultiplier: 0.9 },
          expectedClientsPerRound: 4,
        },
        'strategyOptions.adaptive.countNoiseMultiplier',
      ],
      // sigma_b defaults to m/20 = 0.2 here, below z/2: refused as well.
      [
        { noiseMultiplier: 1, adaptive: {}, expectedClientsPerRound: 4 },
        'strategyOptions.adaptive.countNoiseMultiplier',
      ],
      [fixed({ adaptive: undefined, noiseMultiplierr: 1 }), 'strategyOptions'],
    ];
    for (const [options, field] of cases) {
      expectCode(() => createStrategy('dp-fedavg', options), ErrorCode.INVALID_ARGUMENT, field);
    }
  });

  it('fills the paper’s defaults and publishes a JSON schema for the console', () => {
    const strategy = createStrategy('dp-fedavg', {
      noiseMultiplier: 1,
      adaptive: {},
      expectedClientsPerRound: 100,
    });
    expect(strategy.options).toMatchObject({
      adaptive: {
        targetQuantile: 0.5,
        learningRate: 0.2,
        initialClipNorm: 0.1,
        countNoiseMultiplier: 5,
      },
      innerStrategy: 'fedavg',
      innerOptions: {},
    });
    const schema = z.toJSONSchema(STRATEGY_OPTIONS['dp-fedavg'] as z.ZodObject, { io: 'input' });
    expect(Object.keys(schema.properties ?? {})).toContain('noiseMultiplier');
  });
});
