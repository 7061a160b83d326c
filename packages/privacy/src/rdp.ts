/**
 * Rényi differential privacy of the sampled Gaussian mechanism (Mironov, Talwar, Zhang,
 * "Rényi Differential Privacy of the Sampled Gaussian Mechanism", 2019, arXiv:1908.10530):
 * each record is included independently with probability q (Poisson sampling), the included
 * records' contributions (each of L2 norm at most C) are summed, and N(0, sigma^2 C^2 I) is
 * added. Its RDP at order alpha is log(A_alpha) / (alpha - 1), with
 *
 *   A_alpha = E_{z ~ mu_0} [(mu(z) / mu_0(z))^alpha],  mu_0 = N(0, sigma^2),
 *   mu = (1 - q) mu_0 + q N(1, sigma^2)
 *
 * (add/remove-one adjacency). RDP composes by addition over steps (Mironov 2017, Prop. 1),
 * and converts to (epsilon, delta)-DP by the bound of Balle, Barthe, Gaboardi, Hsu, Sato,
 * "Hypothesis Testing Interpretations and Renyi Differential Privacy", AISTATS 2020, Thm. 21:
 *
 *   epsilon = rdp(alpha) + log((alpha - 1) / alpha) - (log delta + log alpha) / (alpha - 1),
 *
 * minimised over the orders computed (the conversion TF Privacy's dp_accounting and Opacus use).
 */
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { logAdd, logErfc, SIGNED_ZERO, type SignedLog, signedLogAdd } from './logmath.js';

/**
 * The orders the accountant evaluates by default: dense where small budgets are decided
 * (1.25 ... 4.5), every integer to 64, and a few large ones for large noise or few steps.
 * A finer grid can only lower epsilon; this one is within 1% of a 0.01-spaced grid on the
 * published examples in rdp.test.ts.
 */
export const DEFAULT_RDP_ORDERS: readonly number[] = Object.freeze([
  1.25,
  1.5,
  1.75,
  2,
  2.25,
  2.5,
  3,
  3.5,
  4,
  4.5,
  ...Array.from({ length: 60 }, (_, i) => i + 5),
  128,
  256,
  512,
  1024,
]);

function invalid(field: string, message: string): TesseraError {
  return new TesseraError(ErrorCode.INVALID_ARGUMENT, message, { field });
}

/** Refuses a sampling rate outside [0, 1] or a noise multiplier that is not a positive number. */
export function checkGaussianStep(samplingRate: number, noiseMultiplier: number): void {
  if (!(samplingRate >= 0 && samplingRate <= 1)) {
    throw invalid('samplingRate', `samplingRate must be in [0, 1], got ${samplingRate}`);
  }
  if (!(noiseMultiplier > 0) || !Number.isFinite(noiseMultiplier)) {
    throw invalid(
      'noiseMultiplier',
      `noiseMultiplier must be a positive finite number, got ${noiseMultiplier}`,
    );
  }
}

/** Refuses an empty list of orders or an order that is not a finite number above 1. */
export function checkOrders(orders: readonly number[]): void {
  if (orders.length === 0) throw invalid('orders', 'at least one RDP order is needed');
  for (const [index, order] of orders.entries()) {
    if (!(order > 1) || !Number.isFinite(order)) {
      throw invalid(
        'orders',
        `RDP orders must be finite numbers above 1; orders[${index}] is ${order}`,
      );
    }
  }
}

/**
 * log A_alpha for an integer alpha >= 2, by the binomial expansion (Mironov et al. 2019, §3.3):
 * A_alpha = sum_{k=0}^{alpha} C(alpha, k) (1 - q)^(alpha - k) q^k exp((k^2 - k) / (2 sigma^2)).
 * Every term is positive: a plain log-sum-exp.
 */
function logAInteger(q: number, sigma: number, alpha: number): number {
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q);
  const twoSigmaSquared = 2 * sigma * sigma;
  let logBinomial = 0;
  let total = Number.NEGATIVE_INFINITY;
  for (let k = 0; k <= alpha; k++) {
    if (k > 0) logBinomial += Math.log(alpha - k + 1) - Math.log(k);
    const term = logBinomial + k * logQ + (alpha - k) * log1mQ + (k * k - k) / twoSigmaSquared;
    total = logAdd(total, term);
  }
  return total;
}

/**
 * log A_alpha for a fractional alpha > 1, by the two series of Mironov et al. 2019, §3.3:
 * splitting the integral at z0 = sigma^2 log(1/q - 1) + 1/2 (where mu_0 and mu_1 weigh the
 * same), A_alpha = A_0 + A_1 with
 *
 *   A_0 = sum_i C(alpha, i) q^i (1 - q)^(alpha - i) e^((i^2 - i)/(2 sigma^2))
 *           * erfc((i - z0) / (sqrt(2) sigma)) / 2
 *   A_1 = sum_i C(alpha, i) q^(alpha - i) (1 - q)^i e^(((alpha - i)^2 - (alpha - i))/(2 sigma^2))
 *           * erfc((z0 - (alpha - i)) / (sqrt(2) sigma)) / 2
 *
 * C(alpha, i) is the generalised binomial coefficient, whose sign alternates once i > alpha + 1,
 * so both sums are kept as signed logs. The terms decay like i^(-alpha - 2) and alternate in
 * sign past i = alpha + 1, so the part left off is at most the last term: the sums stop once
 * it is below e^-30 of the total (relative 1e-13; A_alpha >= 1, so log A is off by < 1e-13).
 */
function logAFractional(q: number, sigma: number, alpha: number): number {
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q);
  const twoSigmaSquared = 2 * sigma * sigma;
  const sqrt2Sigma = Math.SQRT2 * sigma;
  const z0 = sigma * sigma * Math.log(1 / q - 1) + 0.5;
  let sum0: SignedLog = SIGNED_ZERO;
  let sum1: SignedLog = SIGNED_ZERO;
  let logBinomial = 0;
  let sign: -1 | 1 = 1;
  const maxTerms = 10_000_000;
  for (let i = 0; i < maxTerms; i++) {
    if (i > 0) {
      const factor = (alpha - i + 1) / i;
      logBinomial += Math.log(Math.abs(factor));
      if (factor < 0) sign = sign === 1 ? -1 : 1;
    }
    const j = alpha - i;
    const term0 =
      logBinomial +
      i * logQ +
      j * log1mQ +
      (i * i - i) / twoSigmaSquared +
      Math.log(0.5) +
      logErfc((i - z0) / sqrt2Sigma);
    const term1 =
      logBinomial +
      j * logQ +
      i * log1mQ +
      (j * j - j) / twoSigmaSquared +
      Math.log(0.5) +
      logErfc((z0 - j) / sqrt2Sigma);
    sum0 = signedLogAdd(sum0, sign, term0);
    sum1 = signedLogAdd(sum1, sign, term1);
    const total = logAdd(sum0.log, sum1.log);
    if (i > alpha + 1 && Math.max(term0, term1) < total - 30) break;
  }
  if (sum0.sign < 0 || sum1.sign < 0) {
    // Each half is an integral of a positive function: a negative sum is lost precision.
    throw new TesseraError(
      ErrorCode.INTERNAL,
      `RDP series for q=${q}, sigma=${sigma}, alpha=${alpha} lost precision`,
    );
  }
  return logAdd(sum0.log, sum1.log);
}

/** RDP at one order of one step of the sampled Gaussian mechanism (checked arguments). */
function rdpAtOrder(q: number, sigma: number, alpha: number): number {
  if (q === 0) return 0;
  // Without sampling it is the Gaussian mechanism of sensitivity 1: alpha / (2 sigma^2).
  if (q === 1) return alpha / (2 * sigma * sigma);
  const logA = Number.isInteger(alpha)
    ? logAInteger(q, sigma, alpha)
    : logAFractional(q, sigma, alpha);
  // Rounding can leave log A a hair below 0 (A >= 1 always); RDP is never negative.
  return Math.max(0, logA / (alpha - 1));
}

/**
 * RDP, at each of `orders`, of ONE step of the sampled Gaussian mechanism with sampling rate
 * `samplingRate` (q in [0, 1]) and noise multiplier `noiseMultiplier` (sigma > 0: noise std
 * over the L2 sensitivity). T steps cost T times this (composition). Bad arguments are refused
 * with INVALID_ARGUMENT naming them.
 */
export function rdpSampledGaussian(
  samplingRate: number,
  noiseMultiplier: number,
  orders: readonly number[] = DEFAULT_RDP_ORDERS,
): Float64Array {
  checkGaussianStep(samplingRate, noiseMultiplier);
  checkOrders(orders);
  return Float64Array.from(orders, (alpha) => rdpAtOrder(samplingRate, noiseMultiplier, alpha));
}

export interface EpsilonAtOrder {
  /** The smallest epsilon over the orders, for the delta asked. */
  epsilon: number;
  /** The order it was reached at (at the grid's edge: the grid may be too narrow). */
  order: number;
}

/**
 * (epsilon, delta)-DP from RDP values at `orders`, by the conversion of Balle et al. 2020
 * (Thm. 21), the smallest over the orders; never below 0, and 0 where the RDP is so small that
 * the distributions are within delta in total variation. Infinite RDP gives infinite epsilon.
 */
export function epsilonFromRdp(
  rdp: ArrayLike<number>,
  orders: readonly number[],
  delta: number,
): EpsilonAtOrder {
  checkOrders(orders);
  if (rdp.length !== orders.length) {
    throw invalid('rdp', `${rdp.length} RDP values for ${orders.length} orders`);
  }
  if (!(delta > 0 && delta < 1)) throw invalid('delta', `delta must be in (0, 1), got ${delta}`);
  const logDelta = Math.log(delta);
  let best: EpsilonAtOrder = { epsilon: Number.POSITIVE_INFINITY, order: orders[0] as number };
  for (let i = 0; i < orders.length; i++) {
    const alpha = orders[i] as number;
    const value = rdp[i] as number;
    if (!(value >= 0)) throw invalid('rdp', `rdp[${i}] is ${value}; RDP is never negative`);
    // RDP at any order > 1 bounds the KL divergence (D_alpha grows with alpha), and the
    // Bretagnolle–Huber inequality gives total variation <= sqrt(1 - e^-KL): when that is
    // within delta the pair is (0, delta)-DP outright (what a run of zero steps must give).
    const epsilon =
      delta * delta + Math.expm1(-value) >= 0
        ? 0
        : value + Math.log1p(-1 / alpha) - (logDelta + Math.log(alpha)) / (alpha - 1);
    if (epsilon < best.epsilon) best = { epsilon, order: alpha };
  }
  return { epsilon: Math.max(0, best.epsilon), order: best.order };
}
