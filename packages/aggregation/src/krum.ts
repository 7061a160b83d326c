import { ErrorCode, TesseraError } from '@tessera/protocol';
import { BufferingAggregator, unweightedMean } from './buffer.js';
import { weightedEvaluation } from './fedavg.js';
import { refuseState, type StrategyState } from './state.js';
import type { EvaluationReply, EvaluationResult, RoundAggregator, Strategy } from './strategy.js';

/**
 * Squared Euclidean distances between every pair of rows, each summed in float64 over the
 * coordinates in order, so the matrix is the same for the same rows. n(n-1)/2 passes over
 * the parameters: for 100 clients x 1.66M parameters, 8.2e9 multiply-adds per round.
 */
export function pairwiseSquaredDistances(rows: readonly Float32Array[]): Float64Array[] {
  const n = rows.length;
  const distances = Array.from({ length: n }, () => new Float64Array(n));
  for (let a = 0; a < n; a++) {
    const x = rows[a] as Float32Array;
    for (let b = a + 1; b < n; b++) {
      const y = rows[b] as Float32Array;
      let sum = 0;
      for (let i = 0; i < x.length; i++) {
        const d = (x[i] as number) - (y[i] as number);
        sum += d * d;
      }
      (distances[a] as Float64Array)[b] = sum;
      (distances[b] as Float64Array)[a] = sum;
    }
  }
  return distances;
}

/**
 * Krum scores of `candidates` (indices into the distance matrix) among themselves: the sum of
 * each one's `neighbours` smallest squared distances to the other candidates. Returned sorted
 * best first; equal scores keep arrival order (the lower index first).
 */
export function krumRanking(
  distances: readonly Float64Array[],
  candidates: readonly number[],
  neighbours: number,
): { index: number; score: number }[] {
  const scored = candidates.map((index) => {
    const row = distances[index] as Float64Array;
    const others = candidates
      .filter((other) => other !== index)
      .map((other) => row[other] as number)
      .sort((p, q) => p - q);
    let score = 0;
    for (let k = 0; k < Math.min(neighbours, others.length); k++) score += others[k] as number;
    return { index, score };
  });
  return scored.sort((p, q) => p.score - q.score || p.index - q.index);
}

function tooFewUpdates(strategy: string, n: number, needed: number, rule: string) {
  return new TesseraError(
    ErrorCode.INVALID_ARGUMENT,
    `${strategy} with f = ${rule} needs at least ${needed} updates in a round; got ${n} (lower strategyOptions.f or sample more clients)`,
    { field: 'strategyOptions.f', updates: n, needed },
  );
}

abstract class StatelessRobust implements Strategy {
  abstract readonly name: string;
  abstract readonly options: Readonly<Record<string, unknown>>;
  abstract beginRound(round: number, globalWeights: Float32Array): RoundAggregator;

  aggregateEvaluation(replies: readonly EvaluationReply[]): EvaluationResult | null {
    return weightedEvaluation(replies);
  }

  state(): StrategyState | null {
    return null;
  }

  restore(state: StrategyState | null): void {
    refuseState(this.name, state);
  }
}

/**
 * Krum and Multi-Krum (Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine Learning with
 * Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS 2017). With n updates of which
 * at most f are Byzantine (n >= 2f + 3), each update's score is the sum of its squared
 * distances to its n - f - 2 nearest others; Krum takes the update with the lowest score,
 * Multi-Krum the unweighted mean of the m lowest (m <= n - f; by default m = n - f). Example
 * counts do not weight the models: a Byzantine client could claim any count.
 *
 * Holds every update of the round, O(n x parameters) memory plus the n x n distances; time
 * per round O(n^2 x parameters) for the distances (see `pairwiseSquaredDistances`).
 */
export class Krum extends StatelessRobust {
  readonly name: string;
  readonly options: Readonly<{ f: number; m?: number }>;

  /** `m` undefined: Krum (one update) when `multi` is false, n - f when it is true. */
  constructor(
    readonly f: number,
    readonly m: number | undefined,
    readonly multi: boolean,
  ) {
    super();
    this.name = multi ? 'multi-krum' : 'krum';
    this.options = m === undefined ? { f } : { f, m };
  }

  beginRound(_round: number, globalWeights: Float32Array): RoundAggregator {
    const { f, multi, name } = this;
    const requested = this.m;
    return new (class extends BufferingAggregator {
      protected combine(): Float32Array {
        const n = this.updates.length;
        if (n < 2 * f + 3) throw tooFewUpdates(name, n, 2 * f + 3, `${f} (n >= 2f + 3)`);
        const m = multi ? (requested ?? n - f) : 1;
        if (m > n - f) {
          throw new TesseraError(
            ErrorCode.INVALID_ARGUMENT,
            `${name}: m = ${m} is more than n - f = ${n - f} of the ${n} updates this round`,
            { field: 'strategyOptions.m', updates: n },
          );
        }
        const ranking = krumRanking(
          pairwiseSquaredDistances(this.updates),
          this.updates.map((_, index) => index),
          n - f - 2,
        );
        const chosen = ranking
          .slice(0, m)
          .map((entry) => entry.index)
          .sort((p, q) => p - q);
        return unweightedMean(
          chosen.map((index) => this.updates[index] as Float32Array),
          this.paramCount,
        );
      }
    })(globalWeights.length, name);
  }
}

/**
 * Bulyan (El Mhamdi, Guerraoui, Rouault, "The Hidden Vulnerability of Distributed Learning in
 * Byzantium", ICML 2018), over Krum: with n >= 4f + 3 updates, pick theta = n - 2f of them by
 * Krum again and again (each time the best-scored of those left, scored among those left, with
 * max(1, left - f - 2) neighbours so the last picks still compare distances), then for each
 * coordinate average the beta = theta - 2f selected values closest to their median (ties
 * between a lower and a higher value: the lower). Unweighted.
 *
 * Holds every update, O(n x parameters) plus the n x n distances; time per round
 * O(n^2 x parameters) for the distances, O(theta x n^2 log n) for the picks and
 * O(parameters x theta log theta) for the coordinates.
 */
export class Bulyan extends StatelessRobust {
  readonly name = 'bulyan';
  readonly options: Readonly<{ f: number }>;

  constructor(readonly f: number) {
    super();
    this.options = { f };
  }

  beginRound(_round: number, globalWeights: Float32Array): RoundAggregator {
    const { f, name } = this;
    return new (class extends BufferingAggregator {
      protected combine(): Float32Array {
        const n = this.updates.length;
        if (n < 4 * f + 3) throw tooFewUpdates(name, n, 4 * f + 3, `${f} (n >= 4f + 3)`);
        const distances = pairwiseSquaredDistances(this.updates);
        const left = this.updates.map((_, index) => index);
        const selected: number[] = [];
        const theta = n - 2 * f;
        while (selected.length < theta) {
          const best = krumRanking(distances, left, Math.max(1, left.length - f - 2))[0];
          const index = (best as { index: number }).index;
          selected.push(index);
          left.splice(left.indexOf(index), 1);
        }
        const rows = selected.map((index) => this.updates[index] as Float32Array);
        return closestToMedianMean(rows, this.paramCount, theta - 2 * f);
      }
    })(globalWeights.length, name);
  }
}

/** Per coordinate, the mean of the `beta` values closest to the median of `rows`' values. */
function closestToMedianMean(
  rows: readonly Float32Array[],
  paramCount: number,
  beta: number,
): Float32Array {
  const count = rows.length;
  const column = new Float64Array(count);
  const out = new Float32Array(paramCount);
  for (let i = 0; i < paramCount; i++) {
    for (let k = 0; k < count; k++) column[k] = (rows[k] as Float32Array)[i] as number;
    column.sort();
    const middle = count >> 1;
    const median =
      count % 2 === 1
        ? (column[middle] as number)
        : ((column[middle - 1] as number) + (column[middle] as number)) / 2;
    // The beta closest values are a window of the sorted column; grow it from the median out.
    let lo = middle;
    while (lo > 0 && (column[lo - 1] as number) >= median) lo--;
    let hi = lo;
    while (hi - lo < beta) {
      const below = lo > 0 ? median - (column[lo - 1] as number) : Number.POSITIVE_INFINITY;
      const above = hi < count ? (column[hi] as number) - median : Number.POSITIVE_INFINITY;
      if (below <= above) lo--;
      else hi++;
    }
    let sum = 0;
    for (let k = lo; k < hi; k++) sum += column[k] as number;
    out[i] = sum / beta;
  }
  return out;
}
