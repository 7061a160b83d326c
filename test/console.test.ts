// The admin console in a real browser (Debian's Chromium, headless, driven by playwright-core)
// against a real coordinator with real Node client processes. Needs the built console
// (apps/console/dist) and node client (apps/node-client/dist): `npm run build` first.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, launchChromium } from './chromium.js';
import { type ConsoleFixture, PASSWORD, startConsoleFixture } from './console-fixtures.js';

const clientCli = fileURLToPath(new URL('../apps/node-client/dist/main.js', import.meta.url));
const consoleIndex = fileURLToPath(new URL('../apps/console/dist/index.html', import.meta.url));
const screenshots = fileURLToPath(new URL('../docs/screenshots/', import.meta.url));

let fx: ConsoleFixture;
let browser: Browser;
const children: ChildProcess[] = [];

beforeAll(async () => {
  for (const [what, path] of [
    ['console', consoleIndex],
    ['node client', clientCli],
    ['Chromium', CHROMIUM],
  ] as const) {
    if (!existsSync(path))
      throw new Error(`no ${what} at ${path}: run npm run build (and apt-get install -y chromium)`);
  }
  fx = await startConsoleFixture({ centralEvaluation: true });
  browser = await launchChromium('no-gpu');
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await browser?.close();
  await fx?.dispose();
});

function spawnClient(token: string, partition: number, of: number): ChildProcess {
  const child = spawn(
    process.execPath,
    [
      clientCli,
      '--coordinator',
      fx.url,
      '--token',
      token,
      '--progress',
      'none',
      '--mnist',
      `${partition}/${of}`,
      '--max-examples',
      '600',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout?.resume();
  child.stderr?.resume();
  children.push(child);
  return child;
}

async function newPage(): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(60_000);
  return page;
}

async function logIn(page: Page, email: string): Promise<void> {
  await page.goto(fx.url);
  await page.fill('input[name=email]', email);
  await page.fill('input[name=password]', PASSWORD);
  await page.click('button[type=submit]');
  await page.getByTestId('who').waitFor();
}

/** Points the accuracy chart draws now. */
const chartPoints = async (page: Page) =>
  Number(await page.getByTestId('accuracy-chart').getAttribute('data-points'));

describe('the admin console in a browser', () => {
  it('logs in as admin, issues tokens, creates and starts a run, watches it live, and tries the model', async () => {
    await fx.db.accounts.createUser({
      email: 'admin@example.org',
      role: 'admin',
      password: PASSWORD,
    });
    const page = await newPage();

    // A wrong password is refused on the page.
    await page.goto(fx.url);
    await page.fill('input[name=email]', 'admin@example.org');
    await page.fill('input[name=password]', 'not the password');
    await page.click('button[type=submit]');
    await page.getByText('wrong email or password').waitFor();
    await logIn(page, 'admin@example.org');

    // A federation, and a token for each of two organisations (each shown once).
    await page.click('header >> text=Federations');
    await page.fill('form[aria-label="New federation"] input[name=name]', 'Hospitals');
    await page.click('form[aria-label="New federation"] button[type=submit]');
    await page.getByRole('heading', { name: 'Hospitals' }).waitFor();
    // Empty organisation: the form says which field is wrong, before sending anything.
    await page.click('form[aria-label="Issue a client token"] button[type=submit]');
    await page.locator('[data-error-for=organisation]').waitFor();
    const tokens: string[] = [];
    for (const organisation of ['St Mary', 'St John']) {
      await page.fill('input[name=organisation]', organisation);
      await page.click('form[aria-label="Issue a client token"] button[type=submit]');
      const secret = page.getByTestId('issued-token').locator('.secret');
      await page.getByTestId('issued-token').getByText(`Token for ${organisation}`).waitFor();
      tokens.push((await secret.textContent()) ?? '');
      await page.click('text=Done');
    }
    expect(tokens.every((token) => /^tsr_[A-Za-z0-9_-]{43}$/.test(token))).toBe(true);
    await expect.poll(() => page.getByTestId('credentials').locator('tbody tr').count()).toBe(2);

    // Real Node clients join with those tokens; the clients page shows them live.
    for (const [k, token] of tokens.entries()) spawnClient(token, k, 2);
    await page.click('header >> text=Clients');
    await expect
      .poll(() => page.getByTestId('connected-clients').locator('tbody tr').count(), {
        timeout: 60_000,
      })
      .toBe(2);
    await page.getByTestId('connected-clients').getByText('St Mary').waitFor();
    mkdirSync(screenshots, { recursive: true });
    await page.screenshot({ path: `${screenshots}connected-clients.png` });

    // A run from the form; an invalid value is named next to its field first.
    await page.click('header >> text=Runs');
    await page.click('text=New run');
    await page.fill('input[name=name]', 'MNIST 2NN');
    await page.selectOption('select[name=model]', 'fedavg-2nn');
    await page.fill('input[name=rounds]', '0');
    await page.fill('input[name=minClients]', '2');
    await page.fill('input[name=batchSize]', '20');
    await page.click('form[aria-label="New run"] button[type=submit]');
    await page.locator('[data-error-for=rounds]').waitFor();
    expect(page.url()).toMatch(/\/runs\/new$/);
    // Enough rounds that the run is still running when the test pauses it, below.
    await page.fill('input[name=rounds]', '200');
    await page.click('form[aria-label="New run"] button[type=submit]');
    await page.getByRole('heading', { name: 'MNIST 2NN' }).waitFor();
    const runId = new URL(page.url()).pathname.split('/').pop() ?? '';

    // Start it and watch: the chart gains points from the live feed, with no reload.
    await page.evaluate(() => {
      (window as unknown as { sameDocument: boolean }).sameDocument = true;
    });
    expect(await chartPoints(page)).toBe(0);
    await page.getByTestId('run-controls').getByText('Start').click();
    await page.getByTestId('round-progress').getByText('selected').waitFor({ timeout: 60_000 });
    await expect
      .poll(() => page.getByTestId('rounds').locator('tbody tr').count(), {
        timeout: 240_000,
        interval: 250,
      })
      .toBeGreaterThanOrEqual(1);
    const afterOne = await chartPoints(page);
    expect(afterOne).toBeGreaterThan(0);
    await expect
      .poll(() => page.getByTestId('rounds').locator('tbody tr').count(), {
        timeout: 240_000,
        interval: 250,
      })
      .toBeGreaterThanOrEqual(2);
    await expect.poll(() => chartPoints(page), { timeout: 60_000 }).toBeGreaterThan(afterOne);
    expect(
      await page.evaluate(() => (window as unknown as { sameDocument?: boolean }).sameDocument),
    ).toBe(true);
    // Evaluation results arrive too (round-evaluated): test accuracy of round 1 is plotted.
    await expect
      .poll(
        () => page.getByTestId('accuracy-chart').locator('polyline').first().getAttribute('points'),
        {
          timeout: 120_000,
        },
      )
      .not.toBe('');
    // A few more rounds make a better picture for the README.
    await expect
      .poll(() => page.getByTestId('rounds').locator('tbody tr').count(), { timeout: 240_000 })
      .toBeGreaterThanOrEqual(5);
    mkdirSync(screenshots, { recursive: true });
    await page.screenshot({ path: `${screenshots}run-page.png`, fullPage: true });

    // The round page: participants, checkpoint hash, the model download.
    await page.getByTestId('rounds').locator('tbody tr').first().locator('a').click();
    await page.getByRole('heading', { name: 'Round 1' }).waitFor();
    const sha = await page.getByTestId('checkpoint-sha256').textContent();
    expect(sha).toMatch(/^[0-9a-f]{64}$/);
    await expect.poll(() => page.getByTestId('updates').locator('tbody tr').count()).toBe(2);
    const modelJson = await page.evaluate(
      async (id) => (await fetch(`/api/runs/${id}/model/model.json?round=1`)).json(),
      runId,
    );
    expect(modelJson).toMatchObject({ format: 'layers-model' });
    await page.goBack();

    // Pause: the open round finishes, then the run is paused; Resume continues with the next round.
    const controls = page.getByTestId('run-controls');
    await controls.getByRole('button', { name: 'Pause', exact: true }).click();
    // "Pausing after round N" shows while the open round finishes; a round that ends before the
    // page looks (a loaded machine, or a click between rounds) goes straight to Resume.
    await controls
      .getByText(/^Pausing after round \d+/)
      .or(controls.getByText('Resume'))
      .first()
      .waitFor({ timeout: 120_000 });
    await controls.getByText('Resume').waitFor({ timeout: 120_000 });
    const paused = await fx.db.runs.get(runId);
    expect(paused.status).toBe('paused');
    const roundsAtPause = (await fx.db.rounds.list(runId)).length;
    expect(roundsAtPause).toBe(paused.currentRound);
    // Try the model, while the run is paused (no new rounds move the canvas while it is drawn
    // on). A blank canvas is not sent: the page asks for a digit.
    const predictRequests: Array<{ pixels: number[] }> = [];
    page.on('request', (request) => {
      if (request.method() === 'POST' && /\/predict(\?|$)/.test(request.url())) {
        predictRequests.push(request.postDataJSON() as { pixels: number[] });
      }
    });
    const tryModel = page.getByTestId('try-model');
    await tryModel.getByText('Predict').click();
    await tryModel.getByText('Draw a digit first').waitFor();
    expect(predictRequests).toHaveLength(0);
    // Cleared, so the answer waited for below cannot be this alert still on the page.
    await tryModel.getByText('Clear').click();
    await tryModel.getByRole('alert').waitFor({ state: 'detached' });
    // A "1" drawn along the canvas's left edge, top to bottom: it reaches the model as MNIST
    // digits are, 20 pixels tall and centred by its mass in the 28x28 frame.
    const canvas = page.getByTestId('digit-canvas');
    await canvas.scrollIntoViewIfNeeded();
    const box = await canvas.boundingBox();
    if (!box) throw new Error('no canvas');
    await page.mouse.move(box.x + box.width * 0.04, box.y + box.height * 0.02);
    await page.mouse.down();
    for (let k = 1; k <= 12; k++) {
      await page.mouse.move(box.x + box.width * 0.04, box.y + box.height * (0.02 + 0.08 * k));
    }
    await page.mouse.up();
    await tryModel.getByText('Predict').click();
    // The answer, or the page's error (then the test says which): a bare wait for the answer
    // would only time out, as it once did on a loaded machine with nothing to say why.
    const answer = page.getByTestId('predicted-class');
    await answer.or(tryModel.getByRole('alert')).first().waitFor({ timeout: 90_000 });
    expect(await tryModel.getByRole('alert').allTextContents()).toEqual([]);
    const predicted = await answer.textContent();
    expect(Number(predicted)).toBeGreaterThanOrEqual(0);
    expect(Number(predicted)).toBeLessThanOrEqual(9);
    expect(predictRequests).toHaveLength(1);
    const sent = predictRequests[0]?.pixels ?? [];
    expect(sent).toHaveLength(784);
    let mass = 0;
    let massX = 0;
    let massY = 0;
    let [top, bottom, left, right] = [28, -1, 28, -1];
    sent.forEach((value, index) => {
      const [x, y] = [index % 28, Math.floor(index / 28)];
      mass += value;
      massX += value * (x + 0.5);
      massY += value * (y + 0.5);
      if (value > 0.1) {
        [top, bottom] = [Math.min(top, y), Math.max(bottom, y)];
        [left, right] = [Math.min(left, x), Math.max(right, x)];
      }
    });
    expect(Math.abs(massX / mass - 14)).toBeLessThanOrEqual(0.5);
    expect(Math.abs(massY / mass - 14)).toBeLessThanOrEqual(0.5);
    // Scaled into the 20x20 box: 20 rows tall (19 where anti-aliasing left a faint end row).
    expect(bottom - top + 1).toBeGreaterThanOrEqual(19);
    expect(bottom - top + 1).toBeLessThanOrEqual(20);
    expect(right - left + 1).toBeLessThan(10);
    await page.getByTestId('try-model').screenshot({ path: `${screenshots}try-the-model.png` });

    await controls.getByText('Resume').click();
    await controls.getByText('Stop').waitFor();
    await expect
      .poll(async () => (await fx.db.rounds.list(runId)).length, { timeout: 120_000 })
      .toBeGreaterThan(roundsAtPause);
    await page.context().close();
  }, 600_000);

  it('shows a researcher the results but refuses every change', async () => {
    await fx.db.accounts.createUser({
      email: 'researcher@example.org',
      role: 'researcher',
      password: PASSWORD,
    });
    const [run] = await fx.db.runs.list();
    if (!run) throw new Error('the first test creates a run');
    const [federation] = await fx.db.federations.list();
    const page = await newPage();
    await logIn(page, 'researcher@example.org');
    expect(await page.getByTestId('who').textContent()).toContain('researcher');
    await page.goto(`${fx.url}/runs/${run.id}`);
    await page.getByRole('heading', { name: 'MNIST 2NN' }).waitFor();
    await page.getByTestId('accuracy-chart').waitFor();
    // No controls for this role on the pages...
    expect(await page.getByTestId('run-controls').count()).toBe(0);
    await page.goto(`${fx.url}/federations/${federation?.id}`);
    await page.getByTestId('credentials').waitFor();
    expect(await page.locator('form[aria-label="Issue a client token"]').count()).toBe(0);
    // ...and the API refuses the researcher's session even with its own CSRF token. The run may
    // still be running or have completed meanwhile; either way the refused stop changes nothing.
    const statusBefore = (await fx.db.runs.get(run.id)).status;
    const attempts = await page.evaluate(
      async ({ runId, federationId }) => {
        const { csrfToken } = (await (await fetch('/api/auth/session')).json()) as {
          csrfToken: string;
        };
        const post = async (path: string, body?: unknown) => {
          const response = await fetch(path, {
            method: 'POST',
            headers: { 'x-csrf-token': csrfToken, 'content-type': 'application/json' },
            body: JSON.stringify(body ?? {}),
          });
          return { status: response.status, body: await response.json() };
        };
        return [
          await post(`/api/runs/${runId}/stop`),
          await post(`/api/federations/${federationId}/clients`, { organisation: 'Mallory' }),
        ];
      },
      { runId: run.id, federationId: federation?.id ?? '' },
    );
    for (const attempt of attempts) {
      expect(attempt.status).toBe(403);
      expect(attempt.body.error.code).toBe('FORBIDDEN');
    }
    const statusAfter = (await fx.db.runs.get(run.id)).status;
    expect(statusAfter).not.toBe('stopped');
    if (statusBefore === 'running') expect(['running', 'completed']).toContain(statusAfter);
    else expect(statusAfter).toBe(statusBefore);
    await page.context().close();
  }, 600_000);
});

describe('run control in the console', () => {
  it('asks before Stop, saying it discards the open round and is final, and offers no Resume after', async () => {
    await fx.db.accounts.createUser({
      email: 'stopper@example.org',
      role: 'admin',
      password: PASSWORD,
    });
    const federation = await fx.db.federations.create({ name: 'stop confirmation' });
    const run = await fx.db.runs.create({
      federationId: federation.id,
      name: 'Stop me',
      config: {
        model: 'fedavg-2nn',
        strategy: 'fedavg',
        strategyOptions: {},
        rounds: 3,
        clientsPerRound: 2,
        fractionFit: null,
        minClients: 2,
        roundDeadlineMs: 60_000,
        localEpochs: 1,
        batchSize: 10,
        learningRate: 0.1,
        seed: 0,
        data: {},
      },
    });
    // No clients: the run stays running, waiting for them.
    expect((await fx.call('POST', `/runs/${run.id}/start`, { as: 'service' })).status).toBe(202);
    const page = await newPage();
    await logIn(page, 'stopper@example.org');
    await page.goto(`${fx.url}/runs/${run.id}`);
    await page.getByRole('heading', { name: 'Stop me' }).waitFor();
    const controls = page.getByTestId('run-controls');
    const stop = controls.getByRole('button', { name: 'Stop', exact: true });

    // Dismissed: nothing happens.
    const asked: string[] = [];
    page.once('dialog', (dialog) => {
      asked.push(dialog.message());
      void dialog.dismiss();
    });
    await stop.click();
    await expect.poll(() => asked.length).toBe(1);
    expect(asked[0]).toContain('The open round is discarded');
    expect(asked[0]).toContain('cannot be resumed or undone');
    expect((await fx.db.runs.get(run.id)).status).toBe('running');
    expect(fx.coordinator.isRunning(run.id)).toBe(true);

    // Accepted: stopped, and no control is left to press.
    page.once('dialog', (dialog) => void dialog.accept());
    await stop.click();
    await stop.waitFor({ state: 'detached' });
    await expect.poll(async () => (await fx.db.runs.get(run.id)).status).toBe('stopped');
    expect(await controls.getByRole('button').count()).toBe(0);
    await page.reload();
    await page.getByRole('heading', { name: 'Stop me' }).waitFor();
    expect(await page.getByTestId('run-controls').getByRole('button').count()).toBe(0);
    await page.context().close();
  }, 300_000);
});
