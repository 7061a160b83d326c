import { CryptoGaussianNoise, type GaussianNoise } from '@tessera/privacy';
import { ErrorCode, type RunRuleFields, TesseraError, WIRE_LIMITS } from '@tessera/protocol';
import { z } from 'zod';
import { CenteredClipping, NormBoundedFedAvg } from './clipping.js';
import { DpFedAvg, vectorNoiseMultiplier } from './dp.js';
import { FedAvg } from './fedavg.js';
import { FedAvgM } from './fedavgm.js';
import { FedAdagrad, FedAdam, FedYogi } from './fedopt.js';
import { FedProx } from './fedprox.js';
import { Bulyan, Krum } from './krum.js';
import { FedMedian, TrimmedMean } from './robust.js';
import { Scaffold } from './scaffold.js';
import type { Strategy } from './strategy.js';
import { AGGREGATION_ARITHMETICS, type AggregationArithmetic } from './weighted.js';

/**
 * How the FedAvg family sums a round (weighted.ts). The default stays `float64-sequential`:
 * the exact fold costs about 5.7x the float64 one on the event loop (docs/research.md), and
 * buys nothing on one coordinator; with several, a run that asks for `exact` (and keeps no
 * updates) has its updates folded where they arrive (docs/research.md).
 * A stored run without the option was recorded before it existed, when every sum was
 * `float64-sequential`, and `createStrategy` builds it so (RECORDED_BEFORE_ARITHMETIC).
 */
const arithmeticOption = z
  .enum(AGGREGATION_ARITHMETICS)
  .default('float64-sequential')
  .describe(
    'how the round sums the weighted models: exact (independent of arrival order and of partial sums) or float64-sequential (float64 in arrival order, as runs recorded before this option)',
  );
const RECORDED_BEFORE_ARITHMETIC: AggregationArithmetic = 'float64-sequential';

/**
 * One aggregation strategy: its options as a schema (strict: an unknown key is refused), and
 * how to build it from options that passed the schema. The schema is what a run is checked
 * against when it is created, what `GET /api/meta` publishes, and what `createStrategy` parses.
 */
interface StrategyDefinition {
  options: z.ZodObject;
  build(options: Record<string, unknown>, dependencies: StrategyDependencies): Strategy;
  /** The fewest updates a round must bring for the rule to run (Krum: 2f + 3). */
  minUpdates(options: Record<string, unknown>): number;
  /**
   * The round's aggregate depends on the updates only through their example-weighted sum (and
   * the example count): what secure aggregation gives the coordinator. False: the rule needs
   * the individual updates (a median, distances between updates, per-update clipping).
   */
  linear: boolean;
}

/**
 * What a strategy may need from outside that is not an option: the source of a DP rule's
 * noise (default: CryptoGaussianNoise; a SeededGaussianNoise only in tests, where bit-identical
 * results are wanted and privacy is not).
 */
export interface StrategyDependencies {
  noise?: GaussianNoise;
}

function define<S extends z.ZodObject>(
  options: S,
  build: (options: z.output<S>, dependencies: StrategyDependencies) => Strategy,
  minUpdates: (options: z.output<S>) => number = () => 1,
  linear = false,
): StrategyDefinition {
  return {
    options,
    build: (parsed, dependencies) => build(parsed as z.output<S>, dependencies),
    minUpdates: (parsed) => minUpdates(parsed as z.output<S>),
    linear,
  };
}

const one = () => 1;

/**
 * Why each rule that reads individual updates cannot run where only their sum is held;
 * `onlyTheSum` says who holds which sum.
 */
function refusedWithOnlyTheSum(onlyTheSum: string): Record<string, string> {
  const needs = `needs the individual updates, and ${onlyTheSum}`;
  return {
    fedmedian: `the coordinate-wise median ${needs}`,
    'trimmed-mean': `the trimmed mean ${needs}`,
    krum: `Krum picks one update by distances between updates: it ${needs}`,
    'multi-krum': `Multi-Krum picks updates by distances between updates: it ${needs}`,
    bulyan: `Bulyan selects and trims individual updates: it ${needs}`,
    'centered-clipping': `centered clipping clips each update around a centre: it ${needs}`,
  };
}

const onlyTheSecureSum = 'under secure aggregation the coordinator has only their sum';
/** Why each rule that is not linear cannot run under secure aggregation. */
const SECAGG_REFUSED: Readonly<Record<string, string>> = {
  ...refusedWithOnlyTheSum(onlyTheSecureSum),
  'norm-bounded-fedavg': `norm-bounded FedAvg clips each update by its norm: it needs the individual updates, and ${onlyTheSecureSum}`,
  scaffold:
    "scaffold also folds each client's control-variate change (controlDelta), which secure aggregation does not mask yet",
};

/** The server optimisers' options; defaults are Flower's, after Reddi et al. 2021. */
const fedOptOptions = (eta: number, tau: number) => ({
  serverLearningRate: z.number().positive().max(1000).default(eta),
  beta1: z.number().min(0).lt(1, 'must be below 1').default(0.9),
  beta2: z.number().min(0).lt(1, 'must be below 1').default(0.99),
  tau: z.number().positive().max(1000).default(tau),
  arithmetic: arithmeticOption,
});

/** Byzantine clients tolerated per round (Krum, Bulyan). */
const byzantineCount = z.int().min(0).max(10_000).default(1);

/**
 * Server rules DP-FedAvg can wrap: each takes the noised mean change as its pseudo-gradient.
 * The others are refused, with the reason: under DP the aggregator holds only a noised sum.
 */
const DP_INNER_STRATEGIES = ['fedavg', 'fedavgm', 'fedadam', 'fedyogi', 'fedadagrad'];
const DP_REFUSED_INNER: Readonly<Record<string, string>> = {
  ...refusedWithOnlyTheSum('DP-FedAvg has only their clipped, noised sum'),
  'norm-bounded-fedavg':
    'norm-bounded FedAvg clips each update and weights it by examples; DP-FedAvg already clips (clipNorm) and must not weight',
  'dp-fedavg': 'dp-fedavg cannot wrap itself',
  // Its server side is FedAvg; what it adds is the clients' proximal term, and the clients
  // take settings by strategy name: they do not know dp-fedavg's yet (packages/client).
  scaffold:
    'scaffold also folds the individual updates’ control-variate changes (controlDelta), which DP-FedAvg neither clips nor noises',
  fedprox:
    'fedprox needs its proximalMu honoured by the clients, which do not take it under dp-fedavg yet; wrap fedavg',
};

const dpFedAvgOptions = z
  .strictObject({
    noiseMultiplier: z
      .number()
      .positive()
      .max(1000)
      .describe('z: Gaussian noise std over the clip norm, the multiplier the accountant counts'),
    clipNorm: z
      .number()
      .positive()
      .max(1e6)
      .optional()
      .describe('fixed clipping: the L2 bound C of every client change (or give adaptive)'),
    adaptive: z
      .strictObject({
        targetQuantile: z
          .number()
          .gt(0)
          .lt(1)
          .default(0.5)
          .describe('gamma: share of updates that should be unclipped (Andrew et al. 2021)'),
        learningRate: z
          .number()
          .positive()
          .max(10)
          .default(0.2)
          .describe('eta_C of the geometric update C <- C exp(-eta_C (b - gamma))'),
        initialClipNorm: z.number().positive().max(1e6).default(0.1).describe('C in round 1'),
        countNoiseMultiplier: z
          .number()
          .positive()
          .max(1e6)
          .optional()
          .describe(
            'sigma_b: noise std on the count of unclipped updates; default expectedClientsPerRound / 20',
          ),
      })
      .optional()
      .describe('adaptive clipping by the quantile method (or give clipNorm)'),
    expectedClientsPerRound: z
      .int()
      .min(1)
      .max(1_000_000)
      .describe(
        'm = qN: the fixed denominator of the noised sum (clients a round samples in expectation)',
      ),
    samplingRate: z
      .number()
      .gt(0)
      .max(1)
      .optional()
      .describe(
        'q: each client’s chance of being in a round (Poisson sampling), for the accountant',
      ),
    delta: z.number().gt(0).lt(1).optional().describe('delta at which epsilon is reported'),
    budget: z
      .strictObject({
        epsilon: z.number().positive().max(1e6),
        delta: z.number().gt(0).lt(1),
      })
      .optional()
      .describe('(epsilon, delta): the run stops before a round would exceed it'),
    innerStrategy: z
      .string()
      .default('fedavg')
      .describe(`server rule stepping by the noised mean: ${DP_INNER_STRATEGIES.join(', ')}`),
    innerOptions: z
      .record(z.string(), z.unknown())
      .default({})
      .describe('the inner rule’s options'),
  })
  .superRefine((options, context) => {
    if ((options.clipNorm === undefined) === (options.adaptive === undefined)) {
      context.addIssue({
        code: 'custom',
        path: ['clipNorm'],
        message: 'give exactly one of clipNorm (fixed clipping) and adaptive',
      });
    }
    const inner = options.innerStrategy;
    const refusal = DP_REFUSED_INNER[inner];
    if (refusal !== undefined || !DP_INNER_STRATEGIES.includes(inner)) {
      context.addIssue({
        code: 'custom',
        path: ['innerStrategy'],
        message:
          refusal ??
          `unknown inner strategy "${inner}"; dp-fedavg wraps ${DP_INNER_STRATEGIES.join(', ')}`,
      });
    } else {
      try {
        parseStrategyOptions(inner, options.innerOptions);
      } catch (error) {
        const field = String((error as TesseraError).data?.['field'] ?? 'strategyOptions');
        context.addIssue({
          code: 'custom',
          path: ['innerOptions', ...field.split('.').slice(1)],
          message: (error as Error).message,
        });
      }
    }
    if (options.budget !== undefined && options.samplingRate === undefined) {
      context.addIssue({
        code: 'custom',
        path: ['samplingRate'],
        message: 'a budget needs the sampling rate, or the accountant cannot count',
      });
    }
    if (
      options.budget !== undefined &&
      options.delta !== undefined &&
      options.delta !== options.budget.delta
    ) {
      context.addIssue({
        code: 'custom',
        path: ['delta'],
        message: `delta ${options.delta} differs from the budget's ${options.budget.delta}`,
      });
    }
    if (options.adaptive !== undefined) {
      const sigmaB = options.adaptive.countNoiseMultiplier ?? options.expectedClientsPerRound / 20;
      try {
        vectorNoiseMultiplier(options.noiseMultiplier, sigmaB);
      } catch (error) {
        context.addIssue({
          code: 'custom',
          path: ['adaptive', 'countNoiseMultiplier'],
          message: (error as Error).message,
        });
      }
    }
  });

const definitions: Record<string, StrategyDefinition> = {
  fedavg: define(
    z.strictObject({ arithmetic: arithmeticOption }),
    (options) => new FedAvg(options),
    one,
    true,
  ),
  fedavgm: define(
    z.strictObject({
      serverLearningRate: z.number().positive().max(1000).default(1),
      momentum: z.number().min(0).lt(1, 'must be below 1').default(0.9),
      arithmetic: arithmeticOption,
    }),
    (options) => new FedAvgM(options),
    one,
    true,
  ),
  // Li et al. 2020 tune mu over {0.001, 0.01, 0.1, 0.5, 1}; 0.01 is Flower's usual example value.
  fedprox: define(
    z.strictObject({
      mu: z.number().min(0).max(WIRE_LIMITS.maxProximalMu).default(0.01),
      arithmetic: arithmeticOption,
    }),
    (options) => new FedProx(options),
    one,
    true,
  ),
  scaffold: define(
    z.strictObject({
      serverLearningRate: z
        .number()
        .positive()
        .max(1000)
        .default(1)
        .describe('eta_g: x <- x + eta_g mean(y_i - x)'),
      clientCount: z
        .int()
        .min(1)
        .max(1_000_000)
        .optional()
        .describe(
          'N, the clients eligible to be sampled: c <- c + |S|/N mean(delta c_i); default |S|',
        ),
      arithmetic: arithmeticOption,
    }),
    (options) => new Scaffold(options),
  ),
  fedmedian: define(z.strictObject({}), () => new FedMedian()),
  'trimmed-mean': define(
    z.strictObject({ beta: z.number().min(0).lt(0.5, 'must be below 0.5').default(0.1) }),
    ({ beta }) => new TrimmedMean(beta),
  ),
  fedadam: define(
    z.strictObject(fedOptOptions(0.1, 1e-9)),
    (options) => new FedAdam(options),
    one,
    true,
  ),
  fedyogi: define(
    z.strictObject(fedOptOptions(0.01, 1e-3)),
    (options) => new FedYogi(options),
    one,
    true,
  ),
  fedadagrad: define(
    z.strictObject({
      serverLearningRate: fedOptOptions(0.1, 1e-9).serverLearningRate,
      // Flower's FedAdagrad has no first moment; the paper's Algorithm 2 allows one.
      beta1: z.number().min(0).lt(1, 'must be below 1').default(0),
      tau: fedOptOptions(0.1, 1e-9).tau,
      arithmetic: arithmeticOption,
    }),
    (options) => new FedAdagrad(options),
    one,
    true,
  ),
  krum: define(
    z.strictObject({ f: byzantineCount }),
    ({ f }) => new Krum(f, undefined, false),
    ({ f }) => 2 * f + 3,
  ),
  'multi-krum': define(
    z.strictObject({ f: byzantineCount, m: z.int().min(1).max(10_000).optional() }),
    ({ f, m }) => new Krum(f, m, true),
    ({ f, m }) => Math.max(2 * f + 3, (m ?? 0) + f),
  ),
  bulyan: define(
    z.strictObject({ f: byzantineCount }),
    ({ f }) => new Bulyan(f),
    ({ f }) => 4 * f + 3,
  ),
  'centered-clipping': define(
    z.strictObject({
      tau: z.number().positive().max(1e6).default(10),
      iterations: z.int().min(1).max(100).default(1),
    }),
    ({ tau, iterations }) => new CenteredClipping(tau, iterations),
  ),
  'norm-bounded-fedavg': define(
    z.strictObject({ normBound: z.number().positive().max(1e6).default(5) }),
    ({ normBound }) => new NormBoundedFedAvg(normBound),
  ),
  'dp-fedavg': define(dpFedAvgOptions, (options, dependencies) => {
    const { adaptive, ...rest } = options;
    return new DpFedAvg(
      {
        ...rest,
        ...(adaptive === undefined
          ? {}
          : {
              adaptive: {
                ...adaptive,
                countNoiseMultiplier:
                  adaptive.countNoiseMultiplier ?? options.expectedClientsPerRound / 20,
              },
            }),
      },
      createStrategy(options.innerStrategy, options.innerOptions),
      dependencies.noise ?? new CryptoGaussianNoise(),
    );
  }),
};

export const STRATEGY_NAMES = Object.keys(definitions);

/** Each strategy's options schema, by strategy name (for the run schema and the console). */
export const STRATEGY_OPTIONS: Readonly<Record<string, z.ZodObject>> = Object.fromEntries(
  Object.entries(definitions).map(([name, definition]) => [name, definition.options]),
);

function definitionOf(name: string): StrategyDefinition {
  const definition = definitions[name];
  if (!definition) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `unknown strategy "${name}"; available: ${STRATEGY_NAMES.join(', ')}`,
      { field: 'strategy' },
    );
  }
  return definition;
}

/**
 * A strategy's options, checked against its schema with defaults filled in; the first bad one
 * is refused with INVALID_ARGUMENT naming it (`strategyOptions` for unknown keys).
 */
export function parseStrategyOptions(
  name: string,
  options: Record<string, unknown> = {},
): Record<string, unknown> {
  const schema = definitionOf(name).options;
  const result = schema.safeParse(options);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  if (issue?.code === 'unrecognized_keys') {
    const known = Object.keys(schema.shape);
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `${name} takes ${known.length > 0 ? known.join(', ') : 'no options'}; got ${issue.keys.join(', ')}`,
      { field: 'strategyOptions' },
    );
  }
  const field = ['strategyOptions', ...(issue?.path ?? []).map(String)].join('.');
  throw new TesseraError(
    ErrorCode.INVALID_ARGUMENT,
    `${name}: ${field}: ${issue?.message ?? 'invalid'}`,
    { field },
  );
}

/**
 * The fewest updates a round must bring for `name` with `options` to aggregate it (Krum needs
 * n >= 2f + 3, Bulyan n >= 4f + 3; every other rule 1). A run whose minClients is below this
 * would fail the first round that gets fewer: check it when the run is created.
 */
export function minUpdatesFor(name: string, options: Record<string, unknown> = {}): number {
  const definition = definitionOf(name);
  return definition.minUpdates(parseStrategyOptions(name, options));
}

/**
 * Whether `name`'s aggregate depends on a round's updates only through their example-weighted
 * sum, so it can run under secure aggregation (unknown names: INVALID_ARGUMENT).
 */
export function isLinearStrategy(name: string): boolean {
  return definitionOf(name).linear;
}

/**
 * The arithmetic a strategy recorded with `options` sums in (see createStrategy), or null for a
 * rule that takes none (the median, Krum... do not sum).
 */
export function recordedArithmetic(
  name: string,
  options: Record<string, unknown> = {},
): AggregationArithmetic | null {
  if (!('arithmetic' in definitionOf(name).options.shape)) return null;
  const given = options['arithmetic'];
  if (given === undefined) return RECORDED_BEFORE_ARITHMETIC;
  return parseStrategyOptions(name, options)['arithmetic'] as AggregationArithmetic;
}

/**
 * Builds a strategy by name from options as a run records them; unknown names and options are
 * refused with INVALID_ARGUMENT. A rule that takes `arithmetic`, given options without it, sums
 * in float64 in arrival order: those are the options of a run recorded before the option
 * existed (a run created now has it filled in by the schema), so it replays as it ran.
 */
export function createStrategy(
  name: string,
  options: Record<string, unknown> = {},
  dependencies: StrategyDependencies = {},
): Strategy {
  const definition = definitionOf(name);
  const recorded =
    'arithmetic' in definition.options.shape && !('arithmetic' in options)
      ? { ...options, arithmetic: RECORDED_BEFORE_ARITHMETIC }
      : options;
  return definition.build(parseStrategyOptions(name, recorded), dependencies);
}

/**
 * What a strategy asks of the run's other fields, as issues at their paths (empty: none).
 * dp-fedavg: its accountant assumes each client is sampled independently with probability
 * q = samplingRate (the engine's Poisson sampling), so q is required, and clientsPerRound and
 * fractionFit, which would fix the sample's size instead, are refused; an individual update is
 * exactly what DP protects, so keepUpdates (which stores every one for replay) is refused.
 */
export function runRulesFor(
  name: string,
  options: Record<string, unknown>,
  run: RunRuleFields,
): { path: string[]; message: string }[] {
  const issues: { path: string[]; message: string }[] = [];
  // dp-fedavg is not linear in the weighted updates, but under SecAgg its clients clip and
  // weigh themselves 1, and the coordinator noises the unmasked sum (its own rules below).
  if (run.secureAggregation !== null && !definitionOf(name).linear && name !== 'dp-fedavg') {
    issues.push({
      path: ['secureAggregation'],
      message: `${name} cannot run under secure aggregation: ${SECAGG_REFUSED[name] ?? 'its aggregate is not a weighted sum of the updates'}`,
    });
  }
  if (name !== 'dp-fedavg') return issues;
  if (options['samplingRate'] === undefined) {
    issues.push({
      path: ['strategyOptions', 'samplingRate'],
      message:
        'dp-fedavg samples each client with probability samplingRate (q), which the accountant counts; give it',
    });
  }
  if (run.keepUpdates) {
    issues.push({
      path: ['keepUpdates'],
      message:
        'dp-fedavg protects the individual updates; keeping them for replay would store exactly what it hides',
    });
  }
  if (run.secureAggregation !== null) {
    if (options['adaptive'] !== undefined) {
      issues.push({
        path: ['strategyOptions', 'adaptive'],
        message:
          'dp-fedavg under secure aggregation clips on the clients to a fixed clipNorm: adaptive clipping would need the count of unclipped updates, which the secure sum does not carry',
      });
    }
    const clipNorm = options['clipNorm'];
    if (typeof clipNorm === 'number' && clipNorm > run.secureAggregation.clipRange) {
      issues.push({
        path: ['secureAggregation', 'clipRange'],
        message: `must cover dp-fedavg's clipNorm ${clipNorm}: a change of L2 norm C has coordinates up to C, which the coordinate clip to [-R, R] would cut`,
      });
    }
  }
  for (const field of ['clientsPerRound', 'fractionFit'] as const) {
    if (run[field] !== null) {
      issues.push({
        path: [field],
        message: `dp-fedavg samples each client with probability strategyOptions.samplingRate, not a fixed ${field}`,
      });
    }
  }
  return issues;
}
