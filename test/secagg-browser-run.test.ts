import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { RoundRecord, RunRecord } from '@tessera/db';
import { bytesToWeights } from '@tessera/protocol';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, launchChromium } from './chromium.js';
import { createFederation, quickRun, startHarness, waitFor } from './harness.js';
import { keptContribution, spawnKeepingClients, useRunCleanup } from './kept-contributions.js';
import {
  fedAvgOfChanges,
  maxAbsDifference,
  patternChange,
  scriptedSecAggClient,
} from './secagg-clients.js';

/**
 * A mixed SecAgg run: two Node client processes (the built CLI, training MNIST), two browser
 * clients (the built page at /join/ in Debian's headless Chromium, training in its Web Worker and
 * masking with Chromium's WebCrypto) and a scripted Node client that drops after masking, in the
 * same secure aggregation on a real coordinator, for two rounds. Each committed model is compared
 * with plain FedAvg of what the survivors contributed: the Node processes keep theirs
 * (--keep-contributions), the pages theirs (?keep-contributions), the scripted client's is chosen.
 */

const builtPage = fileURLToPath(new URL('../apps/web-client/dist/index.html', import.meta.url));
let browser: Browser | undefined;
const cleanup = useRunCleanup();
const { folders } = cleanup;

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium`);
  if (!existsSync(builtPage)) throw new Error(`the web client is not built (${builtPage})`);
  browser = await launchChromium('wasm');
}, 120_000);
afterAll(async () => {
  await browser?.close();
});

const secureAggregation = { clipRange: 0.5, maxExamplesPerClient: 1000, stepDeadlineMs: 90_000 };

interface Contribution {
  global: Float32Array;
  change: Float32Array;
  numExamples: number;
}

function fromKept(global: Float32Array, weights: Float32Array, numExamples: number): Contribution {
  return { global, change: weights.map((w, i) => w - (global[i] as number)), numExamples };
}

/** What a page kept with ?keep-contributions for one round. */
async function pageContribution(page: Page, runId: string, round: number): Promise<Contribution> {
  const kept = await page.evaluate(
    ([run, number]) => {
      const all = (
        window as unknown as {
          tesseraContributions: {
            runId: string;
            round: number;
            global: Float32Array;
            weights: Float32Array;
            numExamples: number;
          }[];
        }
      ).tesseraContributions;
      const found = all.find((c) => c.runId === run && c.round === number);
      return found === undefined
        ? null
        : {
            global: Array.from(found.global),
            weights: Array.from(found.weights),
            numExamples: found.numExamples,
          };
    },
    [runId, round] as const,
  );
  if (kept === null) throw new Error(`the page kept no contribution for round ${round}`);
  return fromKept(
    Float32Array.from(kept.global),
    Float32Array.from(kept.weights),
    kept.numExamples,
  );
}

/** The page's own log (warnings, round outcomes), newest first, for a failure's message. */
const pageLog = (page: Page) =>
  page.evaluate(() => Array.from(document.querySelectorAll('#log li'), (li) => li.textContent));

describe('a secure-aggregation run of Node and browser clients', () => {
  it('commits plain FedAvg of the masked changes of two Node processes, two Chromium pages and a client that drops after masking, for two rounds; nothing individual is kept', async () => {
    const h = cleanup.set(await startHarness());
    const { federationId, tokens } = await createFederation(h, 5);
    const { root, dirs: nodeDirs } = spawnKeepingClients(
      h,
      [tokens[0]?.token as string, tokens[1]?.token as string],
      2,
    );
    folders.push(root);
    const pages: Page[] = [];
    const consoleLines: string[] = [];
    for (const [k, sampleCount] of [
      [2, 200],
      [3, 120],
    ] as const) {
      const page = await (browser as Browser).newPage();
      page.on('console', (message) => consoleLines.push(`[page ${k}] ${message.text()}`));
      page.on('pageerror', (error) => consoleLines.push(`[page ${k} pageerror] ${error.message}`));
      const invitation = new URLSearchParams({
        coordinator: h.coordinator.url,
        token: tokens[k]?.token as string,
      });
      await page.goto(`${h.coordinator.url}/join/?backend=wasm&keep-contributions#${invitation}`);
      await page.fill('#sample-count', String(sampleCount));
      await page.click('#join');
      await page.waitForSelector('body[data-state="connected"]', { timeout: 120_000 });
      pages.push(page);
    }
    const dropping = await scriptedSecAggClient(h.coordinator.url, tokens[4]?.token as string, {
      numExamples: 80,
      change: patternChange(2),
      dropAfterMasking: true,
    });
    await waitFor(() => h.coordinator.registry.list().length === 5, 'five clients', 120_000);

    const created = await h.api<RunRecord>('POST', '/runs', {
      ...quickRun,
      federationId,
      rounds: 2,
      clientsPerRound: 5,
      minClients: 4,
      roundDeadlineMs: 300_000,
      secureAggregation,
    });
    expect(created.status).toBe(201);
    const runId = created.body.id;
    const finished = new Promise((resolve) => h.coordinator.on('run-finished', resolve));
    expect((await h.api('POST', `/runs/${runId}/start`)).status).toBe(202);
    const outcome = (await finished) as { status: string };
    if (outcome.status !== 'completed') {
      const logs = await Promise.all(pages.map(pageLog));
      throw new Error(
        `run ${outcome.status}:\n${h.logs.slice(-30).join('\n')}\n${consoleLines.join('\n')}\n${JSON.stringify(logs, null, 1)}`,
      );
    }

    const rounds = (await h.api<RoundRecord[]>('GET', `/runs/${runId}/rounds`)).body;
    expect(rounds.map((round) => round.number)).toEqual([1, 2]);
    const [first, second] = rounds as [RoundRecord, RoundRecord];
    const ids = tokens.map((t) => t.client.id);
    // Round 1: all five in U3, the dropout's masked input counted, its self-mask rebuilt.
    expect([...first.participantClientIds].sort()).toEqual([...ids].sort());
    expect(first.privacy).toMatchObject({
      mechanism: 'secure-aggregation',
      selected: 5,
      u1: 5,
      u2: 5,
      u3: 5,
      droppedAfterMasking: 1,
    });
    // Round 2: the four still connected, the two pages among them.
    expect([...second.participantClientIds].sort()).toEqual(ids.slice(0, 4).sort());
    expect(second.privacy).toMatchObject({ selected: 4, u1: 4, u2: 4, u3: 4 });

    const paramCount = dropping.globals.get(1)?.length as number;
    const committed = async (round: number) =>
      bytesToWeights((await h.db.rounds.checkpoint(runId, round)).weights, paramCount);
    const initial = dropping.globals.get(1) as Float32Array;
    const globals = [initial, await committed(1)];
    for (const [index, round] of [first, second].entries()) {
      const number = index + 1;
      const global = globals[index] as Float32Array;
      const contributions = [
        ...nodeDirs.map((dir) => keptContribution(dir, runId, number)),
        ...(await Promise.all(pages.map((page) => pageContribution(page, runId, number)))),
      ];
      // Every client trained from the round's global model (the page's global was intact).
      for (const contribution of contributions) {
        expect(maxAbsDifference(contribution.global, global)).toBe(0);
      }
      // The pages trained: their changes are not zero.
      for (const contribution of contributions.slice(2)) {
        expect(maxAbsDifference(contribution.change, new Float32Array(paramCount))).toBeGreaterThan(
          1e-4,
        );
      }
      if (number === 1) {
        contributions.push({ global, change: patternChange(2)(paramCount), numExamples: 80 });
      }
      const expected = fedAvgOfChanges(global, contributions, secureAggregation.clipRange);
      const model = await committed(number);
      const maxAbsError = round.privacy?.['maxAbsError'] as number;
      expect(maxAbsError).toBeGreaterThan(0);
      expect(maxAbsError).toBeLessThan(1e-6);
      // The quantisation bound, and float32 rounding of global + mean change.
      expect(maxAbsDifference(model, expected)).toBeLessThanOrEqual(maxAbsError + 2e-7);
      // Without a page's contribution the sum is measurably different: the pages' are in it.
      for (const k of [2, 3]) {
        const withoutPage = fedAvgOfChanges(
          global,
          contributions.filter((_, i) => i !== k),
          secureAggregation.clipRange,
        );
        expect(maxAbsDifference(model, withoutPage)).toBeGreaterThan(1e-5);
      }
      // Nothing individual is recorded.
      expect(await h.db.rounds.updates(runId, number)).toEqual([]);
    }
    // Each page masked in its training worker, both rounds (worker-secagg.ts logs it).
    for (const log of await Promise.all(pages.map(pageLog))) {
      for (const number of [1, 2]) {
        expect(
          log.some((line) => line?.includes(`round ${number}: masked in the training worker`)),
        ).toBe(true);
      }
    }
    expect(consoleLines.filter((line) => line.includes('pageerror'))).toEqual([]);
  }, 600_000);
});
