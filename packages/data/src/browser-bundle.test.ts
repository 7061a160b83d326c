import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as data from './browser.js';
import type { TabularSchema, TaskOutput } from './task-schema.js';

/**
 * The browser entry bundled for a web page (esbuild, platform browser, nothing external: a
 * Node built-in reached from it fails the build) and run in Debian's headless Chromium, where
 * it must read the same CSV, statistics and tokens as in Node.
 */

const CHROMIUM = '/usr/bin/chromium';
let browser: Browser | undefined;
let script = '';

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium`);
  const bundle = await build({
    entryPoints: [fileURLToPath(new URL('./browser.ts', import.meta.url))],
    bundle: true,
    write: false,
    format: 'iife',
    globalName: 'TesseraData',
    platform: 'browser',
    target: 'es2022',
    conditions: ['@tessera/source'],
    logLevel: 'silent',
  });
  script = bundle.outputFiles[0]?.text ?? '';
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
});

const schema: TabularSchema = {
  kind: 'tabular',
  label: 'y',
  columns: [
    { name: 'x', type: 'numeric', standardize: 'federated' },
    { name: 'c', type: 'categorical' },
  ],
};
const output: TaskOutput = { kind: 'binary', classes: ['no', 'yes'] };
const csv = '\ufeffc;x;note;y\r\n"b";1.5;"a ""quoted""\nnote";yes\r\na;-2;;no\n"a";4e1;x;yes\n';
const text = 'Free MONEY, free!';
const tokenizer = { kind: 'word', lowercase: true, vocabulary: ['free', 'money'] } as const;

/** What the page computes, and the same in Node, for comparison. */
function compute(
  library: typeof data,
  input: {
    schema: TabularSchema;
    output: TaskOutput;
    csv: string;
    text: string;
    tokenizer: typeof tokenizer;
  },
) {
  const table = library.readTabular(input.csv, input.schema, input.output, {
    source: 'picked.csv',
  });
  const statistics = library.tabularStatistics(table, input.schema);
  let error: unknown;
  try {
    library.readTabular('c;x;y\na;nope;yes\n', input.schema, input.output, { source: 'bad.csv' });
  } catch (caught) {
    error = { message: (caught as Error).message, data: (caught as { data: unknown }).data };
  }
  return {
    lines: [...table.lines],
    statistics,
    tokens: [
      ...library
        .createTokenizer({ ...input.tokenizer, vocabulary: [...input.tokenizer.vocabulary] }, 4)
        .encode(input.text),
    ],
    error,
  };
}

describe('the browser bundle of @tessera/data', () => {
  it('reads CSV, computes statistics and tokens in Chromium exactly as in Node', async () => {
    expect(script.length).toBeGreaterThan(1000);
    const page = await (browser as Browser).newPage();
    await page.setContent('<!doctype html><meta charset="utf-8">');
    await page.addScriptTag({ content: script });
    const inPage = await page.evaluate(
      ({ source, input }) => {
        const library = (globalThis as unknown as { TesseraData: typeof data }).TesseraData;
        // The same function as below, sent as source: the page has only the bundle.
        return new Function('library', 'input', `return (${source})(library, input);`)(
          library,
          input,
        );
      },
      { source: compute.toString(), input: { schema, output, csv, text, tokenizer } },
    );
    const inNode = compute(data, { schema, output, csv, text, tokenizer });
    expect(inPage).toEqual(inNode);
    expect(inNode.lines).toEqual([2, 4, 5]);
    expect(inNode.tokens).toEqual([2, 3, 2, 0]);
    expect(inNode.error).toMatchObject({ data: { file: 'bad.csv', line: 2, column: 'x' } });
  }, 60_000);
});
