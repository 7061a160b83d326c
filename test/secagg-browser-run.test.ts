import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { RoundRecord, RunRecord } from '@tessera/db';
import type { Browser } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, launchChromium } from './chromium.js';
import { createFederation, type Harness, quickRun, startHarness, waitFor } from './harness.js';

/**
 * A mixed SecAgg round: two Node client processes and the browser client (the built page at
 * /join/ in Debian's headless Chromium, masking with Chromium's WebCrypto) in the same secure
 * aggregation, on a real coordinator.
 */

const builtPage = fileURLToPath(new URL('../apps/web-client/dist/index.html', import.meta.url));
let harness: Harness | undefined;
let browser: Browser | undefined;

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium`);
  if (!existsSync(builtPage)) throw new Error(`the web client is not built (${builtPage})`);
  browser = await launchChromium('wasm');
}, 120_000);
afterEach(async () => {
  await harness?.dispose();
  harness = undefined;
});
afterAll(async () => {
  await browser?.close();
});

describe('a secure-aggregation round of Node and browser clients', () => {
  it('sums the masked changes of two Node client processes and a Chromium page; nothing individual is kept', async () => {
    harness = await startHarness();
    const h = harness;
    const { federationId, tokens } = await createFederation(h, 3);
    for (const k of [0, 1]) {
      h.spawnClient(tokens[k]?.token as string, ['--mnist', `${k}/2`, '--max-examples', '200']);
    }
    const browserToken = tokens[2] as (typeof tokens)[number];
    const page = await (browser as Browser).newPage();
    const lines: string[] = [];
    page.on('console', (message) => lines.push(`[${message.type()}] ${message.text()}`));
    page.on('pageerror', (error) => lines.push(`[pageerror] ${error.message}`));
    const invitation = new URLSearchParams({
      coordinator: h.coordinator.url,
      token: browserToken.token,
    });
    await page.goto(`${h.coordinator.url}/join/?backend=wasm#${invitation}`);
    await page.fill('#sample-count', '200');
    await page.click('#join');
    await page.waitForSelector('body[data-state="connected"]', { timeout: 60_000 });
    await waitFor(() => h.coordinator.registry.list().length === 3, 'three clients', 120_000);

    const created = await h.api<RunRecord>('POST', '/runs', {
      ...quickRun,
      federationId,
      rounds: 2,
      clientsPerRound: 3,
      minClients: 3,
      roundDeadlineMs: 180_000,
      secureAggregation: { clipRange: 0.5, maxExamplesPerClient: 1000, stepDeadlineMs: 60_000 },
    });
    expect(created.status).toBe(201);
    const runId = created.body.id;
    const finished = new Promise((resolve) => h.coordinator.on('run-finished', resolve));
    expect((await h.api('POST', `/runs/${runId}/start`)).status).toBe(202);
    const outcome = (await finished) as { status: string };
    if (outcome.status !== 'completed') {
      throw new Error(
        `run ${outcome.status}:\n${h.logs.slice(-30).join('\n')}\n${lines.join('\n')}`,
      );
    }
    const rounds = (await h.api<RoundRecord[]>('GET', `/runs/${runId}/rounds`)).body;
    expect(rounds.map((round) => round.number)).toEqual([1, 2]);
    for (const round of rounds) {
      // One sum of the three: the page's masked change among them, in U3.
      expect([...round.participantClientIds].sort()).toEqual(tokens.map((t) => t.client.id).sort());
      expect(round.privacy).toMatchObject({ mechanism: 'secure-aggregation', u1: 3, u2: 3, u3: 3 });
      expect(round.numExamples).toBeGreaterThan(0);
      expect(await h.db.rounds.updates(runId, round.number)).toEqual([]);
    }
    // The model moved: the unmasked sum was not zero.
    const first = await h.db.rounds.checkpoint(runId, 1);
    const second = await h.db.rounds.checkpoint(runId, 2);
    expect(first.sha256).not.toBe(second.sha256);
    expect(lines.filter((line) => line.startsWith('[pageerror]'))).toEqual([]);
  }, 400_000);
});
