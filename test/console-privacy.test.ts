import type { Browser } from 'playwright-core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type ConsoleFixture,
  commitRecordedRound,
  recordedRunConfig,
  signedInPage,
  useConsoleInChromium,
} from './console-fixtures.js';

/**
 * The console's run page charts a dp-fedavg run's epsilon per round against its budget and
 * says why the run ended. The rounds are committed straight into the database with the
 * `privacy` the engine records (pinned in test/dp-run.test.ts), so no training is needed.
 */

const consoleInChromium = useConsoleInChromium();
let fx: ConsoleFixture;
let browser: Browser;

beforeAll(() => {
  ({ fx, browser } = consoleInChromium);
});

const END_REASON = 'privacy budget: epsilon would be 3.5 > budget 3 (delta 0.00001) after round 3';

describe("the console's run page, for a dp-fedavg run", () => {
  it('charts epsilon per round with the budget, and shows why the run ended', async () => {
    const federation = await fx.db.federations.create({ name: 'DP hospitals' });
    const { client } = await fx.db.clients.issueToken({
      federationId: federation.id,
      organisation: 'St Mary',
    });
    const run = await fx.db.runs.create({
      federationId: federation.id,
      name: 'Private run',
      config: recordedRunConfig({
        strategy: 'dp-fedavg',
        strategyOptions: {
          noiseMultiplier: 1,
          clipNorm: 1,
          expectedClientsPerRound: 1,
          samplingRate: 0.5,
          budget: { epsilon: 3, delta: 1e-5 },
          innerStrategy: 'fedavg',
          innerOptions: {},
        },
        rounds: 10,
      }),
    });
    const weights = new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer);
    await fx.db.rounds.saveInitialCheckpoint(run.id, weights);
    await fx.db.runs.setStatus(run.id, 'running');
    for (const [round, epsilon] of [
      [1, 1.25],
      [2, 2.5],
    ] as const) {
      await commitRecordedRound(
        fx.db,
        { runId: run.id, round, clientId: client.id, checkpoint: weights },
        { privacy: { mechanism: 'sampled-gaussian', steps: round, epsilon, delta: 1e-5 } },
      );
    }
    await fx.db.runs.setStatus(run.id, 'completed', { endReason: END_REASON });

    const page = await signedInPage(fx, browser, 'admin', {
      email: 'privacy-admin@example.org',
    });
    await page.goto(`${fx.url}/runs/${run.id}`);

    const chart = page.getByTestId('epsilon-chart');
    await chart.waitFor();
    // Two epsilons and the budget line at both rounds.
    await expect.poll(() => chart.getAttribute('data-points')).toBe('4');
    expect(await chart.locator('figcaption').textContent()).toBe(
      'Privacy spent (ε at δ = 0.00001) per round, budget 3',
    );
    expect(await page.getByTestId('end-reason').textContent()).toBe(
      `Ended after round 2: ${END_REASON}`,
    );
    // A run without DP has no epsilon chart.
    const plain = await fx.db.runs.create({
      federationId: federation.id,
      name: 'Plain run',
      config: { ...run.config, strategy: 'fedavg', strategyOptions: {} },
    });
    await page.goto(`${fx.url}/runs/${plain.id}`);
    await page.getByTestId('accuracy-chart').waitFor();
    expect(await page.getByTestId('epsilon-chart').count()).toBe(0);
    expect(await page.getByTestId('end-reason').count()).toBe(0);
    await page.context().close();
  });
});
