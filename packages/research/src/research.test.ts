import { describe, expect, it } from 'vitest';
import {
  comparisonChartSvg,
  comparisonTable,
  niceTicks,
  parseCsv,
  type Table,
  toCsv,
  toJsonLines,
} from './index.js';

describe('CSV and JSON Lines', () => {
  const table: Table = {
    columns: ['id', 'text', 'value', 'list', 'missing'],
    rows: [
      { id: 'a', text: 'plain', value: 0.1 + 0.2, list: ['x', 'y'], missing: null },
      { id: 'b', text: 'comma, "quote"\nnewline', value: -1e-7, list: [], missing: true },
    ],
  };

  it('quotes what must be quoted and parses back to the same fields', () => {
    const csv = toCsv(table);
    expect(csv.split('\n')[0]).toBe('id,text,value,list,missing');
    expect(parseCsv(csv)).toEqual([
      ['id', 'text', 'value', 'list', 'missing'],
      ['a', 'plain', '0.30000000000000004', 'x;y', ''],
      ['b', 'comma, "quote"\nnewline', '-1e-7', '', 'true'],
    ]);
    // Shortest round-trip numbers: parsing gives the exact float back.
    expect(Number(parseCsv(csv)[1]?.[2])).toBe(0.1 + 0.2);
  });

  it('writes one JSON object per line with native types', () => {
    const lines = toJsonLines(table)
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(lines[0]).toEqual({
      id: 'a',
      text: 'plain',
      value: 0.1 + 0.2,
      list: ['x', 'y'],
      missing: null,
    });
    expect(Object.keys(lines[1])).toEqual(table.columns);
  });
});

describe('comparison', () => {
  const series = [
    {
      label: 'fedavg',
      points: [1, 2, 3].map((round) => ({ round, accuracy: 0.8 + round / 100, loss: 1 / round })),
    },
    {
      label: 'fedmedian <robust>',
      points: [1, 2].map((round) => ({ round, accuracy: 0.7 + round / 100, loss: null })),
    },
  ];

  it('tabulates both runs side by side, with a dash where a value is missing', () => {
    const table = comparisonTable(series);
    expect(table.split('\n')[0]).toBe(
      '| round | fedavg accuracy | fedmedian <robust> accuracy | fedavg loss | fedmedian <robust> loss |',
    );
    expect(table).toContain('| 3 | 0.8300 | — | 0.3333 | — |');
  });

  it('draws an SVG with one line per series and escaped labels', () => {
    const svg = comparisonChartSvg('MNIST 2NN: fedavg vs fedmedian', series);
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    // Two accuracy lines, one loss line (the second series has no loss).
    expect(svg.match(/<polyline/g)).toHaveLength(3);
    expect(svg).toContain('fedmedian &#60;robust&#62;');
    expect(svg).not.toContain('NaN');
  });

  it('picks round tick values', () => {
    expect(niceTicks(0, 1)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(1, 87, 6)).toEqual([20, 40, 60, 80]);
  });
});
