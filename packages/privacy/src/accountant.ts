import { ErrorCode, TesseraError } from '@tessera/protocol';
import {
  checkGaussianStep,
  checkOrders,
  DEFAULT_RDP_ORDERS,
  type EpsilonAtOrder,
  epsilonFromRdp,
  rdpSampledGaussian,
} from './rdp.js';

/** One step of the sampled Gaussian mechanism: Poisson sampling at q, noise sigma * C. */
export interface GaussianStep {
  /** q in [0, 1]: each client's (record's) independent chance of being in the step. */
  readonly samplingRate: number;
  /** sigma > 0: the noise's standard deviation over the L2 sensitivity C. */
  readonly noiseMultiplier: number;
}

export interface PrivacyBudget {
  readonly epsilon: number;
  readonly delta: number;
}

/** The accountant as JSON: which steps were taken, how often, at which orders. */
export interface AccountantState {
  readonly version: 1;
  readonly orders: readonly number[];
  readonly steps: readonly (GaussianStep & { readonly count: number })[];
}

const stepKey = (step: GaussianStep) => `${step.samplingRate}|${step.noiseMultiplier}`;

function stateError(message: string): TesseraError {
  return new TesseraError(ErrorCode.INVALID_ARGUMENT, `accountant state: ${message}`, {
    field: 'accountant',
  });
}

/**
 * The privacy spent by a sequence of sampled Gaussian steps, as an immutable value: RDP adds
 * over steps (composition), so the state is only how many steps were taken at each
 * (q, sigma), and epsilon for any delta is derived from it. `withSteps` returns a new
 * accountant; JSON (`toJSON` / `Accountant.fromJSON`) round-trips exactly, so an engine can
 * commit it with each round and rebuild it on resume.
 *
 * The guarantee is for add/remove-one adjacency at the unit that is sampled (one client in
 * DP-FedAvg: user-level DP), under Poisson sampling at the stated rate; a step must be counted
 * for every release of a noised aggregate.
 */
export class Accountant {
  private readonly entries: ReadonlyMap<string, GaussianStep & { count: number }>;
  private readonly total: Float64Array;
  /** Per-step RDP vectors, shared by the accountants derived from one another. */
  private readonly cache: Map<string, Float64Array>;

  private constructor(
    readonly orders: readonly number[],
    entries: ReadonlyMap<string, GaussianStep & { count: number }>,
    total: Float64Array,
    cache: Map<string, Float64Array>,
  ) {
    this.entries = entries;
    this.total = total;
    this.cache = cache;
  }

  /** No steps taken yet, at `orders` (default: DEFAULT_RDP_ORDERS). */
  static empty(orders: readonly number[] = DEFAULT_RDP_ORDERS): Accountant {
    checkOrders(orders);
    const frozen = Object.freeze([...orders]);
    return new Accountant(frozen, new Map(), new Float64Array(frozen.length), new Map());
  }

  private stepRdp(step: GaussianStep): Float64Array {
    const key = stepKey(step);
    let rdp = this.cache.get(key);
    if (rdp === undefined) {
      rdp = rdpSampledGaussian(step.samplingRate, step.noiseMultiplier, this.orders);
      this.cache.set(key, rdp);
    }
    return rdp;
  }

  /** This accountant with `count` more steps of `step` (count: a non-negative integer). */
  withSteps(step: GaussianStep, count = 1): Accountant {
    checkGaussianStep(step.samplingRate, step.noiseMultiplier);
    if (!Number.isSafeInteger(count) || count < 0) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `a step count is a non-negative integer, got ${count}`,
        { field: 'count' },
      );
    }
    if (count === 0) return this;
    const entries = new Map(this.entries);
    const key = stepKey(step);
    const previous = entries.get(key)?.count ?? 0;
    entries.set(key, {
      samplingRate: step.samplingRate,
      noiseMultiplier: step.noiseMultiplier,
      count: previous + count,
    });
    // The total is summed afresh in entry order, so the same steps give the same bits however
    // they were added (and an accountant rebuilt from JSON equals the one that wrote it).
    const total = new Float64Array(this.orders.length);
    for (const entry of entries.values()) {
      const rdp = this.stepRdp(entry);
      for (let i = 0; i < total.length; i++)
        total[i] = (total[i] as number) + entry.count * (rdp[i] as number);
    }
    return new Accountant(this.orders, entries, total, this.cache);
  }

  /** How many steps were taken, over all (q, sigma). */
  get steps(): number {
    let steps = 0;
    for (const entry of this.entries.values()) steps += entry.count;
    return steps;
  }

  /** The composed RDP at each order (a copy). */
  rdp(): Float64Array {
    return this.total.slice();
  }

  /** The smallest epsilon for `delta` over the orders (0 before any step). */
  epsilon(delta: number): EpsilonAtOrder {
    return epsilonFromRdp(this.total, this.orders, delta);
  }

  /**
   * Whether taking `count` more steps of `nextStep` would take epsilon (at `budget.delta`)
   * past `budget.epsilon`: the check to make BEFORE a round runs, so a run stops inside its
   * budget rather than one round after it.
   */
  wouldExceed(budget: PrivacyBudget, nextStep: GaussianStep, count = 1): boolean {
    checkBudget(budget);
    return this.withSteps(nextStep, count).epsilon(budget.delta).epsilon > budget.epsilon;
  }

  toJSON(): AccountantState {
    return {
      version: 1,
      orders: [...this.orders],
      steps: [...this.entries.values()].map((entry) => ({ ...entry })),
    };
  }

  /** Rebuilds an accountant from `toJSON`'s output; anything else is INVALID_ARGUMENT. */
  static fromJSON(value: unknown): Accountant {
    if (typeof value !== 'object' || value === null) throw stateError('not an object');
    const state = value as Record<string, unknown>;
    if (state['version'] !== 1)
      throw stateError(`version ${String(state['version'])}; this build reads 1`);
    const orders = state['orders'];
    if (!Array.isArray(orders) || !orders.every((o) => typeof o === 'number')) {
      throw stateError('orders must be an array of numbers');
    }
    const steps = state['steps'];
    if (!Array.isArray(steps)) throw stateError('steps must be an array');
    let accountant: Accountant;
    try {
      accountant = Accountant.empty(orders as number[]);
      for (const entry of steps) {
        if (typeof entry !== 'object' || entry === null)
          throw stateError('a step is not an object');
        const { samplingRate, noiseMultiplier, count } = entry as Record<string, unknown>;
        if (
          typeof samplingRate !== 'number' ||
          typeof noiseMultiplier !== 'number' ||
          typeof count !== 'number'
        ) {
          throw stateError('a step needs numbers samplingRate, noiseMultiplier and count');
        }
        accountant = accountant.withSteps({ samplingRate, noiseMultiplier }, count);
      }
    } catch (error) {
      if (error instanceof TesseraError && error.data?.['field'] === 'accountant') throw error;
      throw stateError(error instanceof Error ? error.message : String(error));
    }
    return accountant;
  }
}

/** Refuses a budget whose epsilon is not positive or whose delta is outside (0, 1). */
export function checkBudget(budget: PrivacyBudget): void {
  if (!(budget.epsilon > 0)) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `a privacy budget's epsilon must be positive, got ${budget.epsilon}`,
      { field: 'budget.epsilon' },
    );
  }
  if (!(budget.delta > 0 && budget.delta < 1)) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `a privacy budget's delta must be in (0, 1), got ${budget.delta}`,
      { field: 'budget.delta' },
    );
  }
}

export interface NoiseMultiplierQuery {
  /** The epsilon to stay within after `steps` steps. */
  epsilon: number;
  delta: number;
  samplingRate: number;
  steps: number;
  orders?: readonly number[];
  /** Relative precision of the answer (default 1e-3). */
  tolerance?: number;
}

/**
 * The smallest noise multiplier (to `tolerance`, relative) whose `steps` steps at
 * `samplingRate` stay within (epsilon, delta): for choosing sigma when a run is created.
 * Bisection, since epsilon falls as sigma grows; the answer returned always meets the budget
 * (it is the upper end of the last bracket). A budget no sigma up to 10^6 meets is refused.
 */
export function noiseMultiplierFor(query: NoiseMultiplierQuery): number {
  const { epsilon, delta, samplingRate, steps } = query;
  const orders = query.orders ?? DEFAULT_RDP_ORDERS;
  const tolerance = query.tolerance ?? 1e-3;
  checkBudget({ epsilon, delta });
  if (!Number.isSafeInteger(steps) || steps < 1) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `steps must be a positive integer, got ${steps}`,
      {
        field: 'steps',
      },
    );
  }
  if (!(tolerance > 0 && tolerance < 1)) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `tolerance must be in (0, 1), got ${tolerance}`,
      {
        field: 'tolerance',
      },
    );
  }
  checkGaussianStep(samplingRate, 1);
  if (samplingRate === 0) {
    // Nothing is ever sampled: every sigma meets every budget, so none is the answer.
    throw new TesseraError(ErrorCode.INVALID_ARGUMENT, 'samplingRate must be above 0', {
      field: 'samplingRate',
    });
  }
  const spent = (sigma: number) =>
    epsilonFromRdp(
      rdpSampledGaussian(samplingRate, sigma, orders).map((r) => r * steps),
      orders,
      delta,
    ).epsilon;
  let high = 1;
  while (spent(high) > epsilon) {
    high *= 2;
    if (high > 1e6) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `no noise multiplier up to 1e6 keeps ${steps} steps at q=${samplingRate} within epsilon=${epsilon}, delta=${delta}`,
        { field: 'epsilon' },
      );
    }
  }
  let low = high / 2;
  while (spent(low) <= epsilon && low > 1e-6) {
    high = low;
    low /= 2;
  }
  while ((high - low) / high > tolerance) {
    const middle = (low + high) / 2;
    if (spent(middle) > epsilon) low = middle;
    else high = middle;
  }
  return high;
}
