import type { TaskOutput } from './task-schema.js';

/** A problem with one value, in a few words, or the value read. */
export type ValueResult = { ok: true; value: number } | { ok: false; problem: string };

// Plain decimal notation only: Number() alone would also take '0x1F', 'Infinity' and '' (as 0).
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** A number written in decimal, surrounding spaces allowed; empty, hex, NaN and ±Infinity refused. */
export function readNumber(text: string): ValueResult {
  const trimmed = text.trim();
  if (trimmed === '') return { ok: false, problem: 'empty value' };
  const value = Number(trimmed);
  if (!DECIMAL.test(trimmed) || !Number.isFinite(value)) {
    return { ok: false, problem: `'${trimmed}' is not a number` };
  }
  return { ok: true, value };
}

/**
 * Reads a label as the task's output wants it: a class name (multiclass, binary) as its index
 * in `classes`, or a number (regression). Class names are compared after trimming surrounding
 * spaces, and case-sensitively: 'Spam' is not 'spam', and silently merging them would train on
 * labels nobody declared.
 */
export function labelReader(output: TaskOutput): (text: string) => ValueResult {
  if (output.kind === 'regression') return readNumber;
  const index = new Map(output.classes.map((name, i) => [name, i]));
  const known = output.classes.map((name) => `'${name}'`).join(', ');
  return (text) => {
    const trimmed = text.trim();
    if (trimmed === '') return { ok: false, problem: 'empty label' };
    const value = index.get(trimmed);
    return value === undefined
      ? { ok: false, problem: `'${trimmed}' is not one of the classes ${known}` }
      : { ok: true, value };
  };
}
