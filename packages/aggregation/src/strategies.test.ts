/** Hand-computed values of the strategies added after FedAvg, FedAvgM, median and trimmed mean. */
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import {
  Bulyan,
  CenteredClipping,
  createStrategy,
  decodeStrategyState,
  encodeStrategyState,
  FedAdagrad,
  FedAdam,
  FedAvgM,
  FedYogi,
  isLinearStrategy,
  Krum,
  minUpdatesFor,
  NormBoundedFedAvg,
  parseStrategyOptions,
  recordedArithmetic,
  runRulesFor,
  STRATEGY_OPTIONS,
  type Strategy,
} from './index.js';

/** One round from `global`, each row an update with the given example count (default 1). */
function round(
  strategy: Strategy,
  n: number,
  global: number[],
  rows: number[][],
  examples?: number[],
) {
  const aggregator = strategy.beginRound(n, new Float32Array(global));
  for (const [k, row] of rows.entries()) {
    aggregator.add({
      clientId: `c${k}`,
      numExamples: examples?.[k] ?? 1,
      weights: new Float32Array(row),
      metrics: {},
    });
  }
  return [...(aggregator.finish().weights ?? [])];
}

function refused(fn: () => unknown, field: string): void {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(TesseraError);
    expect((error as TesseraError).code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect((error as TesseraError).data?.['field']).toBe(field);
    return;
  }
  throw new Error(`expected a refusal naming ${field}`);
}

describe('FedAdam', () => {
  it('steps eta m / (sqrt(v) + tau) with bias correction (hand-computed)', () => {
    const adam = new FedAdam({ serverLearningRate: 1, beta1: 0.5, beta2: 0.96, tau: 1e-9 });
    // Round 1: weighted mean of [4, 0] x1 and [0, -2] x3 is [1, -1.5] = Delta (global 0).
    // m = 0.5 Delta, v = 0.04 Delta^2, eta_1 = sqrt(1 - 0.96) / (1 - 0.5) = 0.4:
    // x = 0.4 * 0.5 Delta / (0.2 |Delta|) = sign(Delta). (Uncorrected: 2.5 sign(Delta).)
    const first = round(
      adam,
      1,
      [0, 0],
      [
        [4, 0],
        [0, -2],
      ],
      [1, 3],
    );
    expect(first[0]).toBeCloseTo(1, 6);
    expect(first[1]).toBeCloseTo(-1, 6);
    // Round 2 from [1, -1]: one update [3, -1] -> Delta = [2, 0].
    // m = 0.5 m + 0.5 Delta = [0.25 + 1, -0.375] = [1.25, -0.375]
    // v = 0.96 v + 0.04 Delta^2 = [0.0384 + 0.16, 0.96 * 0.09] = [0.1984, 0.0864]
    // eta_2 = sqrt(1 - 0.96^2) / (1 - 0.5^2) = 0.28 / 0.75
    const second = round(adam, 2, first, [[3, -1]]);
    expect(second[0]).toBeCloseTo(1 + ((0.28 / 0.75) * 1.25) / Math.sqrt(0.1984), 5);
    expect(second[1]).toBeCloseTo(-1 + ((0.28 / 0.75) * -0.375) / Math.sqrt(0.0864), 5);
  });
});

describe('FedYogi', () => {
  it('moves v by (1 - beta2) Delta^2 toward Delta^2, without bias correction (hand-computed)', () => {
    const yogi = new FedYogi({ serverLearningRate: 1, beta1: 0.5, beta2: 0.96, tau: 0.1 });
    // Round 1: Delta = 1; m = 0.5; v = 0 - 0.04 * 1 * sign(0 - 1) = 0.04; x = 0.5 / (0.2 + 0.1).
    const [x1] = round(yogi, 1, [0], [[1]]) as [number];
    expect(x1).toBeCloseTo(0.5 / 0.3, 6);
    // Round 2: Delta = 2; m = 0.25 + 1 = 1.25; v = 0.04 - 0.04 * 4 * sign(0.04 - 4) = 0.2.
    const [x2] = round(yogi, 2, [x1], [[x1 + 2]]) as [number];
    expect(x2).toBeCloseTo(x1 + 1.25 / (Math.sqrt(0.2) + 0.1), 5);
    // Round 3: Delta = 0.1 < sqrt(v): v = 0.2 - 0.04 * 0.01 = 0.1996 (Adam: 0.96 * 0.2 + 0.0004).
    // m = 0.625 + 0.05 = 0.675.
    const [x3] = round(yogi, 3, [x2], [[x2 + 0.1]]) as [number];
    expect(x3).toBeCloseTo(x2 + 0.675 / (Math.sqrt(0.1996) + 0.1), 5);
  });
});

describe('FedAdagrad', () => {
  it('sums Delta^2 into v (hand-computed)', () => {
    const adagrad = new FedAdagrad({ serverLearningRate: 0.5, beta1: 0, tau: 0.5 });
    // Round 1: Delta = 2; v = 4; x = 0.5 * 2 / (2 + 0.5) = 0.4.
    const [x1] = round(adagrad, 1, [0], [[2]]) as [number];
    expect(x1).toBeCloseTo(0.4, 6);
    // Round 2: Delta = 1; v = 5; x = 0.4 + 0.5 / (sqrt 5 + 0.5).
    const [x2] = round(adagrad, 2, [x1], [[x1 + 1]]) as [number];
    expect(x2).toBeCloseTo(0.4 + 0.5 / (Math.sqrt(5) + 0.5), 5);
  });
});

describe('Krum and Multi-Krum', () => {
  it('picks the update with the least sum of squared distances to its n - f - 2 nearest (hand-computed)', () => {
    // n = 5, f = 1: 2 neighbours. Scores: 0 -> 1 + 25 = 26, 1 -> 1 + 16 = 17, 5 -> 1 + 4 = 5,
    // 6 -> 1 + 1 = 2, 7 -> 1 + 4 = 5: Krum takes 6. (With 3 neighbours it would take 5.)
    expect(round(new Krum(1, undefined, false), 1, [0], [[0], [1], [5], [6], [7]])).toEqual([6]);
  });

  it('breaks equal scores by arrival order', () => {
    // f = 1 over 0, 1, 2, 3, 100: scores 5, 2, 2, 5, huge; 1 and 2 tie, the first to arrive wins.
    expect(round(new Krum(1, undefined, false), 1, [0], [[0], [1], [2], [3], [100]])).toEqual([1]);
    expect(round(new Krum(1, undefined, false), 1, [0], [[100], [3], [2], [1], [0]])).toEqual([2]);
  });

  it('Multi-Krum averages the m best, unweighted; by default m = n - f', () => {
    const rows = [[0], [1], [2], [3], [100]];
    // m = 3: 1 and 2 (score 2), then 0 and 3 tie at 5 and 0 arrived first: (0 + 1 + 2) / 3.
    expect(round(new Krum(1, 3, true), 1, [0], rows, [1, 1, 1, 1000, 1])).toEqual([1]);
    // m = n - f = 4: all but 100.
    expect(round(new Krum(1, undefined, true), 1, [0], rows)).toEqual([1.5]);
  });

  it('refuses a round with fewer than 2f + 3 updates, or m above n - f, naming the option', () => {
    refused(
      () => round(new Krum(1, undefined, false), 1, [0], [[0], [1], [2], [3]]),
      'strategyOptions.f',
    );
    refused(
      () => round(new Krum(1, 5, true), 1, [0], [[0], [1], [2], [3], [4]]),
      'strategyOptions.m',
    );
    // f = 0, n = 3: one neighbour, so the closest pair ties (1 and 0) and 1 arrived first.
    expect(round(new Krum(0, undefined, false), 1, [0], [[9], [1], [0]])).toEqual([1]);
  });
});

describe('Bulyan', () => {
  it('selects n - 2f by repeated Krum, then averages the beta closest to the median (hand-computed)', () => {
    // n = 7, f = 1: theta = 5 picks with max(1, left - 3) neighbours, beta = theta - 2 = 3.
    // 7 left, 4 neighbours: 0->90, 1->63, 2->46, 6->51, 7->66, 9->126, 100->huge: pick 2.
    // 6 left, 3: 0->86, 1->62, 6->35, 7->41, 9->77: pick 6.
    // 5 left, 2: 0->50, 1->37, 7->40, 9->68: pick 1.
    // 4 left, 1: 0->49, 7->4, 9->4: tie, 7 arrived first.
    // 3 left, 1: 0->81, 9->81: tie, 0 arrived first.
    // Selected 0, 1, 2, 6, 7; median 2; the 3 closest: 2, 1, 0 -> mean 1.
    // (No trimming: 3.2; 9 instead of 0 at the last tie: 22/3.)
    expect(round(new Bulyan(1), 1, [0], [[0], [1], [2], [6], [7], [9], [100]])).toEqual([1]);
  });

  it('publishes the fewest updates each rule needs, for the run to be checked against', () => {
    expect(minUpdatesFor('fedavg')).toBe(1);
    expect(minUpdatesFor('krum')).toBe(5);
    expect(minUpdatesFor('krum', { f: 3 })).toBe(9);
    expect(minUpdatesFor('multi-krum', { f: 1, m: 6 })).toBe(7);
    expect(minUpdatesFor('bulyan', { f: 2 })).toBe(11);
    // What it says is what the rule does: one update fewer is refused.
    refused(
      () =>
        round(
          new Bulyan(2),
          1,
          [0],
          Array.from({ length: 10 }, (_, k) => [k]),
        ),
      'strategyOptions.f',
    );
    expect(
      round(
        new Bulyan(2),
        1,
        [0],
        Array.from({ length: 11 }, (_, k) => [k]),
      ),
    ).toHaveLength(1);
  });

  it('refuses fewer than 4f + 3 updates with a clear error', () => {
    try {
      round(new Bulyan(1), 1, [0], [[0], [1], [2], [3], [4], [5]]);
      expect.unreachable();
    } catch (error) {
      expect((error as TesseraError).code).toBe(ErrorCode.INVALID_ARGUMENT);
      expect((error as TesseraError).data).toEqual({
        field: 'strategyOptions.f',
        updates: 6,
        needed: 7,
      });
      expect((error as Error).message).toMatch(
        /bulyan with f = 1 .*needs at least 7 updates.*got 6/,
      );
    }
  });
});

describe('norm-bounded FedAvg', () => {
  it('clips each delta to norm M before the example-weighted mean (hand-computed)', () => {
    // Deltas from [1, 1]: [3, 4] (norm 5 -> [0.6, 0.8] at M = 1) x1 and [0.3, 0] x3:
    // (0.6 + 0.9) / 4 = 0.375, 0.8 / 4 = 0.2.
    const [a, b] = round(
      new NormBoundedFedAvg(1),
      1,
      [1, 1],
      [
        [4, 5],
        [1.3, 1],
      ],
      [1, 3],
    ) as [number, number];
    expect(a).toBeCloseTo(1.375, 6);
    expect(b).toBeCloseTo(1.2, 6);
  });
});

describe('centered clipping', () => {
  it('clips around the centre, which carries over in the state (hand-computed)', () => {
    const cc = new CenteredClipping(1, 1);
    // Round 1, centre 0, tau 1: deltas 0.5, 3, -4 clip to 0.5, 1, -1: v = 1/6.
    const [x1] = round(cc, 1, [0], [[0.5], [3], [-4]]) as [number];
    expect(x1).toBeCloseTo(1 / 6, 7);
    // Round 2, centre 1/6: offsets 0.25 - 1/6 = 1/12 and 2 - 1/6 (clipped to 1): v = 1/6 + 13/24.
    const fromState = createStrategy('centered-clipping', { tau: 1 });
    fromState.restore(decodeStrategyState(encodeStrategyState(cc.state() ?? expect.unreachable())));
    for (const strategy of [cc, fromState]) {
      const [x2] = round(strategy, 2, [x1], [[x1 + 0.25], [x1 + 2]]) as [number];
      expect(x2).toBeCloseTo(x1 + 1 / 6 + 13 / 24, 6);
    }
    // Two iterations: from 1/6, offsets 1/3, 17/6 -> 1, -25/6 -> -1: v = 1/6 + 1/9.
    const [twice] = round(new CenteredClipping(1, 2), 1, [0], [[0.5], [3], [-4]]) as [number];
    expect(twice).toBeCloseTo(5 / 18, 7);
  });
});

describe('FedAvgM state', () => {
  it('restored velocity continues the hand-computed run', () => {
    const first = new FedAvgM({ serverLearningRate: 1, momentum: 0.5 });
    // Round 1: global 0, average 1 -> v = -1, w = 1 (robust.test.ts has the same run).
    expect(round(first, 1, [0], [[1]])).toEqual([1]);
    const resumed = new FedAvgM({ serverLearningRate: 1, momentum: 0.5 });
    resumed.restore(
      decodeStrategyState(encodeStrategyState(first.state() ?? expect.unreachable())),
    );
    // Round 2: global 1, average 2 -> v = 0.5 * -1 - 1 = -1.5, w = 2.5 (from v = 0: 2).
    expect(round(resumed, 2, [1], [[2]])).toEqual([2.5]);
  });
});

describe('strategy state bytes', () => {
  it('follow the documented little-endian layout', () => {
    const bytes = encodeStrategyState({
      strategy: 'fedavgm',
      version: 1,
      round: 2,
      scalars: {},
      arrays: { velocity: new Float64Array([1.5, -2]) },
    });
    const header =
      '{"strategy":"fedavgm","version":1,"round":2,"scalars":{},"arrays":[{"name":"velocity","length":2}]}';
    expect([...bytes.subarray(0, 12)]).toEqual([
      0x54,
      0x53,
      0x53,
      0x54,
      1,
      0,
      0,
      0,
      header.length,
      0,
      0,
      0,
    ]);
    expect(new TextDecoder().decode(bytes.subarray(12, 12 + header.length))).toBe(header);
    const payload = (12 + header.length + 7) & ~7;
    // 1.5 = 0x3FF8000000000000, -2 = 0xC000000000000000, low byte first.
    expect([...bytes.subarray(payload)]).toEqual([
      0, 0, 0, 0, 0, 0, 0xf8, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0xc0,
    ]);
    expect(bytes.length).toBe(payload + 16);
  });

  it('refuse another layout version, a short payload, or a header that is not JSON', () => {
    const good = encodeStrategyState({
      strategy: 'x',
      version: 1,
      round: 0,
      scalars: {},
      arrays: { a: new Float64Array(1) },
    });
    const otherLayout = good.slice();
    otherLayout[4] = 2;
    refused(() => decodeStrategyState(otherLayout), 'strategyState');
    refused(() => decodeStrategyState(good.subarray(0, good.length - 1)), 'strategyState');
    const broken = good.slice();
    broken[12] = 0x7b + 1;
    refused(() => decodeStrategyState(broken), 'strategyState');
  });

  it('of another version of the same strategy are refused', () => {
    const adam = createStrategy('fedadam');
    round(adam, 1, [0], [[1]]);
    const state = adam.state() ?? expect.unreachable();
    refused(() => createStrategy('fedadam').restore({ ...state, version: 2 }), 'strategyState');
    refused(() => createStrategy('fedadam').restore({ ...state, scalars: {} }), 'strategyState');
  });

  it('restored after round k refuse a begin of round k or earlier', () => {
    const adam = createStrategy('fedadam');
    round(adam, 1, [0], [[1]]);
    round(adam, 2, [0], [[1]]);
    const resumed = createStrategy('fedadam');
    resumed.restore(adam.state());
    expect(() => resumed.beginRound(2, new Float32Array(1))).toThrow(
      expect.objectContaining({ code: ErrorCode.CONFLICT }),
    );
    expect(() => resumed.beginRound(1, new Float32Array(1))).toThrow(
      expect.objectContaining({ code: ErrorCode.CONFLICT }),
    );
  });
});

describe('option schemas of the added strategies', () => {
  it('fill in the paper/Flower defaults', () => {
    expect(parseStrategyOptions('fedadam', {})).toEqual({
      serverLearningRate: 0.1,
      beta1: 0.9,
      beta2: 0.99,
      tau: 1e-9,
      arithmetic: 'float64-sequential',
    });
    expect(parseStrategyOptions('fedyogi', {})).toEqual({
      serverLearningRate: 0.01,
      beta1: 0.9,
      beta2: 0.99,
      tau: 1e-3,
      arithmetic: 'float64-sequential',
    });
    expect(parseStrategyOptions('fedadagrad', {})).toEqual({
      serverLearningRate: 0.1,
      beta1: 0,
      tau: 1e-9,
      arithmetic: 'float64-sequential',
    });
    expect(parseStrategyOptions('krum', {})).toEqual({ f: 1 });
    expect(parseStrategyOptions('multi-krum', { m: 3 })).toEqual({ f: 1, m: 3 });
    expect(parseStrategyOptions('centered-clipping', {})).toEqual({ tau: 10, iterations: 1 });
    expect(parseStrategyOptions('norm-bounded-fedavg', {})).toEqual({ normBound: 5 });
  });

  it('refuse values out of bounds, naming the field', () => {
    for (const [name, options, field] of [
      ['fedadam', { beta1: 1 }, 'strategyOptions.beta1'],
      ['fedyogi', { beta2: -0.1 }, 'strategyOptions.beta2'],
      ['fedadam', { tau: 0 }, 'strategyOptions.tau'],
      ['fedadagrad', { beta2: 0.9 }, 'strategyOptions'],
      ['krum', { f: 1.5 }, 'strategyOptions.f'],
      ['bulyan', { f: -1 }, 'strategyOptions.f'],
      ['multi-krum', { m: 0 }, 'strategyOptions.m'],
      ['centered-clipping', { iterations: 0 }, 'strategyOptions.iterations'],
      ['centered-clipping', { tau: -1 }, 'strategyOptions.tau'],
      ['norm-bounded-fedavg', { normBound: 0 }, 'strategyOptions.normBound'],
    ] as const) {
      refused(() => parseStrategyOptions(name, options), field);
    }
  });
});

describe('runRulesFor', () => {
  const plain = {
    keepUpdates: false,
    clientsPerRound: null,
    fractionFit: null,
    minClients: 1,
    secureAggregation: null,
  };
  const secAgg = {
    clipRange: 1,
    maxExamplesPerClient: 10_000,
    thresholdFraction: 2 / 3,
    stepDeadlineMs: 30_000,
  };
  it('asks nothing of a run for a strategy without privacy accounting', () => {
    expect(runRulesFor('fedavg', {}, { ...plain, keepUpdates: true, clientsPerRound: 3 })).toEqual(
      [],
    );
  });
  it('dp-fedavg: needs samplingRate, refuses keepUpdates and fixed sample sizes, each at its field', () => {
    expect(runRulesFor('dp-fedavg', { samplingRate: 0.1 }, plain)).toEqual([]);
    const issues = runRulesFor(
      'dp-fedavg',
      {},
      {
        ...plain,
        keepUpdates: true,
        clientsPerRound: 5,
        fractionFit: 0.2,
      },
    );
    expect(issues.map((issue) => issue.path.join('.'))).toEqual([
      'strategyOptions.samplingRate',
      'keepUpdates',
      'clientsPerRound',
      'fractionFit',
    ]);
  });
  it('secure aggregation: runs the linear rules, refuses those that need individual updates, with the reason', () => {
    const run = { ...plain, secureAggregation: secAgg };
    for (const name of ['fedavg', 'fedavgm', 'fedprox', 'fedadam', 'fedyogi', 'fedadagrad']) {
      expect(runRulesFor(name, {}, run)).toEqual([]);
      expect(isLinearStrategy(name)).toBe(true);
    }
    const refused = [
      'fedmedian',
      'trimmed-mean',
      'krum',
      'multi-krum',
      'bulyan',
      'centered-clipping',
      'norm-bounded-fedavg',
    ];
    for (const name of refused) {
      const issues = runRulesFor(name, {}, run);
      expect(issues).toHaveLength(1);
      expect(issues[0]?.path).toEqual(['secureAggregation']);
      expect(issues[0]?.message).toMatch(/individual updates/);
      expect(isLinearStrategy(name)).toBe(false);
      // The same strategy without secure aggregation asks nothing.
      expect(runRulesFor(name, {}, plain)).toEqual([]);
    }
    // dp-fedavg runs on the secure sum: its clients clip to a fixed C the clip range covers.
    const clipRange = secAgg.clipRange;
    expect(runRulesFor('dp-fedavg', { samplingRate: 0.1, clipNorm: clipRange }, run)).toEqual([]);
    expect(
      runRulesFor('dp-fedavg', { samplingRate: 0.1, clipNorm: 2 * clipRange }, run)[0]?.path,
    ).toEqual(['secureAggregation', 'clipRange']);
  });
});

describe('the aggregation arithmetic a run records', () => {
  it('a run created now records float64-sequential (the schema default) or the exact it asks for; options without it are a run recorded before, float64', () => {
    for (const name of [
      'fedavg',
      'fedavgm',
      'fedprox',
      'fedadam',
      'fedyogi',
      'fedadagrad',
      'scaffold',
    ]) {
      const created = STRATEGY_OPTIONS[name]?.parse({}) as Record<string, unknown>;
      expect(created['arithmetic']).toBe('float64-sequential');
      expect(recordedArithmetic(name, created)).toBe('float64-sequential');
      const exact = STRATEGY_OPTIONS[name]?.parse({ arithmetic: 'exact' }) as Record<
        string,
        unknown
      >;
      expect(createStrategy(name, exact).options['arithmetic']).toBe('exact');
      expect(recordedArithmetic(name, exact)).toBe('exact');
      expect(createStrategy(name, {}).options['arithmetic']).toBe('float64-sequential');
      expect(recordedArithmetic(name, {})).toBe('float64-sequential');
      expect(createStrategy(name, { arithmetic: 'float64-sequential' }).options['arithmetic']).toBe(
        'float64-sequential',
      );
    }
    for (const name of ['fedmedian', 'trimmed-mean', 'krum', 'norm-bounded-fedavg']) {
      expect(recordedArithmetic(name, {})).toBeNull();
      expect(() => createStrategy(name, { arithmetic: 'exact' })).toThrow(
        expect.objectContaining({
          code: ErrorCode.INVALID_ARGUMENT,
          data: { field: 'strategyOptions' },
        }),
      );
    }
  });

  it('refuses an arithmetic it does not know, naming the field', () => {
    expect(() => createStrategy('fedavg', { arithmetic: 'float32' })).toThrow(
      expect.objectContaining({
        code: ErrorCode.INVALID_ARGUMENT,
        data: { field: 'strategyOptions.arithmetic' },
      }),
    );
    expect(STRATEGY_OPTIONS['fedavg']?.safeParse({ arithmetic: 'float32' }).success).toBe(false);
  });

  it('exact FedAvg commits the float32 nearest the exact weighted mean, where float64 in arrival order does not', () => {
    // 2^40 and -2^40 cancel; summed in float64 after them, 1e-3's low bits are gone.
    const updates = [2 ** 40, 1e-3, -(2 ** 40)].map((value, k) => ({
      clientId: `c${k}`,
      numExamples: 10,
      weights: Float32Array.of(value),
      metrics: {},
    }));
    const run = (options: Record<string, unknown>, order: typeof updates) => {
      const round = createStrategy('fedavg', options).beginRound(1, new Float32Array(1));
      for (const update of order) round.add(update);
      return round.finish().weights?.[0];
    };
    const exactMean = Math.fround(Math.fround(1e-3) / 3);
    expect(run({ arithmetic: 'exact' }, updates)).toBe(exactMean);
    expect(run({ arithmetic: 'exact' }, updates.slice().reverse())).toBe(exactMean);
    expect(run({}, [updates[0], updates[2], updates[1]] as typeof updates)).toBe(exactMean);
    expect(run({}, updates)).not.toBe(exactMean);
  });
});
