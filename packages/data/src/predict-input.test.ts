import { ErrorCode } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import { jsonRowsExamples, pixelsExamples, textPredictExamples } from './predict-input.js';
import { readTabular, tabularExamples } from './tabular.js';
import type { ImageSchema, TabularSchema, TaskOutput, TextSchema } from './task-schema.js';

const schema: TabularSchema = {
  kind: 'tabular',
  label: 'risk',
  columns: [
    { name: 'age', type: 'numeric', standardize: { mean: 50, std: 10 } },
    { name: 'ward', type: 'categorical', categories: ['a', 'b', 'c'] },
    { name: 'pulse', type: 'numeric' },
  ],
};
const output: TaskOutput = { kind: 'multiclass', classes: ['low', 'high'] };

const refusedAt = (field: string) =>
  expect.objectContaining({
    code: ErrorCode.INVALID_ARGUMENT,
    data: expect.objectContaining({ field }),
  });

describe('jsonRowsExamples', () => {
  it('encodes rows exactly as the CSV reader and tabularExamples encode the same rows', () => {
    const rows = [
      { age: 70, ward: 'b', pulse: 88 },
      { pulse: 61.5, ward: ' c ', age: 35 },
    ];
    const fromJson = jsonRowsExamples(rows, schema, (row) => `rows.${row}`);
    const csv = 'pulse,risk,age,ward\n88,low,70,b\n61.5,high,35,c\n';
    const fromCsv = tabularExamples(readTabular(csv, schema, output), schema);
    expect(fromJson).toEqual({ x: fromCsv.x, count: 2, featureSize: 5 });
    expect(Array.from(fromJson.x)).toEqual([2, 0, 1, 0, 88, -1.5, 0, 0, 1, 61.5]);
  });

  it('refuses unknown, missing and label columns, bad numbers and unknown categories, by field', () => {
    const at = (row: object) => () => jsonRowsExamples([row], schema, () => 'features');
    const good = { age: 1, ward: 'a', pulse: 2 };
    expect(at({ ...good, colour: 'red' })).toThrow(refusedAt('features.colour'));
    expect(at({ ...good, risk: 'low' })).toThrow(refusedAt('features.risk'));
    expect(at({ age: 1, ward: 'a' })).toThrow(refusedAt('features.pulse'));
    expect(at({ ...good, age: '1' })).toThrow(refusedAt('features.age'));
    expect(at({ ...good, ward: 'd' })).toThrow(refusedAt('features.ward'));
    expect(at({ ...good, ward: 3 })).toThrow(refusedAt('features.ward'));
    expect(() => jsonRowsExamples([good, [1]], schema, (row) => `rows.${row}`)).toThrow(
      refusedAt('rows.1'),
    );
  });
});

describe('textPredictExamples', () => {
  const text: TextSchema = {
    kind: 'text',
    maxLength: 3,
    tokenizer: { kind: 'word', lowercase: true, vocabulary: ['win', 'money'] },
  };
  it('gives the tokenizer ids and each text token count (over maxLength: cut)', () => {
    const encoded = textPredictExamples(['Money!', 'win big money now'], text);
    expect(Array.from(encoded.x)).toEqual([3, 0, 0, 2, 1, 3]);
    expect(encoded.tokenCounts).toEqual([1, 4]);
    expect(encoded.featureSize).toBe(3);
  });
});

describe('pixelsExamples', () => {
  const image: ImageSchema = {
    kind: 'image',
    height: 2,
    width: 2,
    channels: 1,
    valueRange: { min: 0, max: 255 },
  };
  it('scales pixels from the value range to [0, 1] and refuses a wrong count or range', () => {
    expect(pixelsExamples([0, 51, 255, 102], image).x).toEqual(Float32Array.from([0, 0.2, 1, 0.4]));
    expect(() => pixelsExamples([0, 1, 2], image)).toThrow(refusedAt('pixels'));
    expect(() => pixelsExamples([0, 1, 2, 256], image)).toThrow(refusedAt('pixels.3'));
    expect(() => pixelsExamples([0, -1, 2, 3], image)).toThrow(refusedAt('pixels.1'));
  });
});
