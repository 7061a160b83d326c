import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ErrorCode } from '@tessera/protocol';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCsvExamples } from './csv.js';
import { loadCsvExamples } from './csv-file.js';

const directory = mkdtempSync(path.join(tmpdir(), 'tessera-csv-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

function writeCsv(name: string, text: string): string {
  const filePath = path.join(directory, name);
  writeFileSync(filePath, text);
  return filePath;
}

describe('loadCsvExamples', () => {
  it('reads labels and features, skipping a header, CRLF and blank lines', () => {
    const filePath = writeCsv('good.csv', 'label,f0,f1,f2\r\n3,0,0.5,1\r\n\r\n9, 0.25 ,1e-1,0\r\n');
    const examples = loadCsvExamples(filePath);
    expect(examples.count).toBe(2);
    expect(examples.featureSize).toBe(3);
    expect([...examples.y]).toEqual([3, 9]);
    expect([...examples.x]).toEqual([0, 0.5, 1, 0.25, Math.fround(0.1), 0]);
  });

  it('reads a file without a header, and divides by featureScale', () => {
    const filePath = writeCsv('pixels.csv', '1,0,255\n2,51,102\n');
    const examples = loadCsvExamples(filePath, { featureScale: 255 });
    expect([...examples.x]).toEqual([0, 1, 0.2, 0.4].map(Math.fround));
    expect(loadCsvExamples(filePath).x[1]).toBe(255);
  });

  it('says which file is missing', () => {
    expect(() => loadCsvExamples(path.join(directory, 'absent.csv'))).toThrow(
      expect.objectContaining({
        code: ErrorCode.NOT_FOUND,
        message: expect.stringMatching(/absent\.csv/),
      }),
    );
  });

  it.each([
    [
      'a row with the wrong column count',
      'label,a,b\n1,0,0\n2,0\n',
      {},
      /:3: expected 3 columns \(label \+ 2 features\), got 2/,
    ],
    ['a row longer than featureSize', '1,0,0,0\n', { featureSize: 2 }, /:1: expected 3 columns/],
    ['a non-numeric feature', '1,0,0\n2,0,x\n', {}, /:2: column 3: 'x' is not a finite number/],
    ['an empty feature', '1,0,\n', {}, /:1: column 3: '' is not a finite number/],
    ['a label out of range', '1,0\n10,0\n', {}, /:2: label '10' is not an integer in 0\.\.9/],
    ['a fractional label', '1.5,0\n', {}, /:1: label '1.5' is not an integer/],
    ['a negative label', 'label,x\n-1,0\n', {}, /:2: label '-1'/],
    [
      'a label beyond numClasses',
      '2,0\n',
      { numClasses: 2 },
      /label '2' is not an integer in 0\.\.1/,
    ],
    ['a file with only a header', 'label,x\n\n', {}, /no data rows/],
  ])('rejects %s, with the line number', (_case, text, options, message) => {
    const filePath = writeCsv('bad.csv', text);
    expect(() => loadCsvExamples(filePath, options)).toThrow(
      expect.objectContaining({
        code: ErrorCode.INVALID_ARGUMENT,
        message: expect.stringMatching(message),
      }),
    );
  });
});

describe('parseCsvExamples', () => {
  it('names its source in errors and grows past its initial buffer', () => {
    expect(() => parseCsvExamples('1,a', { source: 'upload.csv' })).toThrow(/^upload\.csv:1:/);
    const rows = Array.from({ length: 3000 }, (_, i) => `${i % 10},${i},${i + 1}`).join('\n');
    const examples = parseCsvExamples(rows);
    expect(examples.count).toBe(3000);
    expect(examples.x[2 * 2999 + 1]).toBe(3000);
  });
});
