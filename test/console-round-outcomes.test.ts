import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, launchChromium } from './chromium.js';
import { type ConsoleFixture, PASSWORD, startConsoleFixture } from './console-fixtures.js';

/**
 * The console's round page lists each selected client's outcome with its reason. The round is
 * committed straight into the database (what the engine writes, pinned in engine.test.ts and
 * round-outcomes.test.ts), so this test needs no training.
 */

const consoleIndex = fileURLToPath(new URL('../apps/console/dist/index.html', import.meta.url));

let fx: ConsoleFixture;
let browser: Browser;

beforeAll(async () => {
  for (const [what, path] of [
    ['console', consoleIndex],
    ['Chromium', CHROMIUM],
  ] as const) {
    if (!existsSync(path))
      throw new Error(`no ${what} at ${path}: run npm run build (and apt-get install -y chromium)`);
  }
  fx = await startConsoleFixture();
  browser = await launchChromium('no-gpu');
});

afterAll(async () => {
  await browser?.close();
  await fx?.dispose();
});

const REASON = 'the CSV has 30 features per row; fedavg-2nn expects 784';

describe("the console's round page", () => {
  it("shows each selected client's outcome with its reason", async () => {
    const federation = await fx.db.federations.create({ name: 'Outcome hospitals' });
    const ids: string[] = [];
    for (const organisation of ['St Mary', 'St John', 'St Luke']) {
      const { client } = await fx.db.clients.issueToken({
        federationId: federation.id,
        organisation,
      });
      ids.push(client.id);
    }
    const [mary, john, luke] = ids as [string, string, string];
    const run = await fx.db.runs.create({
      federationId: federation.id,
      name: 'Outcomes',
      config: {
        model: 'fedavg-2nn',
        strategy: 'fedavg',
        strategyOptions: {},
        rounds: 1,
        clientsPerRound: null,
        fractionFit: null,
        minClients: 1,
        roundDeadlineMs: 60_000,
        localEpochs: 1,
        batchSize: 10,
        learningRate: 0.05,
        seed: 1,
        data: {},
      },
    });
    const weights = new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer);
    await fx.db.rounds.saveInitialCheckpoint(run.id, weights);
    await fx.db.rounds.commit({
      runId: run.id,
      round: 1,
      startedAt: new Date(Date.UTC(2026, 11, 1, 12, 0, 0)),
      finishedAt: new Date(Date.UTC(2026, 11, 1, 12, 0, 5)),
      selectedClientIds: [mary, john, luke],
      participantClientIds: [mary],
      droppedClientIds: [luke],
      numExamples: 100,
      trainLoss: 0.5,
      trainAccuracy: 0.8,
      metrics: {},
      outcomes: [
        { clientId: mary, outcome: 'updated', code: null, reason: null },
        { clientId: john, outcome: 'failed', code: 'DATA_SHAPE_MISMATCH', reason: REASON },
        { clientId: luke, outcome: 'timed-out', code: null, reason: 'deadline passed' },
      ],
      updates: [
        {
          clientId: mary,
          arrivalIndex: 0,
          numExamples: 100,
          durationMs: 10,
          sizeBytes: 16,
          sha256: 'a'.repeat(64),
          metrics: { loss: 0.5 },
        },
      ],
      checkpoint: weights,
    });

    await fx.db.accounts.createUser({
      email: 'outcomes-admin@example.org',
      role: 'admin',
      password: PASSWORD,
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(60_000);
    await page.goto(fx.url);
    await page.fill('input[name=email]', 'outcomes-admin@example.org');
    await page.fill('input[name=password]', PASSWORD);
    await page.click('button[type=submit]');
    await page.getByTestId('who').waitFor();
    await page.goto(`${fx.url}/runs/${run.id}/rounds/1`);
    await page.getByRole('heading', { name: 'Round 1' }).waitFor();

    const table = page.getByTestId('outcomes');
    await expect.poll(() => table.locator('tbody tr').count()).toBe(3);
    const failed = table.locator('tr[data-outcome=failed]');
    // Organisations by name once the federation's clients are loaded.
    await failed.getByText('St John').waitFor();
    expect(await failed.textContent()).toContain('Failed');
    expect(await failed.textContent()).toContain('DATA_SHAPE_MISMATCH');
    expect(await failed.textContent()).toContain(REASON);
    expect(await table.locator('tr[data-outcome=updated]').textContent()).toContain('St Mary');
    expect(await table.locator('tr[data-outcome=timed-out]').textContent()).toContain(
      'deadline passed',
    );
    await context.close();
  }, 300_000);
});
