import { describe, expect, it } from 'vitest';
import { checkData } from './check.js';
import {
  emailText,
  loadPenguins,
  loadSpamAssassin,
  PENGUINS_INPUT,
  penguinsCsv,
  SPAM_ASSASSIN_OUTPUT,
} from './datasets.js';
import {
  combineStatistics,
  preprocessingConstants,
  tabularStatistics,
  withPreprocessing,
} from './statistics.js';
import { readTabular, tabularExamples } from './tabular.js';
import { textExamples } from './text.js';
import { buildVocabulary } from './tokenizer.js';

const classCounts = (labels: Float64Array, classes: number) => {
  const counts = new Array<number>(classes).fill(0);
  for (const label of labels) counts[label] = (counts[label] ?? 0) + 1;
  return counts;
};

describe('loadPenguins', () => {
  it('gives the 333 complete records, split 80/20, the same for the same seed', () => {
    const { train, test, output } = loadPenguins();
    expect([train.count, test.count]).toEqual([266, 67]);
    const all = classCounts(train.labels, 3).map(
      (n, i) => n + (classCounts(test.labels, 3)[i] ?? 0),
    );
    expect(all).toEqual([146, 68, 119]);
    expect(output).toEqual({ kind: 'multiclass', classes: ['Adelie', 'Chinstrap', 'Gentoo'] });
    expect([...train.numeric.keys()]).toEqual([
      'Beak Length (mm)',
      'Beak Depth (mm)',
      'Flipper Length (mm)',
      'Body Mass (g)',
    ]);
    expect(new Set(train.categorical.get('Sex'))).toEqual(new Set(['FEMALE', 'MALE']));
    expect([...loadPenguins().test.lines]).toEqual([...test.lines]);
    expect([...loadPenguins({ seed: 1 }).test.lines]).not.toEqual([...test.lines]);
    // The split is a partition of the records: no line in both.
    const trainLines = new Set(train.lines);
    expect([...test.lines].some((line) => trainLines.has(line))).toBe(false);
  });

  it('goes through statistics to standardised, one-hot examples', () => {
    const { train } = loadPenguins();
    const schema = withPreprocessing(
      PENGUINS_INPUT,
      preprocessingConstants(
        combineStatistics([tabularStatistics(train, PENGUINS_INPUT)], PENGUINS_INPUT),
        PENGUINS_INPUT,
      ),
    );
    const examples = tabularExamples(train, schema);
    // Island (3) + 4 numbers + Sex (FEMALE, MALE).
    expect(examples.featureSize).toBe(9);
    let sum = 0;
    for (let row = 0; row < examples.count; row++) sum += examples.x[row * 9 + 3] as number;
    expect(Math.abs(sum / examples.count)).toBeLessThan(1e-6);
  });

  it('is summarised for the pre-join check, and its CSV reads as a client file', () => {
    const csv = penguinsCsv();
    expect(csv.split('\n')[0]).toBe(
      '"Species","Island","Beak Length (mm)","Beak Depth (mm)","Flipper Length (mm)","Body Mass (g)","Sex"',
    );
    const check = checkData(
      () => readTabular(csv, PENGUINS_INPUT, loadPenguins().output, { source: 'penguins.csv' }),
      loadPenguins().output,
      { holdout: 33 },
    );
    expect(check.summary).toBe(
      'penguins.csv: 300 training, 33 held-out; 3 classes seen of 3 (Adelie 146, Chinstrap 68, Gentoo 119)',
    );
  });
});

describe('loadSpamAssassin', () => {
  it('gives 6046 e-mails (4150 ham, 1896 spam) as Subject + body, split 80/20', () => {
    const { train, test, output } = loadSpamAssassin();
    expect(output).toEqual(SPAM_ASSASSIN_OUTPUT);
    expect(train.count + test.count).toBe(6046);
    expect(test.count).toBe(1209);
    const counts = classCounts(train.labels, 2).map(
      (n, i) => n + (classCounts(test.labels, 2)[i] ?? 0),
    );
    expect(counts).toEqual([4150, 1896]);
    for (const text of train.texts.slice(0, 50)) {
      expect(text).not.toMatch(/^(Received|Return-Path|Delivered-To):/m);
    }
    const vocabulary = buildVocabulary(
      train.texts.slice(0, 500),
      { kind: 'word', lowercase: true },
      { size: 1000, minCount: 2 },
    );
    expect(vocabulary).toContain('the');
    const examples = textExamples(train, {
      kind: 'text',
      maxLength: 64,
      tokenizer: { kind: 'word', lowercase: true, vocabulary },
    });
    expect(examples.x.length).toBe(train.count * 64);
  });

  it('keeps the subject and body of an e-mail, not its other headers', () => {
    const message =
      'From: a@b\r\nSubject: Cheap\r\n  pills\r\nX-Spam: yes\r\n\r\nBuy now.\r\nReally.';
    expect(emailText(message)).toBe('Cheap pills\nBuy now.\nReally.');
    expect(emailText('From: a@b\n\nno subject')).toBe('no subject');
  });
});
