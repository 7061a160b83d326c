/**
 * The demo's client files for the built-in tasks on shipped datasets: each organisation's
 * share of the data as the file it would hold (penguins as CSV, the e-mails as JSON Lines),
 * which its client then reads with `--data FILE`, as any organisation's own file is read.
 * Only the training split is dealt out (loadPenguins / loadSpamAssassin, seed 0): the test
 * split stays out of every client, for a central evaluation.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  loadSpamAssassin,
  partitionIid,
  penguinsCsv,
  SPAM_ASSASSIN_OUTPUT,
  splitHoldout,
} from '@tessera/data';
import { ErrorCode, TesseraError } from '@tessera/protocol';

/** The built-in tasks whose clients read files the demo writes, and the file each writes. */
export const FILE_TASKS = {
  penguins: { extension: 'csv' },
  spam: { extension: 'jsonl' },
} as const;
export type FileTaskName = keyof typeof FILE_TASKS;

export function isFileTask(name: string): name is FileTaskName {
  return Object.hasOwn(FILE_TASKS, name);
}

function checkClients(numClients: number, rows: number): void {
  if (!Number.isSafeInteger(numClients) || numClients < 1 || numClients > rows) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `clients must be an integer in 1..${rows} (one row each at least), got ${String(numClients)}`,
      { field: 'clients' },
    );
  }
}

/** The training and test splits of `count` rows, as datasets.ts splits them. */
function splitOf(count: number): { train: Uint32Array; holdout: Uint32Array } {
  const all = Uint32Array.from({ length: count }, (_, i) => i);
  return splitHoldout(all, 0.2, 0);
}

function trainingRows(count: number): Uint32Array {
  return splitOf(count).train;
}

/**
 * The task's test split as a file (penguins CSV, spam JSON Lines): what the demo's admin
 * uploads as the task's held-out set, so that each round is also evaluated centrally.
 */
export function testSplitFile(task: FileTaskName): string {
  if (task === 'penguins') {
    const [header, ...rows] = penguinsCsv().trimEnd().split('\n');
    const test = Array.from(splitOf(rows.length).holdout, (row) => rows[row] as string);
    return `${[header, ...test].join('\n')}\n`;
  }
  const { test } = loadSpamAssassin();
  const { classes } = SPAM_ASSASSIN_OUTPUT as { classes: readonly string[] };
  return Array.from(
    { length: test.count },
    (_, row) =>
      `${JSON.stringify({ text: test.texts[row], label: classes[test.labels[row] as number] })}\n`,
  ).join('');
}

/**
 * Penguins: one CSV per client (the header, then its rows), an IID split by `seed` of the
 * rows of the training split: the rows penguinsCsv writes, split as loadPenguins splits them.
 */
export function penguinsPartitions(numClients: number, seed: number): string[] {
  const [header, ...rows] = penguinsCsv().trimEnd().split('\n');
  const train = Array.from(trainingRows(rows.length), (row) => rows[row] as string);
  checkClients(numClients, train.length);
  return partitionIid(train.length, numClients, seed).map(
    (part) => `${[header, ...Array.from(part, (row) => train[row])].join('\n')}\n`,
  );
}

/**
 * Spam: one JSON Lines file per client, `{"text": ..., "label": "ham" | "spam"}` a line, an
 * IID split by `seed` of the training split's e-mails (Subject and body, see emailText).
 */
export function spamPartitions(numClients: number, seed: number): string[] {
  const { train } = loadSpamAssassin();
  checkClients(numClients, train.count);
  const { classes } = SPAM_ASSASSIN_OUTPUT as { classes: readonly string[] };
  return partitionIid(train.count, numClients, seed).map((part) =>
    Array.from(
      part,
      (row) =>
        `${JSON.stringify({ text: train.texts[row], label: classes[train.labels[row] as number] })}\n`,
    ).join(''),
  );
}

/** Writes each client's file into `directory`; their paths, client 0 first. */
export function writeTaskPartitions(
  task: FileTaskName,
  directory: string,
  numClients: number,
  seed: number,
): string[] {
  const contents =
    task === 'penguins' ? penguinsPartitions(numClients, seed) : spamPartitions(numClients, seed);
  mkdirSync(directory, { recursive: true });
  return contents.map((content, k) => {
    const file = join(directory, `${task}-client-${k}.${FILE_TASKS[task].extension}`);
    writeFileSync(file, content);
    return file;
  });
}
