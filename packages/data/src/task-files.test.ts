import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ErrorCode } from '@tessera/protocol';
import { afterAll, describe, expect, it } from 'vitest';
import { checkData, labelSummary } from './check.js';
import { loadTabularFile, loadTextFile } from './task-files.js';
import type { TabularSchema, TaskOutput } from './task-schema.js';

const directory = mkdtempSync(path.join(tmpdir(), 'tessera-task-files-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const filePath = path.join(directory, name);
  writeFileSync(filePath, text);
  return filePath;
}

const schema: TabularSchema = {
  kind: 'tabular',
  label: 'outcome',
  columns: [
    { name: 'age', type: 'numeric' },
    { name: 'ward', type: 'categorical', categories: ['a', 'b'] },
  ],
};
const output: TaskOutput = { kind: 'multiclass', classes: ['home', 'icu', 'ward'] };

describe('task file loaders', () => {
  it('read a TSV file by column name, and errors name its path', () => {
    const file = write('patients.tsv', 'ward\tage\toutcome\na\t61\thome\nb\t70\ticu\n');
    expect(loadTabularFile(file, schema, output).count).toBe(2);
    const bad = write('bad.csv', 'ward,age,outcome\na,61,home\nb,old,icu\n');
    expect(() => loadTabularFile(bad, schema, output)).toThrow(
      expect.objectContaining({
        message: `${bad}:3: column 'age': 'old' is not a number`,
        data: expect.objectContaining({ file: bad, line: 3, column: 'age' }),
      }),
    );
  });

  it('read texts from JSON Lines or CSV by the file name, and say which file is missing', () => {
    const spam: TaskOutput = { kind: 'binary', classes: ['ham', 'spam'] };
    const jsonl = write('mail.jsonl', '{"text":"hi","label":"ham"}\n');
    const csv = write('mail.csv', 'label,text\nspam,"buy, now"\n');
    expect(loadTextFile(jsonl, spam).texts).toEqual(['hi']);
    expect(loadTextFile(csv, spam).texts).toEqual(['buy, now']);
    const absent = path.join(directory, 'absent.jsonl');
    expect(() => loadTextFile(absent, spam)).toThrow(
      expect.objectContaining({ code: ErrorCode.NOT_FOUND, data: { file: absent } }),
    );
  });
});

describe('checkData', () => {
  it('says plainly what does not match, with the row count, and never throws for data', () => {
    const rows = ['ward,outcome', ...Array.from({ length: 412 }, () => 'a,home')].join('\n');
    const file = write('no-age.csv', rows);
    const check = checkData(() => loadTabularFile(file, schema, output), output);
    expect(check.ok).toBe(false);
    expect(check.summary).toBe(
      `${file}: 412 rows; column 'age' missing (the header has 2 columns: ward, outcome)`,
    );
    const bad = write('bad-rows.csv', 'ward,age,outcome\na,1,home\nc,2,home\nb,x,icu\n');
    expect(checkData(() => loadTabularFile(bad, schema, output), output).summary).toBe(
      `${bad}: 3 rows; line 3: column 'ward': 'c' is not one of the categories 'a', 'b' (and 1 more bad row)`,
    );
  });

  it('says where parsing stopped for broken quoting, without a row count it does not know', () => {
    const file = write('quote.csv', 'ward,age,outcome\na,1,home\n"b,2,icu\n');
    const check = checkData(() => loadTabularFile(file, schema, output), output);
    expect(check.summary).toBe(
      `${file}: line 3: malformed CSV: the parsing is finished with an opening quote at line 3`,
    );
  });

  it('summarises what fits: rows, hold-out and the classes seen', () => {
    const file = write('ok.csv', 'ward,age,outcome\na,1,home\na,2,home\nb,3,icu\n');
    const check = checkData(() => loadTabularFile(file, schema, output), output, { holdout: 1 });
    expect(check).toMatchObject({
      ok: true,
      summary: `${file}: 2 training, 1 held-out; 2 classes seen of 3 (none of 'ward')`,
    });
    expect(labelSummary(Float64Array.from([0, 2, 1, 1]), output)).toBe(
      '3 classes seen of 3 (home 1, icu 2, ward 1)',
    );
    expect(labelSummary(Float64Array.from([1.5, -2, 3]), { kind: 'regression' })).toBe(
      'labels from -2 to 3, mean 0.8333',
    );
  });
});
