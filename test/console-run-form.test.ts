// The run form's messages and the live view's waiting line, in Debian's Chromium against a
// real coordinator (PGlite) and a real Node client process. Needs `npm run build` first.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, launchChromium } from './chromium.js';
import { type ConsoleFixture, PASSWORD, startConsoleFixture } from './console-fixtures.js';

const clientCli = fileURLToPath(new URL('../apps/node-client/dist/main.js', import.meta.url));
const consoleIndex = fileURLToPath(new URL('../apps/console/dist/index.html', import.meta.url));

let fx: ConsoleFixture;
let browser: Browser;
let page: Page;
let federationId: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  for (const [what, path] of [
    ['console', consoleIndex],
    ['node client', clientCli],
    ['Chromium', CHROMIUM],
  ] as const) {
    if (!existsSync(path)) throw new Error(`no ${what} at ${path}: run npm run build`);
  }
  fx = await startConsoleFixture();
  browser = await launchChromium('no-gpu');
  await fx.db.accounts.createUser({ email: 'form@example.org', role: 'admin', password: PASSWORD });
  federationId = (await fx.db.federations.create({ name: 'Form clinic' })).id;
  const context = await browser.newContext({ viewport: { width: 1280, height: 1400 } });
  page = await context.newPage();
  page.setDefaultTimeout(30_000);
  await page.goto(fx.url);
  await page.fill('input[name=email]', 'form@example.org');
  await page.fill('input[name=password]', PASSWORD);
  await page.click('button[type=submit]');
  await page.getByTestId('who').waitFor();
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await browser?.close();
  await fx?.dispose();
});

const form = () => page.locator('form[aria-label="New run"]');
const errorAt = (field: string) => page.locator(`[data-error-for="${field}"]`);
const submit = () => form().locator('button[type=submit]').click();
const runCount = async () => (await fx.db.runs.list()).length;

describe('the run form in people’s words', () => {
  it('names each field as the form shows it, with what it takes, and stores nothing', async () => {
    await page.goto(`${fx.url}/runs/new`);
    await form().locator('select[name=strategy] option').first().waitFor({ state: 'attached' });
    await page.fill('input[name=rounds]', '');
    await page.fill('input[name=seed]', '1.5');
    await page.fill('input[name=roundDeadline]', '3');
    await page.selectOption('select[name=roundDeadlineUnit]', 's');
    await submit();
    expect(await errorAt('rounds').textContent()).toBe('Rounds: a whole number from 1 to 100,000');
    expect(await errorAt('seed').textContent()).toBe(
      'Seed: a whole number from 0 to 2,147,483,647',
    );
    expect(await errorAt('roundDeadlineMs').textContent()).toMatch(
      /^Round deadline: at least 5 seconds/,
    );
    expect(await form().textContent()).not.toMatch(/Invalid input|expected (number|int)/);

    // Cross-field rules at the field they concern, in the form's labels.
    await page.fill('input[name=rounds]', '3');
    await page.fill('input[name=seed]', '0');
    await page.fill('input[name=roundDeadline]', '30');
    await page.fill('input[name=clientsPerRound]', '2');
    await page.fill('input[name=fractionFit]', '0.5');
    await submit();
    expect(await errorAt('fractionFit').textContent()).toBe(
      'Fraction of clients: give clients per round or fraction of clients, not both',
    );
    expect(await errorAt('rounds').count()).toBe(0);
    await page.fill('input[name=fractionFit]', '');
    await page.fill('input[name=minClients]', '3');
    await submit();
    expect(await errorAt('clientsPerRound').textContent()).toMatch(
      /^Clients per round: must be at least minimum clients \(3\)/,
    );

    // A strategy's options come from its schema, bounds and default with them.
    await page.fill('input[name=clientsPerRound]', '');
    await page.selectOption('select[name=strategy]', 'trimmed-mean');
    const beta = page.locator('[data-field="strategyOptions.beta"]');
    expect(await beta.textContent()).toContain('a number from 0 to below 0.5; default 0.1');
    await page.fill('input[name="strategyOptions.beta"]', '0.7');
    await submit();
    expect(await errorAt('strategyOptions.beta').textContent()).toBe(
      'beta: a number from 0 to below 0.5',
    );

    // Krum's minimum is the server's rule: its message is shown at Minimum clients.
    await page.selectOption('select[name=strategy]', 'krum');
    await submit();
    await errorAt('minClients').waitFor();
    expect(await errorAt('minClients').textContent()).toBe(
      'Minimum clients: krum aggregates rounds of at least 5 updates; minimum clients must be at least 5',
    );
    expect(new URL(page.url()).pathname).toBe('/runs/new');
    expect(await runCount()).toBe(0);
  });

  it('creates the run it shows: seconds to milliseconds, the options, kept updates', async () => {
    await page.goto(`${fx.url}/runs/new`);
    await form().locator('select[name=strategy] option').first().waitFor({ state: 'attached' });
    await page.fill('input[name=name]', 'Trimmed');
    await page.fill('input[name=rounds]', '4');
    await page.fill('input[name=minClients]', '2');
    await page.fill('input[name=roundDeadline]', '45');
    await page.selectOption('select[name=roundDeadlineUnit]', 's');
    await page.selectOption('select[name=strategy]', 'trimmed-mean');
    await page.fill('input[name="strategyOptions.beta"]', '0.2');
    await page.check('input[name=keepUpdates]');
    await page.fill('input[name=updateStorageLimitMb]', '64');
    await submit();
    await page.getByRole('heading', { name: 'Trimmed' }).waitFor();
    const [run] = await fx.db.runs.list();
    expect(run?.config).toMatchObject({
      strategy: 'trimmed-mean',
      strategyOptions: { beta: 0.2 },
      roundDeadlineMs: 45_000,
      minClients: 2,
      keepUpdates: true,
      updateStorageLimitMb: 64,
    });
  });

  it('asks local DP’s settings when it is ticked, checks them with the schema, and creates the run with them', async () => {
    await page.goto(`${fx.url}/runs/new`);
    await form().locator('select[name=strategy] option').first().waitFor({ state: 'attached' });
    expect(await form().locator('input[name=localDpClipNorm]').count()).toBe(0);
    await page.fill('input[name=name]', 'Local DP');
    await page.fill('input[name=rounds]', '2');
    await page.check('input[name=localDp]');
    await page.fill('input[name=localDpClipNorm]', '0');
    await page.fill('input[name=localDpNoiseMultiplier]', 'lots');
    const before = await runCount();
    await submit();
    await errorAt('localDp.clipNorm').waitFor();
    expect(await errorAt('localDp.clipNorm').textContent()).toBe(
      'clipNorm: a number above 0 and at most 1,000,000',
    );
    expect(await errorAt('localDp.noiseMultiplier').textContent()).toBe(
      'noiseMultiplier: a number from 0 to 1,000',
    );
    expect(await runCount()).toBe(before);
    await page.fill('input[name=localDpClipNorm]', '0.5');
    await page.fill('input[name=localDpNoiseMultiplier]', '1.5');
    await submit();
    await page.getByRole('heading', { name: 'Local DP' }).waitFor();
    const run = (await fx.db.runs.list()).find((r) => r.name === 'Local DP');
    expect(run?.config.localDp).toEqual({ clipNorm: 0.5, noiseMultiplier: 1.5, delta: 1e-5 });
  });
});

describe('the live view while a run waits', () => {
  it('says how many clients are connected of the minimum, and counts them as they come', async () => {
    const [run] = await fx.db.runs.list();
    if (!run) throw new Error('the form test creates the run');
    expect((await fx.call('POST', `/runs/${run.id}/start`)).status).toBe(202);
    await page.goto(`${fx.url}/runs/${run.id}`);
    const waiting = page.getByTestId('waiting');
    await expect
      .poll(() => waiting.textContent())
      .toBe('waiting for clients: 0 of minimum 2 connected');
    expect(await page.getByTestId('rounds-done').textContent()).toBe('0 of 4 rounds done');
    const issued = await fx.call<{ token: string }>(
      'POST',
      `/federations/${federationId}/clients`,
      {
        body: { organisation: 'Clinic A' },
      },
    );
    const child = spawn(
      process.execPath,
      [
        clientCli,
        '--coordinator',
        fx.url,
        '--progress',
        'none',
        '--mnist',
        '0/2',
        '--max-examples',
        '100',
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, TESSERA_TOKEN: issued.body.token },
      },
    );
    child.stdout?.resume();
    child.stderr?.resume();
    children.push(child);
    await expect
      .poll(() => waiting.textContent(), { timeout: 60_000 })
      .toBe('waiting for clients: 1 of minimum 2 connected');
  }, 120_000);

  it('gives the organisation a client command that works after a clone, and the join link', async () => {
    await page.goto(`${fx.url}/federations/${federationId}`);
    await page.fill('input[name=organisation]', 'Clinic B');
    await page.click('form[aria-label="Issue a client token"] button[type=submit]');
    const panel = page.getByTestId('issued-token');
    const token = (await panel.locator('.secret').textContent()) ?? '';
    expect(token).toMatch(/^tsr_/);
    const command = (await panel.getByTestId('client-command').textContent()) ?? '';
    expect(command).toContain(`'${token}' > ~/.tessera-token`);
    expect(command).toContain(
      `node apps/node-client/dist/main.js --coordinator ${fx.url} --token-file ~/.tessera-token`,
    );
    expect(await panel.getByTestId('join-link').getAttribute('href')).toBe(
      `${fx.url}/join/#token=${token}`,
    );
  });
});
