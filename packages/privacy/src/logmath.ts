/**
 * Log-space arithmetic for the accountant: the sampled Gaussian's moments are sums of terms
 * from e^-700 to e^+10^6, so every sum is taken as a log-sum, and erfc's tail (which
 * underflows to 0 past x ~ 27) is taken as a log from the start.
 */

/** log(e^a + e^b), exact for -Infinity operands. */
export function logAdd(a: number, b: number): number {
  if (a === Number.NEGATIVE_INFINITY) return b;
  if (b === Number.NEGATIVE_INFINITY) return a;
  const high = Math.max(a, b);
  return high + Math.log1p(Math.exp(-Math.abs(a - b)));
}

/**
 * A signed number held as (sign, log of magnitude), so that sums of terms of alternating sign
 * (the fractional-order series) stay exact in log space.
 */
export interface SignedLog {
  sign: -1 | 0 | 1;
  log: number;
}

export const SIGNED_ZERO: SignedLog = { sign: 0, log: Number.NEGATIVE_INFINITY };

/** total + sign * e^logTerm. */
export function signedLogAdd(total: SignedLog, sign: -1 | 1, logTerm: number): SignedLog {
  if (logTerm === Number.NEGATIVE_INFINITY) return total;
  if (total.sign === 0) return { sign, log: logTerm };
  if (total.sign === sign) return { sign, log: logAdd(total.log, logTerm) };
  // Opposite signs: the larger magnitude keeps its sign; log(e^a - e^b) = a + log1p(-e^(b-a)).
  if (total.log === logTerm) return SIGNED_ZERO;
  const [high, low, resultSign] =
    total.log > logTerm ? [total.log, logTerm, total.sign] : [logTerm, total.log, sign];
  return { sign: resultSign, log: high + Math.log1p(-Math.exp(low - high)) };
}

const LOG_SQRT_PI = 0.5 * Math.log(Math.PI);

/**
 * erf(x) for |x| < 2 by its everywhere-positive series
 * erf(x) = 2/sqrt(pi) e^(-x^2) sum_n 2^n x^(2n+1) / (1*3*...*(2n+1)) (Abramowitz & Stegun
 * 7.1.6): no cancellation, so it is accurate to a few ulps.
 */
function erfSeries(x: number): number {
  let term = x;
  let sum = x;
  const twoXSquared = 2 * x * x;
  for (let n = 1; n < 200; n++) {
    term *= twoXSquared / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return (2 / Math.sqrt(Math.PI)) * Math.exp(-x * x) * sum;
}

/**
 * log(sqrt(pi) e^(x^2) erfc(x)) for x >= 2, by the continued fraction
 * sqrt(pi) e^(x^2) erfc(x) = 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))) (A&S 7.1.14),
 * evaluated with the modified Lentz method: it never forms e^(-x^2), so it holds for any x.
 */
function logScaledErfcFraction(x: number): number {
  const tiny = 1e-300;
  let f = x;
  let c = x;
  let d = 0;
  for (let n = 1; n < 5000; n++) {
    const a = n / 2;
    d = x + a * d;
    if (d === 0) d = tiny;
    c = x + a / c;
    if (c === 0) c = tiny;
    d = 1 / d;
    const step = c * d;
    f *= step;
    if (Math.abs(step - 1) < 1e-16) break;
  }
  return -Math.log(f);
}

/** log(erfc(x)) for every finite x, without underflow for large x. */
export function logErfc(x: number): number {
  if (Number.isNaN(x)) return Number.NaN;
  if (x === Number.POSITIVE_INFINITY) return Number.NEGATIVE_INFINITY;
  if (x === Number.NEGATIVE_INFINITY) return Math.LN2;
  if (x >= 2) return -x * x - LOG_SQRT_PI + logScaledErfcFraction(x);
  if (x >= 0) return Math.log1p(-erfSeries(x));
  // erfc(-y) = 2 - erfc(y) lies in (1, 2]: no precision to lose.
  const y = -x;
  const erfcY = y >= 2 ? Math.exp(logErfc(y)) : 1 - erfSeries(y);
  return Math.log(2 - erfcY);
}
