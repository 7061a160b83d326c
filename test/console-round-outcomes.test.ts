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
 * The console's round page lists each selected client's outcome with its reason. The round is
 * committed straight into the database (what the engine writes, pinned in engine.test.ts and
 * round-outcomes.test.ts), so this test needs no training.
 */

const consoleInChromium = useConsoleInChromium();
let fx: ConsoleFixture;
let browser: Browser;

beforeAll(() => {
  ({ fx, browser } = consoleInChromium);
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
      config: recordedRunConfig(),
    });
    const weights = new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer);
    await fx.db.rounds.saveInitialCheckpoint(run.id, weights);
    await commitRecordedRound(
      fx.db,
      { runId: run.id, round: 1, clientId: mary, checkpoint: weights },
      {
        selectedClientIds: [mary, john, luke],
        droppedClientIds: [luke],
        outcomes: [
          { clientId: mary, outcome: 'updated', code: null, reason: null },
          { clientId: john, outcome: 'failed', code: 'DATA_SHAPE_MISMATCH', reason: REASON },
          { clientId: luke, outcome: 'timed-out', code: null, reason: 'deadline passed' },
        ],
      },
    );

    const page = await signedInPage(fx, browser, 'admin', {
      email: 'outcomes-admin@example.org',
    });
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
    await page.context().close();
  }, 300_000);
});
