import { ErrorCode } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import { detectDelimiter, parseDelimited } from './delimited.js';
import { readTabular, tabularExamples } from './tabular.js';
import type { TabularSchema, TaskOutput } from './task-schema.js';

const schema: TabularSchema = {
  kind: 'tabular',
  label: 'species',
  columns: [
    { name: 'bill', type: 'numeric', standardize: { mean: 40, std: 2 } },
    { name: 'island', type: 'categorical', categories: ['Biscoe', 'Dream', 'Torgersen'] },
    { name: 'mass', type: 'numeric' },
  ],
};
const output: TaskOutput = { kind: 'multiclass', classes: ['Adelie', 'Chinstrap', 'Gentoo'] };

const good = [
  'id,island,species,mass,bill,notes',
  '1,Dream,Chinstrap,3500,44,"said ""hi"", twice"',
  '2,Biscoe,Gentoo,5000,38,',
  '3,Torgersen,Adelie,3750.5,40,',
].join('\n');

describe('readTabular', () => {
  it('maps columns by name, in any order, ignoring the extra ones', () => {
    const data = readTabular(good, schema, output, { source: 'p.csv' });
    expect(data.count).toBe(3);
    expect([...(data.numeric.get('bill') ?? [])]).toEqual([44, 38, 40]);
    expect([...(data.numeric.get('mass') ?? [])]).toEqual([3500, 5000, 3750.5]);
    expect(data.categorical.get('island')).toEqual(['Dream', 'Biscoe', 'Torgersen']);
    expect([...data.labels]).toEqual([1, 2, 0]);
    expect([...data.lines]).toEqual([2, 3, 4]);
  });

  it('encodes features in schema order: standardised numbers and one-hot categories', () => {
    const examples = tabularExamples(readTabular(good, schema, output), schema);
    expect(examples.featureSize).toBe(5);
    expect([...examples.x]).toEqual([2, 0, 1, 0, 3500, -1, 1, 0, 0, 5000, 0, 0, 0, 1, 3750.5]);
    expect([...examples.y]).toEqual([1, 2, 0]);
  });

  it('reads TSV (detected), CRLF, a UTF-8 BOM, quoted line breaks and blank lines', () => {
    const tsv =
      '\ufeffbill\tisland\tmass\tspecies\tnote\r\n' +
      '44\tDream\t3500\tChinstrap\t"two\r\nlines"\r\n' +
      '\r\n' +
      '38\t Biscoe \t5000\tGentoo\t"tab\there, ""quoted"""\n' +
      '40\tTorgersen\t1e3\tAdelie\tx';
    const data = readTabular(tsv, schema, output, { source: 'p.tsv' });
    expect(data.count).toBe(3);
    expect(data.categorical.get('island')).toEqual(['Dream', 'Biscoe', 'Torgersen']);
    expect([...(data.numeric.get('mass') ?? [])]).toEqual([3500, 5000, 1000]);
    // The first row spans lines 2-3, then a blank line: the next rows start on 5 and 6.
    expect([...data.lines]).toEqual([2, 5, 6]);
  });

  it('takes a given delimiter, and detects semicolons', () => {
    expect(detectDelimiter('a;b;"c,d"')).toBe(';');
    expect(detectDelimiter('a\tb,c\td')).toBe('\t');
    expect(detectDelimiter('single')).toBe(',');
    const table = parseDelimited('a|b\n1|2\n', { delimiter: '|' });
    expect(table.header).toEqual(['a', 'b']);
    expect(table.rows).toEqual([{ line: 2, fields: ['1', '2'] }]);
  });

  it('reads binary and regression labels', () => {
    const binary: TaskOutput = { kind: 'binary', classes: ['no', 'yes'] };
    const numbersOnly: TabularSchema = {
      kind: 'tabular',
      label: 'y',
      columns: [{ name: 'x', type: 'numeric' }],
    };
    expect([...readTabular('x,y\n1,yes\n2,no\n', numbersOnly, binary).labels]).toEqual([1, 0]);
    const regression = readTabular('x,y\n1,-2.5\n2,1e2\n', numbersOnly, { kind: 'regression' });
    expect([...tabularExamples(regression, numbersOnly).y]).toEqual([-2.5, 100]);
  });

  it.each([
    [
      'a missing column',
      'island,species,mass\nDream,Adelie,1\n',
      1,
      'bill',
      /column 'bill' missing/,
      0,
    ],
    [
      'a missing label column',
      'island,bill,mass\nDream,1,1\n',
      1,
      'species',
      /'species' missing/,
      0,
    ],
    [
      'a bad number',
      'bill,island,mass,species\n1,Dream,1,Adelie\n2,Dream,abc,Adelie\n3,Dream,1,Adelie\n',
      3,
      'mass',
      /:3: column 'mass': 'abc' is not a number$/,
      0,
    ],
    [
      'hex is not a number',
      'bill,island,mass,species\n0x1F,Dream,1,Adelie\n',
      2,
      'bill',
      /'0x1F' is not a number/,
      0,
    ],
    [
      'Infinity',
      'bill,island,mass,species\nInfinity,Dream,1,Adelie\n',
      2,
      'bill',
      /'Infinity' is not a number/,
      0,
    ],
    [
      'an unknown category, with more bad rows after it',
      'bill,island,mass,species\n1,Mars,1,Adelie\n1,Dream,,Adelie\n1,Dream,1,Adelie\n1,Dream,1,Emperor\n',
      2,
      'island',
      /:2: column 'island': 'Mars' is not one of the categories 'Biscoe', 'Dream', 'Torgersen' \(and 2 more bad rows\)$/,
      2,
    ],
    [
      'an unknown class name',
      'bill,island,mass,species\n1,Dream,1,adelie\n',
      2,
      'species',
      /'adelie' is not one of the classes 'Adelie', 'Chinstrap', 'Gentoo'/,
      0,
    ],
    [
      'an empty number',
      'bill,island,mass,species\n,Dream,1,Adelie\n',
      2,
      'bill',
      /column 'bill': empty value/,
      0,
    ],
    [
      'an empty category',
      'bill,island,mass,species\n1,"",1,Adelie\n',
      2,
      'island',
      /column 'island': empty value/,
      0,
    ],
    [
      'an empty label',
      'bill,island,mass,species\n1,Dream,1, \n',
      2,
      'species',
      /column 'species': empty label/,
      0,
    ],
  ])('refuses %s, naming file, line and column', (_case, text, line, column, message, more) => {
    let thrown: unknown;
    try {
      readTabular(text, schema, output, { source: 'data/p.csv' });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
      message: expect.stringMatching(message),
      data: { file: 'data/p.csv', line, column, moreBadRows: more },
    });
    expect((thrown as Error).message.startsWith(`data/p.csv:${line}:`)).toBe(true);
  });

  it('counts a row with several bad values once, and reports its first', () => {
    const text = 'bill,island,mass,species\nx,Mars,,Emperor\n1,Dream,1,Adelie\n2,Dream,y,Adelie\n';
    expect(() => readTabular(text, schema, output, { source: 'f' })).toThrow(
      expect.objectContaining({
        message: "f:2: column 'bill': 'x' is not a number (and 1 more bad row)",
        data: expect.objectContaining({ line: 2, column: 'bill', moreBadRows: 1, rows: 3 }),
      }),
    );
  });

  it('refuses a row with another field count, a duplicated header column and an empty file', () => {
    expect(() =>
      readTabular('bill,island,mass,species\n1,Dream,1\n', schema, output, { source: 'f' }),
    ).toThrow(
      expect.objectContaining({
        message: 'f:2: 3 fields where the header has 4',
        data: expect.objectContaining({ line: 2, rows: 1 }),
      }),
    );
    expect(() => readTabular('bill,bill,island,mass,species\n', schema, output)).toThrow(
      /column 'bill' appears twice/,
    );
    expect(() => readTabular('bill,island,mass,species\n\n', schema, output)).toThrow(
      /no data rows/,
    );
    expect(() => readTabular('', schema, output)).toThrow(/no header line/);
  });

  it('refuses broken quoting with the line it is on', () => {
    expect(() =>
      readTabular(
        'bill,island,mass,species\n1,Dream,1,Adelie\n1,"Dream,1,Adelie\n',
        schema,
        output,
        {
          source: 'q.csv',
        },
      ),
    ).toThrow(
      expect.objectContaining({
        message: expect.stringMatching(/^q\.csv:\d+: malformed CSV: .*quote/i),
        data: expect.objectContaining({ file: 'q.csv' }),
      }),
    );
  });

  it('refuses a schema it cannot trust, and a schema whose constants are still to come', () => {
    const twice: TabularSchema = {
      ...schema,
      columns: [schema.columns[0], schema.columns[0]] as TabularSchema['columns'],
    };
    expect(() => readTabular(good, twice, output)).toThrow(
      expect.objectContaining({ data: { field: 'input.columns[1].name' } }),
    );
    const federated: TabularSchema = {
      kind: 'tabular',
      label: 'species',
      columns: [{ name: 'island', type: 'categorical' }],
    };
    const data = readTabular(good, federated, output);
    expect(data.categorical.get('island')).toEqual(['Dream', 'Biscoe', 'Torgersen']);
    expect(() => tabularExamples(data, federated)).toThrow(/no categories yet/);
  });
});
