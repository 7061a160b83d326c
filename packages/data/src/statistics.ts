import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { TabularData } from './tabular.js';
import type { TabularColumn, TabularSchema } from './task-schema.js';

/**
 * Federated preprocessing statistics. Each client summarises its own rows
 * (`tabularStatistics`), the coordinator merges the summaries (`combineStatistics`) and turns
 * the total into the constants every client then uses (`preprocessingConstants`,
 * `withPreprocessing`). No row leaves a client: only counts, means, sums of squared deviations
 * and category counts, for the columns whose constants the task leaves to statistics.
 */

/**
 * Most distinct categories a column may have, in one client's statistics and combined.
 * 1000 because (a) each category is one input of the model (one-hot), and a column with more
 * distinct values than that is an identifier or free text, not a category; (b) it bounds the
 * message (1000 names of at most MAX_CATEGORY_LENGTH characters); (c) privacy: the more
 * distinct values a column has, the more of them are seen once, and a category seen once
 * points at one row.
 */
export const MAX_CATEGORIES = 1000;
/** Longest category name reported, in UTF-16 code units. */
export const MAX_CATEGORY_LENGTH = 200;

/**
 * One numeric column's summary: count n, mean and M2 = Σ(x - mean)², the sufficient
 * statistics of Chan, Golub & LeVeque's parallel variance. They carry the same information as
 * count, sum (= n·mean) and sum of squares (= M2 + n·mean²) but combine without the
 * cancellation of Σx² − (Σx)²/n, which loses every digit when |mean| ≫ std.
 */
export interface NumericColumnStatistics {
  name: string;
  type: 'numeric';
  count: number;
  mean: number;
  m2: number;
  /** Only with `{ range: true }`: each is one row's exact value, which is why it is opt-in. */
  min?: number;
  max?: number;
}

export interface CategoricalColumnStatistics {
  name: string;
  type: 'categorical';
  /** Rows per category, sorted by category (code-unit order); only those seen >= minCount times. */
  counts: Array<{ category: string; count: number }>;
}

export type ColumnStatistics = NumericColumnStatistics | CategoricalColumnStatistics;

/**
 * What a client sends in the statistics round, and what combining gives back: plain JSON
 * (numbers, strings, arrays; no keys made of column names, so '__proto__' is just a name).
 */
export interface TabularStatistics {
  /** Rows summarised. */
  rows: number;
  /** The schema's columns that need statistics, in schema order. */
  columns: ColumnStatistics[];
}

export interface StatisticsOptions {
  /**
   * A client does not report a category it has seen fewer than `minCount` times (k-anonymity
   * of the counts: with k = 5, no reported category stands for fewer than 5 of its rows).
   * Default 1: everything seen is reported. Rows of an unreported category still count in
   * `rows`, and encode as all-zero one-hot if the category is missing from the combined list.
   */
  minCount?: number;
  /** Refuse a column with more distinct categories than this. Default MAX_CATEGORIES. */
  maxCategories?: number;
  /** Also report min and max of numeric columns. Default false (see NumericColumnStatistics). */
  range?: boolean;
}

function invalid(message: string, data: Record<string, unknown>): TesseraError {
  return new TesseraError(ErrorCode.INVALID_ARGUMENT, message, data);
}

/** The columns whose constants the schema leaves to federated statistics. */
export function columnsNeedingStatistics(schema: TabularSchema): TabularColumn[] {
  return schema.columns.filter((column) =>
    column.type === 'numeric'
      ? column.standardize === 'federated'
      : column.categories === undefined,
  );
}

/** This client's statistics of `data` (read with `schema`): never a row, only summaries. */
export function tabularStatistics(
  data: TabularData,
  schema: TabularSchema,
  options: StatisticsOptions = {},
): TabularStatistics {
  const minCount = options.minCount ?? 1;
  const maxCategories = options.maxCategories ?? MAX_CATEGORIES;
  if (!Number.isInteger(minCount) || minCount < 1) {
    throw invalid(`statistics: minCount must be an integer >= 1, got ${String(minCount)}`, {
      field: 'minCount',
    });
  }
  const columns = columnsNeedingStatistics(schema).map((column): ColumnStatistics => {
    if (column.type === 'numeric') {
      const values = data.numeric.get(column.name);
      if (values === undefined) throw notRead(column.name);
      return numericStatistics(column.name, values, data.count, options.range === true);
    }
    const values = data.categorical.get(column.name);
    if (values === undefined) throw notRead(column.name);
    const counts = new Map<string, number>();
    for (let row = 0; row < data.count; row++) {
      const value = values[row] as string;
      counts.set(value, (counts.get(value) ?? 0) + 1);
    }
    if (counts.size > maxCategories) {
      throw invalid(
        `${data.source}: column '${column.name}' has ${counts.size} distinct values, more than the ${maxCategories} a categorical column may have (is it an identifier?)`,
        { file: data.source, column: column.name, field: column.name },
      );
    }
    for (const category of counts.keys()) {
      if (category.length > MAX_CATEGORY_LENGTH) {
        throw invalid(
          `${data.source}: column '${column.name}' has a category of ${category.length} characters, more than ${MAX_CATEGORY_LENGTH}`,
          { file: data.source, column: column.name, field: column.name },
        );
      }
    }
    return {
      name: column.name,
      type: 'categorical',
      counts: sortedCounts(counts, minCount),
    };
  });
  return { rows: data.count, columns };
}

function notRead(name: string): TesseraError {
  return invalid(`statistics: column '${name}' was not read with this schema`, { field: name });
}

/** Two passes (mean, then squared deviations): M2 exact to a few ulps, whatever the offset. */
function numericStatistics(
  name: string,
  values: Float64Array,
  count: number,
  range: boolean,
): NumericColumnStatistics {
  let sum = 0;
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (let row = 0; row < count; row++) {
    const value = values[row] as number;
    sum += value;
    if (value < min) min = value;
    if (value > max) max = value;
  }
  const mean = count === 0 ? 0 : sum / count;
  let m2 = 0;
  let drift = 0;
  for (let row = 0; row < count; row++) {
    const deviation = (values[row] as number) - mean;
    m2 += deviation * deviation;
    drift += deviation;
  }
  // The corrected two-pass algorithm (Chan, Golub & LeVeque 1983): `drift` is what rounding
  // left of Σ(x - mean), which is 0 in exact arithmetic; this removes its effect on M2.
  if (count > 0) m2 -= (drift * drift) / count;
  const statistics: NumericColumnStatistics = {
    name,
    type: 'numeric',
    count,
    mean: count === 0 ? 0 : mean + drift / count,
    m2: Math.max(0, m2),
  };
  if (range && count > 0) Object.assign(statistics, { min, max });
  return statistics;
}

// Code-unit order, not localeCompare: every client and the coordinator must get the same order
// whatever their locale, since the order is the one-hot layout of the model's input.
const byCodeUnits = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function sortedCounts(
  counts: Map<string, number>,
  minCount: number,
): Array<{ category: string; count: number }> {
  return [...counts]
    .filter(([, count]) => count >= minCount)
    .sort(([a], [b]) => byCodeUnits(a, b))
    .map(([category, count]) => ({ category, count }));
}

/**
 * Merges the statistics of disjoint sets of rows into those of their union. Numeric columns by
 * the pairwise update of Chan et al.: n = na + nb, δ = mean_b − mean_a,
 * mean = mean_a + δ·nb/n, M2 = M2a + M2b + δ²·na·nb/n, whose relative error stays within a
 * few ulps per merge (no subtraction of large sums); categories by adding counts. Order does
 * not matter beyond rounding. Every part is validated first (it came over the network).
 *
 * Error: each mean travels as one float64, so δ is known to about ulp(|mean|), and the
 * variance's relative error is about 1e-16·(|mean|/std)·sqrt(parts/rows) — 1e-13 for mean/std
 * = 1e4, 1e-6 for 1e12 (statistics.test.ts measures both). Σx² − (Σx)²/n would lose about
 * 1e-16·(|mean|/std)²: 1e-8 at 1e4, every digit at 1e8.
 */
export function combineStatistics(
  parts: readonly unknown[],
  schema: TabularSchema,
  options: Pick<StatisticsOptions, 'maxCategories'> = {},
): TabularStatistics {
  const maxCategories = options.maxCategories ?? MAX_CATEGORIES;
  if (parts.length === 0) throw invalid('statistics: nothing to combine', { field: 'parts' });
  const checked = parts.map((part, i) => parseTabularStatistics(part, schema, `parts[${i}]`));
  const needed = columnsNeedingStatistics(schema);
  const columns = needed.map((column, c): ColumnStatistics => {
    if (column.type === 'numeric') {
      let total = { count: 0, mean: 0, m2: 0 };
      let min = Number.POSITIVE_INFINITY;
      let max = Number.NEGATIVE_INFINITY;
      let everyPartHasRange = true;
      for (const part of checked) {
        const s = part.columns[c] as NumericColumnStatistics;
        total = mergeMoments(total, s);
        if (s.min === undefined || s.max === undefined) {
          if (s.count > 0) everyPartHasRange = false;
        } else {
          min = Math.min(min, s.min);
          max = Math.max(max, s.max);
        }
      }
      const merged: NumericColumnStatistics = { name: column.name, type: 'numeric', ...total };
      // A range only when every part gave one: a partial range would look whole and be wrong.
      if (everyPartHasRange && total.count > 0) Object.assign(merged, { min, max });
      return merged;
    }
    const counts = new Map<string, number>();
    for (const part of checked) {
      for (const { category, count } of (part.columns[c] as CategoricalColumnStatistics).counts) {
        counts.set(category, (counts.get(category) ?? 0) + count);
      }
    }
    if (counts.size > maxCategories) {
      throw invalid(
        `statistics: column '${column.name}' has ${counts.size} distinct categories over all clients, more than ${maxCategories}`,
        { field: column.name },
      );
    }
    return { name: column.name, type: 'categorical', counts: sortedCounts(counts, 1) };
  });
  return { rows: checked.reduce((sum, part) => sum + part.rows, 0), columns };
}

function mergeMoments(
  a: { count: number; mean: number; m2: number },
  b: { count: number; mean: number; m2: number },
): { count: number; mean: number; m2: number } {
  if (b.count === 0) return a;
  if (a.count === 0) return { count: b.count, mean: b.mean, m2: b.m2 };
  const count = a.count + b.count;
  const delta = b.mean - a.mean;
  return {
    count,
    mean: a.mean + (delta * b.count) / count,
    m2: a.m2 + b.m2 + ((delta * delta * a.count) / count) * b.count,
  };
}

/**
 * Checks that `value` is a well-formed TabularStatistics for `schema` (the columns that need
 * statistics, in order, with the right types; counts non-negative integers; finite numbers;
 * categories sorted, unique and bounded). Throws INVALID_ARGUMENT naming the field.
 */
export function parseTabularStatistics(
  value: unknown,
  schema: TabularSchema,
  where = 'statistics',
): TabularStatistics {
  const fail = (field: string, problem: string): never => {
    throw invalid(`${where}.${field}: ${problem}`, { field: `${where}.${field}` });
  };
  const isCount = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;
  const isFiniteNumber = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n);
  if (typeof value !== 'object' || value === null) return fail('', 'not an object');
  const { rows, columns } = value as Partial<TabularStatistics>;
  if (!isCount(rows)) return fail('rows', 'not a non-negative integer');
  const needed = columnsNeedingStatistics(schema);
  if (!Array.isArray(columns) || columns.length !== needed.length) {
    return fail(
      'columns',
      `expected ${needed.length} columns (${needed.map((c) => c.name).join(', ')})`,
    );
  }
  const parsed = needed.map((column, c): ColumnStatistics => {
    const field = `columns[${c}]`;
    const s = columns[c] as unknown as Record<string, unknown>;
    if (typeof s !== 'object' || s === null) return fail(field, 'not an object');
    if (s['name'] !== column.name || s['type'] !== column.type) {
      return fail(field, `expected column '${column.name}' (${column.type})`);
    }
    if (column.type === 'numeric') {
      const { count, mean, m2, min, max } = s;
      if (!isCount(count) || count > rows) return fail(`${field}.count`, 'not a count <= rows');
      if (!isFiniteNumber(mean)) return fail(`${field}.mean`, 'not a finite number');
      if (!isFiniteNumber(m2) || m2 < 0) return fail(`${field}.m2`, 'not a finite number >= 0');
      const out: NumericColumnStatistics = { name: column.name, type: 'numeric', count, mean, m2 };
      if (min !== undefined || max !== undefined) {
        if (!isFiniteNumber(min) || !isFiniteNumber(max) || min > max) {
          return fail(`${field}.min`, 'min and max must be finite numbers with min <= max');
        }
        Object.assign(out, { min, max });
      }
      return out;
    }
    const counts = s['counts'];
    if (!Array.isArray(counts) || counts.length > MAX_CATEGORIES) {
      return fail(`${field}.counts`, `not an array of at most ${MAX_CATEGORIES} categories`);
    }
    let previous: string | undefined;
    const out = counts.map((entry: unknown, i) => {
      const { category, count } = (entry ?? {}) as { category?: unknown; count?: unknown };
      if (
        typeof category !== 'string' ||
        category === '' ||
        category.length > MAX_CATEGORY_LENGTH
      ) {
        return fail(
          `${field}.counts[${i}].category`,
          `not a category of 1..${MAX_CATEGORY_LENGTH} characters`,
        );
      }
      if (previous !== undefined && byCodeUnits(previous, category) >= 0) {
        return fail(`${field}.counts[${i}].category`, 'categories must be sorted and unique');
      }
      previous = category;
      if (!isCount(count) || count === 0 || count > rows) {
        return fail(`${field}.counts[${i}].count`, 'not a count in 1..rows');
      }
      return { category, count };
    });
    return { name: column.name, type: 'categorical', counts: out };
  });
  return { rows, columns: parsed };
}

/** The constants a federated statistics round decides, recorded with the run. */
export interface PreprocessingConstants {
  standardize: Array<{ name: string; mean: number; std: number }>;
  categories: Array<{ name: string; categories: string[] }>;
}

/**
 * Constants from combined statistics: per standardised column the mean and the population
 * standard deviation sqrt(M2 / n) (the scale a standardiser fitted on the pooled rows would
 * use); per categorical column the categories seen, sorted. A column with std 0 (every value
 * the same, or a single row) gets std 1: its feature is then x − mean, i.e. 0 for every row
 * seen, rather than a division by zero. A column no client has rows for is refused.
 */
export function preprocessingConstants(
  combined: TabularStatistics,
  schema: TabularSchema,
): PreprocessingConstants {
  const checked = parseTabularStatistics(combined, schema, 'combined');
  const constants: PreprocessingConstants = { standardize: [], categories: [] };
  for (const column of checked.columns) {
    if (column.type === 'numeric') {
      if (column.count === 0) {
        throw invalid(`statistics: column '${column.name}' has no values on any client`, {
          field: column.name,
        });
      }
      const std = Math.sqrt(column.m2 / column.count);
      constants.standardize.push({ name: column.name, mean: column.mean, std: std > 0 ? std : 1 });
    } else {
      if (column.counts.length === 0) {
        throw invalid(
          `statistics: column '${column.name}' has no category reported by any client`,
          {
            field: column.name,
          },
        );
      }
      constants.categories.push({
        name: column.name,
        categories: column.counts.map(({ category }) => category),
      });
    }
  }
  return constants;
}

/** `schema` with the constants of a statistics round filled in: ready for tabularExamples. */
export function withPreprocessing(
  schema: TabularSchema,
  constants: PreprocessingConstants,
): TabularSchema {
  const standardize = new Map(constants.standardize.map((c) => [c.name, c]));
  const categories = new Map(constants.categories.map((c) => [c.name, c.categories]));
  const columns = schema.columns.map((column): TabularColumn => {
    if (column.type === 'numeric') {
      if (column.standardize !== 'federated') return column;
      const found = standardize.get(column.name);
      if (found === undefined) throw missingConstant(column.name);
      return { ...column, standardize: { mean: found.mean, std: found.std } };
    }
    if (column.categories !== undefined) return column;
    const found = categories.get(column.name);
    if (found === undefined) throw missingConstant(column.name);
    return { ...column, categories: [...found] };
  });
  return { ...schema, columns };
}

function missingConstant(name: string): TesseraError {
  return invalid(`preprocessing constants: none for column '${name}'`, { field: name });
}
