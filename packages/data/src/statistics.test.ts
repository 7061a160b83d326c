import { ErrorCode } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import { createRng } from './rng.js';
import {
  combineStatistics,
  type NumericColumnStatistics,
  preprocessingConstants,
  type TabularStatistics,
  tabularStatistics,
  withPreprocessing,
} from './statistics.js';
import { readTabular, selectRows, tabularExamples } from './tabular.js';
import type { TabularSchema, TaskOutput } from './task-schema.js';

const schema: TabularSchema = {
  kind: 'tabular',
  label: 'y',
  columns: [
    // Mean 1e4, std 1: Σx² − (Σx)²/n keeps only about 8 digits here (error ~ 1e-16·(mean/std)²).
    { name: 'offset', type: 'numeric', standardize: 'federated' },
    // Mean 1e9, std 1e-3: the naive formula keeps no digit at all; Chan's combination keeps 6.
    { name: 'extreme', type: 'numeric', standardize: 'federated' },
    { name: 'wide', type: 'numeric', standardize: 'federated' },
    { name: 'raw', type: 'numeric' },
    { name: 'colour', type: 'categorical' },
    { name: 'fixed', type: 'categorical', categories: ['a', 'b'] },
  ],
};
const output: TaskOutput = { kind: 'binary', classes: ['no', 'yes'] };
const colours = ['red', 'green', 'blue', 'cyan', 'magenta', 'über', 'Zebra'];

/** A CSV of `count` random rows, as a client would have it. */
function randomCsv(count: number, seed: number): string {
  const rng = createRng(seed);
  const lines = ['offset,extreme,wide,raw,colour,fixed,y'];
  for (let i = 0; i < count; i++) {
    const offset = 1e4 + rng.normal();
    const extreme = 1e9 + rng.normal() * 1e-3;
    const wide = rng.normal() * 1e4 - 3;
    // Skewed colour frequencies, so that the counts differ.
    const colour = colours[Math.floor(rng.next() ** 2 * colours.length)] as string;
    lines.push(
      `${offset},${extreme},${wide},${rng.next()},${colour},${rng.next() < 0.5 ? 'a' : 'b'},yes`,
    );
  }
  return lines.join('\n');
}

/**
 * Mean and population std for reference, computed another way: shifted by the first value
 * (exact for values within a factor 2 of it, Sterbenz), so the sums are small and no digit of
 * the spread is lost, whatever the offset.
 */
function pooledMoments(values: Float64Array): { mean: number; std: number } {
  const shift = values[0] as number;
  let sum = 0;
  for (const value of values) sum += value - shift;
  const shiftedMean = sum / values.length;
  let squares = 0;
  for (const value of values) squares += (value - shift - shiftedMean) ** 2;
  return { mean: shift + shiftedMean, std: Math.sqrt(squares / values.length) };
}

const relative = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-300);

describe('federated statistics', () => {
  const pooled = readTabular(randomCsv(3000, 7), schema, output, { source: 'pooled.csv' });

  it('combined over a random 3-way split equal those of the pooled data to 1e-12', () => {
    const rng = createRng(11);
    const parts: number[][] = [[], [], []];
    for (let row = 0; row < pooled.count; row++) parts[rng.int(3)]?.push(row);
    // JSON round trip: what the coordinator receives is what a client sent on the wire.
    const sent = parts.map((rows) =>
      JSON.parse(JSON.stringify(tabularStatistics(selectRows(pooled, rows), schema))),
    );
    const combined = combineStatistics(sent, schema);
    const constants = preprocessingConstants(combined, schema);

    expect(combined.rows).toBe(3000);
    for (const name of ['offset', 'wide']) {
      const expected = pooledMoments(pooled.numeric.get(name) as Float64Array);
      const found = constants.standardize.find((c) => c.name === name);
      expect(relative(found?.mean as number, expected.mean)).toBeLessThan(1e-12);
      expect(relative(found?.std as number, expected.std)).toBeLessThan(1e-12);
    }
    // A spread of 1e-3 on 1e9: each mean on the wire is one float64 (ulp 1.2e-7), so the
    // difference of two clients' means is that uncertain; the std is still right to ~1e-6 (the naive formula: no digit).
    const extreme = pooledMoments(pooled.numeric.get('extreme') as Float64Array);
    const extremeStd = constants.standardize.find((c) => c.name === 'extreme')?.std as number;
    expect(relative(extremeStd, extreme.std)).toBeLessThan(1e-5);

    const expectedCounts = new Map<string, number>();
    for (const colour of pooled.categorical.get('colour') ?? []) {
      expectedCounts.set(colour, (expectedCounts.get(colour) ?? 0) + 1);
    }
    const colourStatistics = combined.columns.find((c) => c.name === 'colour');
    expect(colourStatistics).toEqual({
      name: 'colour',
      type: 'categorical',
      counts: [...expectedCounts]
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([category, count]) => ({ category, count })),
    });
    // Code-unit order (capitals before lower case, 'ü' last), the same on every machine.
    expect(constants.categories).toEqual([
      { name: 'colour', categories: ['Zebra', 'blue', 'cyan', 'green', 'magenta', 'red', 'über'] },
    ]);
  });

  it('reports only the columns left to statistics, and never a row', () => {
    const statistics = tabularStatistics(pooled, schema);
    expect(statistics.columns.map((c) => c.name)).toEqual(['offset', 'extreme', 'wide', 'colour']);
    expect(Object.keys(statistics.columns[0] as object).sort()).toEqual([
      'count',
      'm2',
      'mean',
      'name',
      'type',
    ]);
    const withRange = tabularStatistics(pooled, schema, { range: true })
      .columns[2] as NumericColumnStatistics;
    const wide = pooled.numeric.get('wide') as Float64Array;
    expect(withRange.min).toBe(Math.min(...wide));
    expect(withRange.max).toBe(Math.max(...wide));
  });

  it('leaves out categories seen fewer than minCount times; they encode as all zeros', () => {
    const text =
      'offset,extreme,wide,raw,colour,fixed,y\n1,1,1,1,red,a,no\n2,2,2,2,red,a,no\n3,3,3,3,rare,b,yes\n';
    const data = readTabular(text, schema, output);
    const statistics = tabularStatistics(data, schema, { minCount: 2 });
    expect(statistics.columns[3]).toEqual({
      name: 'colour',
      type: 'categorical',
      counts: [{ category: 'red', count: 2 }],
    });
    const resolved = withPreprocessing(
      schema,
      preprocessingConstants(combineStatistics([statistics], schema), schema),
    );
    const examples = tabularExamples(data, resolved);
    // offset, extreme, wide, raw, colour (red), fixed (a, b)
    expect(examples.featureSize).toBe(7);
    expect(examples.x[2 * 7 + 4]).toBe(0);
    expect(examples.x[0 * 7 + 4]).toBe(1);
  });

  it('gives a constant column std 1, so that its feature is 0 rather than NaN', () => {
    const text = 'offset,extreme,wide,raw,colour,fixed,y\n5,1,1,1,red,a,no\n5,1,2,2,red,a,no\n';
    const data = readTabular(text, schema, output);
    const constants = preprocessingConstants(
      combineStatistics([tabularStatistics(data, schema)], schema),
      schema,
    );
    expect(constants.standardize[0]).toEqual({ name: 'offset', mean: 5, std: 1 });
    const examples = tabularExamples(data, withPreprocessing(schema, constants));
    expect(examples.x[0]).toBe(0);
    expect([examples.x[2], examples.x[2 + examples.featureSize]]).toEqual([-1, 1]);
  });

  it('refuses a column with more distinct categories than the bound', () => {
    const lines = ['offset,extreme,wide,raw,colour,fixed,y'];
    for (let i = 0; i < 12; i++) lines.push(`1,1,1,1,id${i},a,no`);
    const data = readTabular(lines.join('\n'), schema, output, { source: 'ids.csv' });
    expect(() => tabularStatistics(data, schema, { maxCategories: 10 })).toThrow(
      expect.objectContaining({
        code: ErrorCode.INVALID_ARGUMENT,
        message: expect.stringMatching(
          /ids\.csv: column 'colour' has 12 distinct values, more than the 10/,
        ),
        data: expect.objectContaining({ column: 'colour' }),
      }),
    );
    const parts = [0, 6].map((first) =>
      tabularStatistics(
        selectRows(
          data,
          [0, 1, 2, 3, 4, 5].map((i) => i + first),
        ),
        schema,
      ),
    );
    expect(() => combineStatistics(parts, schema, { maxCategories: 10 })).toThrow(
      /12 distinct categories over all clients/,
    );
  });

  it.each([
    ['rows not a count', (s: TabularStatistics) => Object.assign(s, { rows: -1 }), 'parts[0].rows'],
    [
      'a column missing',
      (s: TabularStatistics) => Object.assign(s, { columns: s.columns.slice(1) }),
      'parts[0].columns',
    ],
    [
      'a negative m2',
      (s: TabularStatistics) => Object.assign(s.columns[0] as object, { m2: -1 }),
      'parts[0].columns[0].m2',
    ],
    [
      'a count above rows',
      (s: TabularStatistics) => Object.assign(s.columns[2] as object, { count: 1e6 }),
      'parts[0].columns[2].count',
    ],
    [
      'unsorted categories',
      (s: TabularStatistics) => (s.columns[3] as { counts: unknown[] }).counts.reverse(),
      'parts[0].columns[3].counts[1].category',
    ],
    [
      'another column in its place',
      (s: TabularStatistics) => Object.assign(s.columns[0] as object, { name: 'wide' }),
      'parts[0].columns[0]',
    ],
  ])('refuses statistics with %s, naming the field', (_case, spoil, field) => {
    const statistics = JSON.parse(JSON.stringify(tabularStatistics(pooled, schema)));
    spoil(statistics);
    expect(() => combineStatistics([statistics], schema)).toThrow(
      expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT, data: { field } }),
    );
  });
});
