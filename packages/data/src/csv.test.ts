import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ErrorCode } from '@tessera/protocol';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCsvExamples } from './csv.js';
import { loadCsvExamples } from './csv-file.js';
import { type InputSchema, MNIST_INPUT } from './schema.js';

const directory = mkdtempSync(path.join(tmpdir(), 'tessera-csv-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

function writeCsv(name: string, text: string): string {
  const filePath = path.join(directory, name);
  writeFileSync(filePath, text);
  return filePath;
}

/** A model input of two features in [0, 1] and three classes. */
const tiny: InputSchema = {
  featureSize: 2,
  numClasses: 3,
  featureRange: { min: 0, max: 1 },
  featureDescription: '2 test values',
};

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
    [
      'a later row longer than the schema',
      '1,0,0\n1,0,0,0\n',
      { schema: tiny },
      /:2: expected 3 columns \(label \+ 2 features\), got 4/,
    ],
    ['a non-numeric feature', '1,0,0\n2,0,x\n', {}, /:2: column 3: 'x' is not a finite number/],
    ['an empty feature', '1,0,\n', {}, /:1: column 3: '' is not a finite number/],
    ['a label out of range', '1,0\n10,0\n', {}, /:2: label '10' is not an integer in 0\.\.9/],
    ['a fractional label', '1.5,0\n', {}, /:1: label '1.5' is not an integer/],
    ['a negative label', 'label,x\n-1,0\n', {}, /:2: label '-1'/],
    [
      'a label beyond numClasses',
      '2,0\n',
      { schema: { ...tiny, featureSize: 1, numClasses: 2 } },
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

describe('parseCsvExamples against a model input (InputSchema)', () => {
  const pixels = (values: number[]) => values.join(',');
  const mnistRow = (label: number, value: number) =>
    `${label},${pixels(new Array(784).fill(value))}`;

  it('refuses a file of another shape with the expected and the found feature count', () => {
    const thirty = `label,${pixels(Array.from({ length: 30 }, (_, i) => i))}\n${mnistRow(1, 0).split(',').slice(0, 31).join(',')}\n`;
    expect(() => parseCsvExamples(thirty, { source: 'clinic.csv', schema: MNIST_INPUT })).toThrow(
      expect.objectContaining({
        code: ErrorCode.INVALID_ARGUMENT,
        message: 'clinic.csv: rows have 30 features; the models read 784 (28x28 pixels)',
        data: { line: 2, found: 30, expected: 784 },
      }),
    );
  });

  it('refuses the first value outside the range, naming line and column, with the hint', () => {
    const text = `${mnistRow(3, 0.5)}\n${mnistRow(4, 0)}\n`.replace(/\n4,0,0,0,/, '\n4,0,0,255,');
    expect(() =>
      parseCsvExamples(text, {
        source: 'pixels.csv',
        schema: MNIST_INPUT,
        scaleHint: 'run with --scale 255',
      }),
    ).toThrow(
      expect.objectContaining({
        message:
          "pixels.csv:2: column 4: 255 is outside the models' range [0, 1]; run with --scale 255",
        data: { line: 2, column: 4 },
      }),
    );
  });

  it('checks the range after scaling, and says what the scaled value was', () => {
    expect(parseCsvExamples('1,0,255\n2,51,102\n', { schema: tiny, featureScale: 255 }).x).toEqual(
      Float32Array.from([0, 1, 0.2, 0.4]),
    );
    expect(() => parseCsvExamples('1,0,300\n', { schema: tiny, featureScale: 255 })).toThrow(
      "CSV:1: column 3: 300 (1.176 after dividing by 255) is outside the models' range [0, 1]",
    );
    expect(() => parseCsvExamples('1,-0.01,0\n', { schema: tiny })).toThrow(
      /:1: column 2: -0\.01 is outside/,
    );
  });

  it("accepts the range's bounds and refuses labels beyond the schema's classes", () => {
    expect(parseCsvExamples('2,0,1\n', { schema: tiny }).count).toBe(1);
    expect(() => parseCsvExamples('3,0,1\n', { schema: tiny })).toThrow(
      "CSV:1: label '3' is not an integer in 0..2",
    );
  });
});
