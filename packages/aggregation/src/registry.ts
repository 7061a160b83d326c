import { ErrorCode, TesseraError, WIRE_LIMITS } from '@tessera/protocol';
import { z } from 'zod';
import { CenteredClipping, NormBoundedFedAvg } from './clipping.js';
import { FedAvg } from './fedavg.js';
import { FedAvgM } from './fedavgm.js';
import { FedAdagrad, FedAdam, FedYogi } from './fedopt.js';
import { FedProx } from './fedprox.js';
import { Bulyan, Krum } from './krum.js';
import { FedMedian, TrimmedMean } from './robust.js';
import type { Strategy } from './strategy.js';

/**
 * One aggregation strategy: its options as a schema (strict: an unknown key is refused), and
 * how to build it from options that passed the schema. The schema is what a run is checked
 * against when it is created, what `GET /api/meta` publishes, and what `createStrategy` parses.
 */
interface StrategyDefinition {
  options: z.ZodObject;
  build(options: Record<string, unknown>): Strategy;
  /** The fewest updates a round must bring for the rule to run (Krum: 2f + 3). */
  minUpdates(options: Record<string, unknown>): number;
}

function define<S extends z.ZodObject>(
  options: S,
  build: (options: z.output<S>) => Strategy,
  minUpdates: (options: z.output<S>) => number = () => 1,
): StrategyDefinition {
  return {
    options,
    build: (parsed) => build(parsed as z.output<S>),
    minUpdates: (parsed) => minUpdates(parsed as z.output<S>),
  };
}

/** The server optimisers' options; defaults are Flower's, after Reddi et al. 2021. */
const fedOptOptions = (eta: number, tau: number) => ({
  serverLearningRate: z.number().positive().max(1000).default(eta),
  beta1: z.number().min(0).lt(1, 'must be below 1').default(0.9),
  beta2: z.number().min(0).lt(1, 'must be below 1').default(0.99),
  tau: z.number().positive().max(1000).default(tau),
});

/** Byzantine clients tolerated per round (Krum, Bulyan). */
const byzantineCount = z.int().min(0).max(10_000).default(1);

const definitions: Record<string, StrategyDefinition> = {
  fedavg: define(z.strictObject({}), () => new FedAvg()),
  fedavgm: define(
    z.strictObject({
      serverLearningRate: z.number().positive().max(1000).default(1),
      momentum: z.number().min(0).lt(1, 'must be below 1').default(0.9),
    }),
    (options) => new FedAvgM(options),
  ),
  // Li et al. 2020 tune mu over {0.001, 0.01, 0.1, 0.5, 1}; 0.01 is Flower's usual example value.
  fedprox: define(
    z.strictObject({ mu: z.number().min(0).max(WIRE_LIMITS.maxProximalMu).default(0.01) }),
    (options) => new FedProx(options),
  ),
  fedmedian: define(z.strictObject({}), () => new FedMedian()),
  'trimmed-mean': define(
    z.strictObject({ beta: z.number().min(0).lt(0.5, 'must be below 0.5').default(0.1) }),
    ({ beta }) => new TrimmedMean(beta),
  ),
  fedadam: define(z.strictObject(fedOptOptions(0.1, 1e-9)), (options) => new FedAdam(options)),
  fedyogi: define(z.strictObject(fedOptOptions(0.01, 1e-3)), (options) => new FedYogi(options)),
  fedadagrad: define(
    z.strictObject({
      serverLearningRate: fedOptOptions(0.1, 1e-9).serverLearningRate,
      // Flower's FedAdagrad has no first moment; the paper's Algorithm 2 allows one.
      beta1: z.number().min(0).lt(1, 'must be below 1').default(0),
      tau: fedOptOptions(0.1, 1e-9).tau,
    }),
    (options) => new FedAdagrad(options),
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

/** Builds a strategy by name; unknown names and options are refused with INVALID_ARGUMENT. */
export function createStrategy(name: string, options: Record<string, unknown> = {}): Strategy {
  return definitionOf(name).build(parseStrategyOptions(name, options));
}
