/**
 * One suite, every registered strategy (the tfjs way): what the coordinator and the replay
 * rely on of any strategy, whatever its rule. A strategy added to the registry without a row
 * in `TRAITS` fails the first test.
 */

import { SeededGaussianNoise } from '@tessera/privacy';
import { ErrorCode, trainStrategySchema } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import {
  createStrategy,
  decodeStrategyState,
  encodeStrategyState,
  STRATEGY_NAMES,
  STRATEGY_OPTIONS,
  type Strategy,
  type TrainUpdate,
} from './index.js';
import { expectCode, seededRandom } from './testing/fixtures.js';

interface Traits {
  /** Options the suite builds it with (defaults where omitted). */
  options?: Record<string, unknown>;
  /** Whether example counts weight the models. */
  weighted: boolean;
  /** Whether it keeps state between rounds. */
  stateful: boolean;
  /**
   * Whether a round without updates still steps (dp-fedavg under Poisson sampling releases
   * the noised zero sum: see dp.ts); every other rule keeps the model and the state.
   */
  emptyRoundSteps?: boolean;
  /**
   * Robust rules: options for the poisoning test, and the bound on ||result - h|| (h the
   * unweighted mean of the honest models) it must meet there, given the honest spread
   * s = max_k ||h_k - h||, ||h||, and the attackers' share p of the weight (2/10 for a rule
   * that does not weight, their share of the examples for one that does).
   */
  robust?: {
    options: Record<string, unknown>;
    bound: (spread: number, honest: number, share: number) => number;
  };
}

// Coordinate-wise rules stay inside the honest values of each coordinate, so within sqrt(P)
// times the per-coordinate honest range (2 NOISE); Krum-based ones pick honest updates only,
// so within the honest spread. A clipping rule (radius r, honest deltas inside it, centre 0)
// gives (1 - p) h' + p c, with h' the honest mean it weights (||h' - h|| <= s) and ||c|| <= r:
// within p (||h|| + s) + p r + s of h.
const TRAITS: Record<string, Traits> = {
  fedavg: { weighted: true, stateful: false },
  fedavgm: { weighted: true, stateful: true, options: { momentum: 0.5 } },
  fedprox: { weighted: true, stateful: false, options: { mu: 0.5 } },
  // Its state (c) goes to the clients, not into the server's step: see 'keeps a state that matters'.
  scaffold: {
    weighted: false,
    stateful: true,
    options: { serverLearningRate: 0.5, clientCount: 20 },
  },
  fedmedian: {
    weighted: false,
    stateful: false,
    robust: { options: {}, bound: () => 2 * NOISE * Math.sqrt(PARAMS) },
  },
  'trimmed-mean': {
    weighted: false,
    stateful: false,
    robust: { options: { beta: 0.2 }, bound: () => 2 * NOISE * Math.sqrt(PARAMS) },
  },
  fedadam: { weighted: true, stateful: true },
  fedyogi: { weighted: true, stateful: true },
  fedadagrad: { weighted: true, stateful: true, options: { beta1: 0.3 } },
  krum: { weighted: false, stateful: false, robust: { options: { f: 2 }, bound: (s) => s } },
  'multi-krum': {
    weighted: false,
    stateful: false,
    robust: { options: { f: 2 }, bound: (s) => s },
  },
  bulyan: {
    weighted: false,
    stateful: false,
    // n = 10 allows f = 1 only (4f + 3 <= n); the two attackers are far enough to be dropped.
    robust: { options: { f: 1 }, bound: () => 2 * NOISE * Math.sqrt(PARAMS) },
  },
  'centered-clipping': {
    weighted: false,
    stateful: true,
    // A radius below the honest noise, so the centre carried over changes the result.
    options: { tau: 0.1, iterations: 2 },
    robust: {
      options: { tau: 1.5, iterations: 1 },
      bound: (s, h, p) => p * (h + s) + p * 1.5 + s,
    },
  },
  'norm-bounded-fedavg': {
    weighted: true,
    stateful: false,
    options: { normBound: 0.5 },
    robust: { options: { normBound: 1.5 }, bound: (s, h, p) => p * (h + s) + p * 1.5 + s },
  },
  // Unweighted by design (sensitivity); adaptive clipping makes its state (the clip norm)
  // matter; over FedAdam so the inner state travels inside its own. The noise is seeded here
  // (see build): with crypto noise no two runs are alike, by design.
  'dp-fedavg': {
    weighted: false,
    stateful: true,
    emptyRoundSteps: true,
    options: {
      noiseMultiplier: 0.5,
      adaptive: { initialClipNorm: 0.3, countNoiseMultiplier: 2 },
      expectedClientsPerRound: 11,
      samplingRate: 0.1,
      budget: { epsilon: 50, delta: 1e-5 },
      innerStrategy: 'fedadam',
    },
  },
};

const PARAMS = 7;
const CLIENTS = 11;
const NOISE = 0.1;

/** Every run of the suite sees the same data. */
const random = seededRandom;

/** Round `round`'s updates around `global`: a shared drift plus per-client noise. */
function updatesFor(round: number, global: Float32Array, clients = CLIENTS): TrainUpdate[] {
  const next = random(1000 + round);
  // A generator of its own, so the models are what they were before SCAFFOLD's Δc_i came in.
  const nextControl = random(5000 + round);
  const drift = Array.from({ length: PARAMS }, () => next() - 0.5);
  return Array.from({ length: clients }, (_, k) => ({
    clientId: `c${k}`,
    numExamples: 1 + Math.floor(next() * 50),
    weights: Float32Array.from(
      global,
      (g, i) => g + (drift[i] as number) + (next() - 0.5) * 2 * NOISE,
    ),
    metrics: { loss: next() },
    // SCAFFOLD's Δc_i; the other rules ignore it.
    controlDelta: Float32Array.from({ length: PARAMS }, () => nextControl() - 0.5),
  }));
}

/** What a round sends every client beside the model (SCAFFOLD's c), as bits; [] for none. */
function controlBits(strategy: Strategy, round: number, global: Float32Array): number[] {
  const vector = strategy.beginRound(round, global).controlVariate;
  return vector === undefined ? [] : [...new Uint32Array(vector.buffer.slice(0))];
}

/**
 * Every strategy is built with the same seeded noise source: a DP rule then gives the same
 * bits for the same inputs (what this suite checks of every rule); the others ignore it.
 */
function build(name: string, options = TRAITS[name]?.options ?? {}): Strategy {
  return createStrategy(name, options, { noise: new SeededGaussianNoise(20_181_005) });
}

function runRound(
  strategy: Strategy,
  round: number,
  global: Float32Array,
  updates = updatesFor(round, global),
) {
  const aggregator = strategy.beginRound(round, global);
  for (const update of updates) aggregator.add(update);
  return aggregator.finish();
}

/** Rounds `from..to`, each from the previous result; the final global model. */
function runRounds(strategy: Strategy, from: number, to: number, start: Float32Array) {
  let global = start;
  for (let round = from; round <= to; round++) {
    const weights = runRound(strategy, round, global).weights;
    if (weights === null) throw new Error('no weights');
    global = weights;
  }
  return global;
}

const initial = Float32Array.from({ length: PARAMS }, (_, i) => Math.sin(i + 1));

const bits = (weights: Float32Array | null) => [
  ...new Uint32Array((weights ?? new Float32Array()).buffer.slice(0)),
];

function norm(values: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += (values[i] as number) ** 2;
  return Math.sqrt(sum);
}

it('every registered strategy is in the conformance suite', () => {
  expect(Object.keys(TRAITS).sort()).toEqual([...STRATEGY_NAMES].sort());
});

/**
 * Updates whose float64 weighted sum depends on the order of additions: clients 0 and 1 send
 * ±2^40 at coordinate 0 with equal example counts, which cancel exactly when added first and
 * swallow the other clients' low bits when added last.
 */
function hardToSum(updates: TrainUpdate[]): TrainUpdate[] {
  return updates.map((update, k) => {
    const weights = update.weights.slice();
    if (k < 2) weights[0] = k === 0 ? 2 ** 40 : -(2 ** 40);
    return { ...update, weights, numExamples: k < 2 ? 1000 : 1 + ((k * 7919) % 60_000) };
  });
}

/**
 * The rules that take an `arithmetic` option run the whole suite twice: as built from options
 * without it (a run recorded before it existed: float64 in arrival order), and with `exact`.
 */
const EXACT_CAPABLE = STRATEGY_NAMES.filter(
  (name) => 'arithmetic' in (STRATEGY_OPTIONS[name]?.shape ?? {}),
);
const CASES: [label: string, name: string, arithmetic: 'exact' | undefined][] = [
  ...STRATEGY_NAMES.map((name): [string, string, undefined] => [name, name, undefined]),
  ...EXACT_CAPABLE.map((name): [string, string, 'exact'] => [
    `${name}, arithmetic exact`,
    name,
    'exact',
  ]),
];

it('the FedAvg family takes the exact arithmetic', () => {
  expect(EXACT_CAPABLE.sort()).toEqual(
    ['fedadagrad', 'fedadam', 'fedavg', 'fedavgm', 'fedprox', 'fedyogi', 'scaffold'].sort(),
  );
});

describe.each(CASES)('strategy %s', (_label, name, arithmetic) => {
  const traits = TRAITS[name] as Traits;
  const options = { ...traits.options, ...(arithmetic === undefined ? {} : { arithmetic }) };
  const buildIt = () => build(name, options);

  it.runIf(arithmetic === undefined && EXACT_CAPABLE.includes(name))(
    'in float64-sequential arithmetic, another arrival order may give other bits (why exact exists)',
    () => {
      const updates = hardToSum(updatesFor(1, initial));
      // The model and the state: an adaptive optimiser's first step is ±eta whatever Delta's
      // size, so there only its moments show the difference.
      const outcome = (order: TrainUpdate[]) => {
        const strategy = buildIt();
        const { weights } = runRound(strategy, 1, initial, order);
        const state = strategy.state();
        return [bits(weights), state === null ? null : [...encodeStrategyState(state)]];
      };
      expect(outcome(updates.slice().reverse())).not.toEqual(outcome(updates));
    },
  );

  it.runIf(arithmetic === 'exact')(
    'any arrival order gives the same bits, models and state, over several rounds',
    () => {
      const shuffle = random(77);
      const inOrder = build(name, options);
      const shuffled = build(name, options);
      let globalA: Float32Array = initial;
      let globalB: Float32Array = initial;
      for (let round = 1; round <= 4; round++) {
        // Example counts over eight binades and models spread over several: a float64 sum in
        // arrival order rounds differently for another order here (checked below).
        const updates = hardToSum(updatesFor(round, globalA));
        const order = updates.slice();
        for (let i = order.length - 1; i > 0; i--) {
          const j = Math.floor(shuffle() * (i + 1));
          [order[i], order[j]] = [order[j] as TrainUpdate, order[i] as TrainUpdate];
        }
        const a = runRound(inOrder, round, globalA, updates);
        const b = runRound(shuffled, round, globalB, order.reverse());
        expect(bits(b.weights)).toEqual(bits(a.weights));
        const stateA = inOrder.state();
        const stateB = shuffled.state();
        expect(stateB === null ? null : encodeStrategyState(stateB)).toEqual(
          stateA === null ? null : encodeStrategyState(stateA),
        );
        globalA = a.weights as Float32Array;
        globalB = b.weights as Float32Array;
      }
    },
  );

  // SCAFFOLD averages unweighted: its example count only weights metrics.
  it.runIf(arithmetic === 'exact' && traits.weighted)(
    'refuses an example count that is not an integer, keeping nothing of it',
    () => {
      const updates = updatesFor(1, initial);
      const clean = runRound(buildIt(), 1, initial, updates).weights;
      const round = buildIt().beginRound(1, initial);
      const [first, ...rest] = updates as [TrainUpdate, ...TrainUpdate[]];
      expectCode(
        () => round.add({ ...first, numExamples: 2.5 }),
        ErrorCode.INVALID_ARGUMENT,
        'numExamples',
      );
      expect(round.numUpdates).toBe(0);
      for (const update of [first, ...rest]) round.add(update);
      expect(bits(round.finish().weights)).toEqual(bits(clean));
    },
  );

  it('is deterministic for a fixed arrival order, over several rounds', () => {
    const a = runRounds(buildIt(), 1, 4, initial);
    const b = runRounds(buildIt(), 1, 4, initial);
    expect(bits(a)).toEqual(bits(b));
    expect(bits(a)).not.toEqual(bits(initial));
  });

  it(traits.weighted ? 'weights updates by their examples' : 'ignores example counts', () => {
    // Round 3, after two equal rounds: an adaptive optimiser's first step is sign(Delta) eta,
    // whatever the size of Delta, so round 1 alone would not show the weighting.
    const run = (reweight: boolean) => {
      const strategy = buildIt();
      const global = runRounds(strategy, 1, 2, initial);
      const updates = updatesFor(3, global).map((u, k) =>
        reweight ? { ...u, numExamples: k === 0 ? 1000 : 1 } : u,
      );
      return runRound(strategy, 3, global, updates);
    };
    const plain = run(false).weights;
    const heavy = run(true).weights;
    if (traits.weighted) expect(bits(heavy)).not.toEqual(bits(plain));
    else expect(bits(heavy)).toEqual(bits(plain));
    // The round's example count and metrics are example-weighted either way.
    const result = run(true);
    expect(result.numExamples).toBe(1000 + CLIENTS - 1);
    expect(result.numUpdates).toBe(CLIENTS);
  });

  it('refuses an update of the wrong length, a non-finite value or a bad example count, keeping nothing of it', () => {
    const updates = updatesFor(1, initial);
    const clean = runRound(buildIt(), 1, initial, updates).weights;
    const strategy = buildIt();
    const round = strategy.beginRound(1, initial);
    const [first, ...rest] = updates as [TrainUpdate, ...TrainUpdate[]];
    round.add(first);
    const short = { ...first, weights: first.weights.subarray(1) };
    expectCode(() => round.add(short), ErrorCode.WEIGHTS_LENGTH_MISMATCH, 'weights');
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      const weights = first.weights.slice();
      weights[3] = bad;
      const error = expectCode(
        () => round.add({ ...first, weights }),
        ErrorCode.NON_FINITE_WEIGHTS,
        'weights',
      );
      expect(error.data?.['index']).toBe(3);
    }
    for (const numExamples of [0, -1, Number.NaN, 2 ** 60]) {
      expectCode(
        () => round.add({ ...first, numExamples }),
        ErrorCode.INVALID_ARGUMENT,
        'numExamples',
      );
    }
    expect(round.numUpdates).toBe(1);
    for (const update of rest) round.add(update);
    expect(bits(round.finish().weights)).toEqual(bits(clean));
  });

  it('an empty round keeps the previous model and the state (steps, where the rule says so); a finished round takes nothing more', () => {
    const strategy = buildIt();
    runRounds(strategy, 1, 2, initial);
    const before = strategy.state();
    const empty = strategy.beginRound(3, initial).finish();
    expect(empty.numUpdates).toBe(0);
    expect(empty.numExamples).toBe(0);
    if (TRAITS[name]?.emptyRoundSteps) {
      expect(empty.weights).toHaveLength(initial.length);
      expect(strategy.state()).not.toBe(before);
    } else {
      expect(empty.weights).toBeNull();
      expect(strategy.state()).toBe(before);
    }
    const round = strategy.beginRound(4, initial);
    const [update] = updatesFor(4, initial);
    round.finish();
    expectCode(() => round.add(update as TrainUpdate), ErrorCode.CONFLICT);
    expectCode(() => round.finish(), ErrorCode.CONFLICT);
  });

  it('resumed from its serialised state after round k equals the uninterrupted run, bit for bit', () => {
    const uninterrupted = runRounds(buildIt(), 1, 6, initial);
    for (const k of [1, 3, 5]) {
      const first = buildIt();
      const atK = runRounds(first, 1, k, initial);
      const saved = first.state();
      const resumed = buildIt();
      resumed.restore(saved === null ? null : decodeStrategyState(encodeStrategyState(saved)));
      expect(bits(runRounds(resumed, k + 1, 6, atK))).toEqual(bits(uninterrupted));
    }
    // What the clients are sent with round 7 agrees too (SCAFFOLD's c).
    const whole = buildIt();
    const first = buildIt();
    const global = runRounds(whole, 1, 6, initial);
    runRounds(first, 1, 3, initial);
    const resumed = buildIt();
    const saved = first.state();
    resumed.restore(saved === null ? null : decodeStrategyState(encodeStrategyState(saved)));
    runRounds(resumed, 4, 6, runRounds(buildIt(), 1, 3, initial));
    expect(controlBits(resumed, 7, global)).toEqual(controlBits(whole, 7, global));
  });

  it(traits.stateful ? 'keeps a state that matters' : 'keeps no state', () => {
    const strategy = buildIt();
    runRounds(strategy, 1, 3, initial);
    const state = strategy.state();
    if (!traits.stateful) {
      expect(state).toBeNull();
      return;
    }
    expect(state?.strategy).toBe(name);
    expect(state?.round).toBe(3);
    // Without the state, round 4 comes out differently, or (SCAFFOLD) sends the clients
    // something else: the state is not decoration.
    const fresh = buildIt();
    const global = runRounds(buildIt(), 1, 3, initial);
    const outcome = (s: Strategy) => [
      ...controlBits(s, 4, global),
      ...bits(runRound(s, 4, global).weights),
    ];
    expect(outcome(fresh)).not.toEqual(outcome(strategy));
  });

  it('a retried round starts from the state its first attempt started from', () => {
    const once = buildIt();
    const global = runRounds(once, 1, 2, initial);
    const expected = runRounds(once, 3, 4, global);
    const retried = buildIt();
    runRounds(retried, 1, 2, initial);
    // Attempt 1 of round 3 finishes with other updates (the engine then finds them too few).
    runRound(retried, 3, global, updatesFor(99, global));
    expect(bits(runRounds(retried, 3, 4, global))).toEqual(bits(expected));
  });

  it('refuses a state of another strategy, of another model size, or bytes that are not a state', () => {
    const other = build(name === 'fedadam' ? 'fedyogi' : 'fedadam');
    runRounds(other, 1, 1, initial);
    const foreign = other.state();
    expectCode(() => buildIt().restore(foreign), ErrorCode.INVALID_ARGUMENT, 'strategyState');
    expectCode(
      () => decodeStrategyState(new TextEncoder().encode('not a state')),
      ErrorCode.INVALID_ARGUMENT,
      'strategyState',
    );
    if (!traits.stateful) return;
    const strategy = buildIt();
    runRounds(strategy, 1, 1, initial);
    const resumed = buildIt();
    resumed.restore(strategy.state());
    expectCode(
      () => resumed.beginRound(2, new Float32Array(PARAMS + 1)),
      ErrorCode.INVALID_ARGUMENT,
      'strategyState',
    );
    const bytes = encodeStrategyState(
      strategy.state() as NonNullable<ReturnType<Strategy['state']>>,
    );
    expectCode(
      () => decodeStrategyState(bytes.subarray(0, bytes.length - 8)),
      ErrorCode.INVALID_ARGUMENT,
      'strategyState',
    );
  });

  it('configures clients, if at all, with settings the wire carries, the same for every attempt', () => {
    const strategy = buildIt();
    const clients = ['c0', 'c1', 'c2'];
    const first = strategy.configureTrain?.(2, clients);
    if (first === undefined) return;
    const perClient = first instanceof Map ? first : new Map(clients.map((c) => [c, first]));
    for (const settings of perClient.values()) {
      expect(trainStrategySchema.safeParse({ name, settings }).success).toBe(true);
    }
    // A retried attempt (after a round ran in between) and a fresh instance send the same.
    runRounds(strategy, 1, 2, initial);
    expect(strategy.configureTrain?.(2, clients)).toEqual(first);
    expect(buildIt().configureTrain?.(2, clients)).toEqual(first);
  });

  it.runIf(traits.robust !== undefined)(
    'with 2 of 10 updates sign-flipped x10 stays close to the honest mean',
    () => {
      const robust = traits.robust as NonNullable<Traits['robust']>;
      const global = new Float32Array(PARAMS);
      const honest = updatesFor(7, global, 8);
      const attackers = honest.slice(0, 2).map((u, k) => ({
        ...u,
        clientId: `evil${k}`,
        weights: Float32Array.from(
          u.weights,
          (w, i) => (global[i] as number) - 10 * (w - (global[i] as number)),
        ),
      }));
      // Attackers in the middle of the arrival order, as they would be in a real round.
      const updates = [...honest.slice(0, 4), ...attackers, ...honest.slice(4)];
      const mean = Float64Array.from(
        { length: PARAMS },
        (_, i) => honest.reduce((sum, u) => sum + (u.weights[i] as number), 0) / honest.length,
      );
      const spread = Math.max(
        ...honest.map((u) => norm(Float64Array.from(u.weights, (w, i) => w - (mean[i] as number)))),
      );
      const distance = (weights: Float32Array | null) =>
        norm(Float64Array.from(weights ?? [], (w, i) => w - (mean[i] as number)));
      const result = runRound(createStrategy(name, robust.options), 1, global, updates).weights;
      const examples = (list: TrainUpdate[]) => list.reduce((sum, u) => sum + u.numExamples, 0);
      const share = traits.weighted ? examples(attackers) / examples(updates) : 2 / 10;
      const bound = robust.bound(spread, norm(mean), share);
      expect(distance(result)).toBeLessThanOrEqual(bound);
      // The attack is strong enough to matter: FedAvg lands far outside that bound.
      const fedavg = runRound(createStrategy('fedavg'), 1, global, updates).weights;
      expect(distance(fedavg)).toBeGreaterThan(2 * bound);
    },
  );
});
