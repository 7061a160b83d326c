import { parseTaskDefinition, type TaskDefinition } from '@tessera/tasks';
import { describe, expect, it } from 'vitest';
import { checkTaskData, countDataRows, FileTaskData } from './task-data.js';
import { RoundFailure } from './trainer.js';

// The model is not built here: a placeholder topology is enough for the data's side.
const topology = { class_name: 'Sequential', config: { name: 's', layers: [] } };

const tabular: TaskDefinition = parseTaskDefinition({
  schemaVersion: 1,
  name: 'flats',
  input: {
    kind: 'tabular',
    label: 'price',
    columns: [
      { name: 'rooms', type: 'numeric', standardize: { mean: 3, std: 1 } },
      { name: 'city', type: 'categorical', categories: ['x', 'y'] },
    ],
  },
  output: { kind: 'regression' },
  loss: 'mean-squared-error',
  metrics: ['mae'],
  model: { topology },
});

const text: TaskDefinition = parseTaskDefinition({
  schemaVersion: 1,
  name: 'tickets',
  input: {
    kind: 'text',
    maxLength: 4,
    tokenizer: { kind: 'word', lowercase: true, vocabulary: ['refund', 'login'] },
  },
  output: { kind: 'multiclass', classes: ['billing', 'access'] },
  loss: 'softmax-cross-entropy',
  metrics: ['accuracy'],
  model: { topology },
});

const split = { holdoutFraction: 0.25, partitionSeed: 1 };

/** A file whose text can be changed between reads, counting them. */
function mutableFile(name: string, text: string) {
  const file = {
    name,
    text,
    reads: 0,
    read() {
      file.reads++;
      return file.text;
    },
  };
  return file;
}

describe('countDataRows (the hello hint before any task)', () => {
  it('counts CSV/TSV records after the header (quoted line breaks are one row) and non-blank JSON Lines', () => {
    expect(countDataRows({ name: 'a.csv', text: 'x,y\n1,"two\nlines"\n\n3,4\n' })).toBe(2);
    expect(countDataRows({ name: 'a.tsv', text: 'x\ty\n1\t2\n' })).toBe(1);
    expect(countDataRows({ name: 'a.JSONL', text: '{"text":"a"}\n\n  \n{"text":"b"}' })).toBe(2);
  });

  it('refuses, with file and line, a file that is not CSV at all (the client stops before joining)', async () => {
    const broken = mutableFile('broken.csv', 'x,y\n1,"unclosed\n');
    await expect(FileTaskData.open(broken, split)).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      data: { file: 'broken.csv', line: 2 },
    });
  });
});

describe('FileTaskData', () => {
  it("encodes a task's rows once per sha256, and reads a file again after a refusal (a fixed file is picked up)", async () => {
    const file = mutableFile('flats.csv', 'city,rooms\nx,3\n');
    const data = await FileTaskData.open(file, split);
    const refused = await data.examples(tabular).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(RoundFailure);
    expect(refused).toMatchObject({
      code: 'DATA_SCHEMA_MISMATCH',
      message: expect.stringMatching(/^flats\.csv:1: column 'price': column 'price' missing/),
    });
    file.text = 'city,price,rooms\nx,100,3\ny,200,4\nx,150,2\ny,120,5\n';
    const readsBefore = file.reads;
    const { train, holdout } = await data.examples(tabular);
    expect([train.count, holdout?.count]).toEqual([3, 1]);
    // rooms standardised, city one-hot: 3 features per row.
    expect(train.featureSize).toBe(3);
    await data.examples(tabular);
    expect(file.reads).toBe(readsBefore + 1);
  });

  it('reads a text task from JSON Lines or from CSV with text and label columns, and no tabular task from JSON Lines', async () => {
    const lines = mutableFile(
      't.ndjson',
      '{"text":"Refund please","label":"billing"}\n{"text":"login fails","label":"access"}\n',
    );
    const fromJson = await (
      await FileTaskData.open(lines, { holdoutFraction: 0, partitionSeed: 1 })
    ).examples(text);
    // Ids: 0 padding, 1 unknown, 2 + i for vocabulary[i]: "refund please" -> 2, 1, 0, 0.
    expect(Array.from(fromJson.train.x)).toEqual([2, 1, 0, 0, 3, 1, 0, 0]);
    expect(Array.from(fromJson.train.y)).toEqual([0, 1]);
    expect(fromJson.holdout).toBeNull();
    const table = mutableFile('t.csv', 'label,text\nbilling,refund\n');
    const fromCsv = await (
      await FileTaskData.open(table, { holdoutFraction: 0, partitionSeed: 1 })
    ).examples(text);
    expect(Array.from(fromCsv.train.x)).toEqual([2, 0, 0, 0]);
    await expect((await FileTaskData.open(lines, split)).examples(tabular)).rejects.toMatchObject({
      code: 'DATA_SCHEMA_MISMATCH',
      message: expect.stringContaining('not JSON Lines'),
    });
  });

  it('trains on one row whatever the hold-out fraction (splitHoldout keeps one for training)', async () => {
    const one = mutableFile('one.csv', 'city,price,rooms\nx,1,2\n');
    const data = await FileTaskData.open(one, { holdoutFraction: 0.5, partitionSeed: 1 });
    expect((await data.examples(tabular)).train.count).toBe(1);
  });
});

describe('checkTaskData', () => {
  it('says the task, the split and the labels of a file that fits', () => {
    const check = checkTaskData(
      tabular,
      { name: 'flats.csv', text: 'city,price,rooms\nx,100,3\ny,200,4\nx,150,2\ny,120,5\n' },
      split,
    );
    expect(check).toEqual({
      ok: true,
      lines: [
        "task flats: tabular, 2 columns and label 'price' -> regression",
        'flats.csv: 3 training, 1 held-out; labels from 100 to 200, mean 142.5',
        'the data fits the task',
      ],
    });
  });

  it('says the first problem of a file that does not fit, and that a file cannot hold images', () => {
    const check = checkTaskData(
      text,
      { name: 't.jsonl', text: '{"text":"a","label":"spam"}\n' },
      split,
    );
    expect(check.ok).toBe(false);
    expect(check.lines[1]).toMatch(/^t\.jsonl: 1 rows; line 1: column 'label': /);
    const images = parseTaskDefinition({
      ...text,
      input: { kind: 'image', height: 2, width: 2, channels: 1, valueRange: { min: 0, max: 1 } },
    });
    expect(checkTaskData(images, { name: 'x.csv', text: 'a\n1\n' }, split)).toEqual({
      ok: false,
      lines: [
        'task tickets: images 2x2x1 -> multiclass (billing, access)',
        'x.csv: image tasks read a folder of class sub-folders of images (--data DIR), not a file',
      ],
    });
  });
});
