import type { RoundPhases } from '@tessera/protocol';
import { parseCsv, ROUND_COLUMNS } from '@tessera/research';
import type { Browser } from 'playwright-core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type ConsoleFixture,
  commitRecordedRound,
  recordedRunConfig,
  useConsoleInChromium,
} from './console-fixtures.js';

/**
 * A round's phases (issue 15 item 6) on their way out: the REST API's round records, the
 * rounds export (CSV and JSON Lines) and the console's run page in Chromium. The rounds are
 * committed straight into the database with phases as the engine records them (pinned in
 * apps/coordinator/src/engine.test.ts and test/simulation.test.ts), so no training is needed:
 * round 1 with every phase, round 2 committed and not yet evaluated (commit and evaluation
 * not recorded), round 3 as recorded before phases existed.
 */

const consoleInChromium = useConsoleInChromium();
let fx: ConsoleFixture;
let browser: Browser;

beforeAll(() => {
  ({ fx, browser } = consoleInChromium);
});

const ROUND_1: RoundPhases = {
  waitingMs: 12,
  distributionMs: 340,
  trainingMs: 7_800,
  aggregationMs: 25,
  commitMs: 1_500,
  evaluationMs: 13_000,
  centralEvaluationMs: 9_000,
};
const ROUND_1_TOTAL = 12 + 340 + 7_800 + 25 + 1_500 + 13_000;
const ROUND_2: RoundPhases = {
  ...ROUND_1,
  commitMs: null,
  evaluationMs: null,
  centralEvaluationMs: null,
};

async function recordRun() {
  const federation = await fx.db.federations.create({ name: 'Timed hospitals' });
  const { client } = await fx.db.clients.issueToken({
    federationId: federation.id,
    organisation: 'St Mary',
  });
  const run = await fx.db.runs.create({
    federationId: federation.id,
    name: 'Timed run',
    config: recordedRunConfig({ rounds: 3 }),
  });
  const weights = new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer);
  await fx.db.rounds.saveInitialCheckpoint(run.id, weights);
  await fx.db.runs.setStatus(run.id, 'running');
  for (const round of [1, 2, 3]) {
    const { commitMs: _c, evaluationMs: _e, centralEvaluationMs: _v, ...before } = ROUND_1;
    await commitRecordedRound(
      fx.db,
      { runId: run.id, round, clientId: client.id, checkpoint: weights },
      {
        finishedAt: new Date(Date.UTC(2026, 11, 1, 12, round, 8)),
        ...(round === 3 ? {} : { phases: before }),
      },
    );
  }
  await fx.db.rounds.recordPhases(run.id, 1, {
    commitMs: 1_500,
    evaluationMs: 13_000,
    centralEvaluationMs: 9_000,
  });
  return run.id;
}

describe("a round's phases", () => {
  it('reach the REST API, the rounds export and the console run page', async () => {
    const runId = await recordRun();

    const rounds = await fx.call<Array<{ number: number; phases: RoundPhases | null }>>(
      'GET',
      `/runs/${runId}/rounds`,
    );
    expect(rounds.status).toBe(200);
    expect(rounds.body.map((round) => round.phases)).toEqual([ROUND_1, ROUND_2, null]);
    const one = await fx.call<{ round: { phases: RoundPhases } }>('GET', `/runs/${runId}/rounds/1`);
    expect(one.body.round.phases).toEqual(ROUND_1);

    const csv = await fx.call<string>('GET', `/runs/${runId}/export/rounds`);
    expect(csv.status).toBe(200);
    const [header, ...rows] = parseCsv(csv.body);
    expect(header).toEqual([...ROUND_COLUMNS]);
    const column = (name: string) => rows.map((row) => row[header?.indexOf(name) ?? -1]);
    expect(column('training_ms')).toEqual(['7800', '7800', '']);
    expect(column('commit_ms')).toEqual(['1500', '', '']);
    expect(column('evaluation_ms')).toEqual(['13000', '', '']);
    // The whole round only once every phase is recorded.
    expect(column('round_ms')).toEqual([String(ROUND_1_TOTAL), '', '']);
    // Central evaluation ran beside the next round: its own column, not part of round_ms.
    expect(column('central_evaluation_ms')).toEqual(['9000', '', '']);

    const jsonl = await fx.call<string>('GET', `/runs/${runId}/export/rounds?format=jsonl`);
    const lines = jsonl.body
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines[0]).toMatchObject({
      waiting_ms: 12,
      distribution_ms: 340,
      training_ms: 7_800,
      aggregation_ms: 25,
      commit_ms: 1_500,
      evaluation_ms: 13_000,
      round_ms: ROUND_1_TOTAL,
      central_evaluation_ms: 9_000,
    });
    expect(lines[1]).toMatchObject({ commit_ms: null, round_ms: null });
    expect(lines[2]).toMatchObject({ waiting_ms: null, round_ms: null });

    // A researcher's session (logged in over REST), carried by the browser as its cookie.
    const { cookie } = await fx.login('researcher');
    const [name, value] = [
      cookie.slice(0, cookie.indexOf('=')),
      cookie.slice(cookie.indexOf('=') + 1),
    ];
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.addCookies([{ name, value, url: fx.url }]);
    const page = await context.newPage();
    page.setDefaultTimeout(60_000);
    await page.goto(`${fx.url}/runs/${runId}`);
    const table = page.getByTestId('round-phases');
    await table.waitFor();
    const cells = (round: number) =>
      table.locator(`tr[data-round="${round}"] td`).allTextContents();
    expect(await cells(1)).toEqual([
      '1',
      '12 ms',
      '340 ms',
      '7.8 s',
      '25 ms',
      '1.5 s',
      '13.0 s',
      '22.7 s',
      '34%',
      '9.0 s',
    ]);
    expect(await cells(2)).toEqual([
      '2',
      '12 ms',
      '340 ms',
      '7.8 s',
      '25 ms',
      '—',
      '—',
      '—',
      '—',
      '—',
    ]);
    // A round recorded before phases existed has no row.
    expect(await table.locator('tr[data-round="3"]').count()).toBe(0);
    await context.close();
  });
});
