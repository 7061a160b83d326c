import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseCsv, ROUND_COLUMNS, UPDATE_COLUMNS } from '@tessera/research';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, launchChromium } from './chromium.js';
import { type ConsoleFixture, PASSWORD, startConsoleFixture } from './console-fixtures.js';
import { type RecordedRuns, recordRuns } from './recorded-runs.js';

/**
 * A researcher exports from the console in Chromium: the run page's and the round page's
 * Export links download the tables (the research routes, with the session cookie), and the
 * CSV parses with the documented header. The runs are recorded straight into the database.
 */

const consoleIndex = fileURLToPath(new URL('../apps/console/dist/index.html', import.meta.url));

let fx: ConsoleFixture;
let browser: Browser;
let runs: RecordedRuns;

beforeAll(async () => {
  for (const [what, path] of [
    ['console', consoleIndex],
    ['Chromium', CHROMIUM],
  ] as const) {
    if (!existsSync(path))
      throw new Error(`no ${what} at ${path}: run npm run build (and apt-get install -y chromium)`);
  }
  fx = await startConsoleFixture();
  runs = await recordRuns(fx.db, 'Export hospitals');
  await fx.db.accounts.createUser({
    email: 'export-researcher@example.org',
    role: 'researcher',
    password: PASSWORD,
  });
  browser = await launchChromium('no-gpu');
});

afterAll(async () => {
  await browser?.close();
  await fx?.dispose();
});

/** Clicks a download link and answers the file's name and text. */
async function download(page: Page, testId: string): Promise<{ name: string; text: string }> {
  const [file] = await Promise.all([
    page.waitForEvent('download'),
    page.getByTestId(testId).click(),
  ]);
  const path = await file.path();
  return { name: file.suggestedFilename(), text: readFileSync(path, 'utf8') };
}

describe('export from the console', () => {
  it('lets a researcher download the run and round tables as CSV and JSON Lines', async () => {
    const context = await browser.newContext({ acceptDownloads: true });
    const page = await context.newPage();
    page.setDefaultTimeout(60_000);
    await page.goto(fx.url);
    await page.fill('input[name=email]', 'export-researcher@example.org');
    await page.fill('input[name=password]', PASSWORD);
    await page.click('button[type=submit]');
    await page.getByTestId('who').waitFor();
    expect(await page.getByTestId('who').textContent()).toContain('researcher');

    await page.goto(`${fx.url}/runs/${runs.faithful}`);
    await page.getByTestId('export').waitFor();
    const rounds = await download(page, 'export-rounds-csv');
    expect(rounds.name).toBe(`${runs.faithful}-rounds.csv`);
    const [header, ...rows] = parseCsv(rounds.text);
    expect(header).toEqual([...ROUND_COLUMNS]);
    expect(rows.map((row) => row[header?.indexOf('round') ?? -1])).toEqual(['1', '2']);
    const checkpoints = await fx.db.rounds.checkpointHashes(runs.faithful);
    expect(rows.map((row) => row[header?.indexOf('checkpoint_sha256') ?? -1])).toEqual(
      checkpoints.slice(1).map((c) => c.sha256),
    );

    const updates = await download(page, 'export-updates-jsonl');
    const lines = updates.text
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(lines).toHaveLength(4);
    expect(Object.keys(lines[0])).toEqual([...UPDATE_COLUMNS]);
    expect(lines.map((line) => line.organisation)).toContain('org "b", with a comma');
    // The run page offers the latest round's tfjs model too.
    expect(await page.getByTestId('export').textContent()).toContain('Model of round 2 (tfjs)');

    await page.goto(`${fx.url}/runs/${runs.faithful}/rounds/2`);
    await page.getByTestId('export').waitFor();
    const roundCsv = await download(page, 'export-updates-csv');
    expect(roundCsv.name).toBe(`${runs.faithful}-round-2-updates.csv`);
    const [updateHeader, ...updateRows] = parseCsv(roundCsv.text);
    expect(updateHeader).toEqual([...UPDATE_COLUMNS]);
    expect(updateRows.map((row) => row[1])).toEqual(['2', '2']);
    await context.close();
  }, 300_000);

  it('lets a researcher create an API token in the console, use it, and revoke it', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(60_000);
    page.on('dialog', (dialog) => dialog.accept());
    await page.goto(fx.url);
    await page.fill('input[name=email]', 'export-researcher@example.org');
    await page.fill('input[name=password]', PASSWORD);
    await page.click('button[type=submit]');
    await page.getByTestId('who').waitFor();
    await page.getByRole('link', { name: 'API tokens' }).click();
    const form = page.getByRole('form', { name: 'Create an API token' });
    // A bad value is refused at its field, and nothing is stored.
    const before = await fx.db.prisma.apiToken.count();
    await form.locator('input[name=name]').fill('laptop');
    await form.locator('input[name=expiresInDays]').fill('1000');
    await form.getByRole('button', { name: 'Create' }).click();
    await form.locator('[data-error-for=expiresInDays]').waitFor();
    expect(await fx.db.prisma.apiToken.count()).toBe(before);

    await form.locator('input[name=expiresInDays]').fill('30');
    await form.getByRole('button', { name: 'Create' }).click();
    const token = (await page.getByTestId('new-token-value').textContent()) ?? '';
    expect(token).toMatch(/^tsa_/);
    const read = (bearer: string) =>
      fetch(`${fx.url}/api/runs/${runs.faithful}`, {
        headers: { authorization: `Bearer ${bearer}` },
      });
    expect((await read(token)).status).toBe(200);
    await page.getByTestId('tokens').getByRole('button', { name: 'Revoke' }).click();
    await page
      .getByTestId('tokens')
      .getByText(/^revoked /)
      .waitFor();
    expect((await read(token)).status).toBe(401);
    await context.close();
  }, 300_000);

  it('lets a researcher verify a run from its page: bit-identical, differing, or nothing kept', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(60_000);
    await page.goto(fx.url);
    await page.fill('input[name=email]', 'export-researcher@example.org');
    await page.fill('input[name=password]', PASSWORD);
    await page.click('button[type=submit]');
    await page.getByTestId('who').waitFor();
    const verify = async (runId: string) => {
      await page.goto(`${fx.url}/runs/${runId}`);
      await page.getByTestId('verify').getByRole('button', { name: 'Verify' }).click();
      return page.getByTestId('verify-result').textContent();
    };
    expect(await verify(runs.faithful)).toBe(
      'Bit-identical: 2 of 2 checkpoints reproduced bit-identically.',
    );
    expect(await verify(runs.tampered)).toBe(
      'NOT identical: 0 of 1 checkpoints reproduced bit-identically; round 1 differs.',
    );
    expect(await verify(runs.plain)).toMatch(
      /^Nothing to replay: the run kept no update bytes \(keepUpdates was off\)\. It can be verified only against its records, not replayed\.$/,
    );
    await context.close();
  }, 300_000);
});
