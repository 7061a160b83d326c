import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  loadPenguins,
  loadSpamAssassin,
  PENGUINS_OUTPUT,
  parseJsonLines,
  readTabular,
  SPAM_ASSASSIN_OUTPUT,
} from '@tessera/data';
import { ErrorCode } from '@tessera/protocol';
import { builtinTask } from '@tessera/tasks';
import { describe, expect, it } from 'vitest';
import {
  penguinsPartitions,
  spamPartitions,
  testSplitFile,
  writeTaskPartitions,
} from './task-partitions.js';

const penguinsInput = () => {
  const { input } = builtinTask('penguins');
  if (input.kind !== 'tabular') throw new Error('penguins is tabular');
  return input;
};

describe('the demo writes each client its share of the training split', () => {
  it('penguins: CSVs with the header, together the training split, IID by seed', () => {
    const parts = penguinsPartitions(4, 42);
    const { train } = loadPenguins();
    const read = parts.map((csv) => readTabular(csv, penguinsInput(), PENGUINS_OUTPUT));
    const sizes = read.map((data) => data.count);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(train.count);
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    // The same rows as the training split (as multisets of body masses and labels).
    const key = (mass: number, label: number) => `${mass}:${label}`;
    const masses = (data: typeof train) =>
      Array.from(data.numeric.get('Body Mass (g)') ?? [], (mass, i) =>
        key(mass, data.labels[i] as number),
      );
    expect(read.flatMap(masses).sort()).toEqual(masses(train).sort());
    expect(penguinsPartitions(4, 42)).toEqual(parts);
    expect(penguinsPartitions(4, 43)).not.toEqual(parts);
  });

  it('spam: JSON Lines a client reads with the task output, both classes, every e-mail once', () => {
    const parts = spamPartitions(2, 42);
    const { train } = loadSpamAssassin();
    const read = parts.map((jsonl) => parseJsonLines(jsonl, SPAM_ASSASSIN_OUTPUT));
    expect(read.map((data) => data.count).reduce((a, b) => a + b, 0)).toBe(train.count);
    for (const data of read) expect(new Set(data.labels)).toEqual(new Set([0, 1]));
    const spam = read.flatMap((data) => Array.from(data.labels)).filter((label) => label === 1);
    expect(spam.length).toBe(Array.from(train.labels).filter((label) => label === 1).length);
    expect(read.flatMap((data) => data.texts).sort()).toEqual([...train.texts].sort());
  });

  it('writes one file per client, named by task and client', () => {
    const directory = mkdtempSync(join(tmpdir(), 'tessera-demo-partitions-'));
    try {
      const files = writeTaskPartitions('penguins', join(directory, 'data'), 3, 7);
      expect(files.map((file) => file.slice(directory.length))).toEqual([
        '/data/penguins-client-0.csv',
        '/data/penguins-client-1.csv',
        '/data/penguins-client-2.csv',
      ]);
      expect(files.map((file) => readFileSync(file, 'utf8'))).toEqual(penguinsPartitions(3, 7));
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it.each([0, 1.5, 267, Number.NaN])(
    'refuses %s clients (INVALID_ARGUMENT, field clients) and writes nothing',
    (clients) => {
      const directory = mkdtempSync(join(tmpdir(), 'tessera-demo-partitions-'));
      try {
        expect(() => writeTaskPartitions('penguins', join(directory, 'data'), clients, 1)).toThrow(
          expect.objectContaining({
            code: ErrorCode.INVALID_ARGUMENT,
            data: expect.objectContaining({ field: 'clients' }),
          }),
        );
        expect(existsSync(join(directory, 'data'))).toBe(false);
      } finally {
        rmSync(directory, { recursive: true, force: true });
      }
    },
  );
});

describe("the demo's held-out set is the test split, which no client holds", () => {
  it('penguins: the test split as a CSV the task reads', () => {
    const { test } = loadPenguins();
    const read = readTabular(testSplitFile('penguins'), penguinsInput(), PENGUINS_OUTPUT);
    expect(read.count).toBe(test.count);
    expect(Array.from(read.labels)).toEqual(Array.from(test.labels));
    expect(Array.from(read.numeric.get('Body Mass (g)') ?? [])).toEqual(
      Array.from(test.numeric.get('Body Mass (g)') ?? []),
    );
  });

  it("spam: the test split as JSON Lines; with the clients' files, every e-mail once", () => {
    const { train, test } = loadSpamAssassin();
    const read = parseJsonLines(testSplitFile('spam'), SPAM_ASSASSIN_OUTPUT);
    expect(read.texts).toEqual(test.texts);
    // The clients' files hold the training split, so the test split is the rest (the corpus
    // has some e-mails twice, which is why this counts rather than compares texts).
    const dealt = spamPartitions(3, 42).reduce(
      (sum, part) => sum + parseJsonLines(part, SPAM_ASSASSIN_OUTPUT).count,
      0,
    );
    expect(dealt).toBe(train.count);
    expect(dealt + read.count).toBe(train.count + test.count);
  });
});
