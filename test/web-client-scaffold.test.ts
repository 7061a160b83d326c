import { rmSync } from 'node:fs';
import { decodeStrategyState } from '@tessera/aggregation';
import { bytesToWeights } from '@tessera/protocol';
import { verifyRun } from '@tessera/research';
import type { Browser, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  CONTROL_VARIATE_DB,
  CONTROL_VARIATE_STORE,
} from '../apps/web-client/src/control-variate-store.js';
import { launchChromium, requireChromiumAndWebClient } from './chromium.js';
import { createFederation, type Harness, startHarness, waitFor } from './harness.js';
import {
  createKeptScaffoldRun,
  nodeControlVariate,
  spawnScaffoldClients,
} from './scaffold-clients.js';

/**
 * SCAFFOLD in the browser: the page keeps its control variate c_i in IndexedDB per (coordinator
 * origin, run), the c_i⁺ of its last accepted update included until a later round adopts it
 * (apps/web-client/src/control-variate-store.ts), so a page reloaded between rounds continues
 * the run with the c_i it had, as a Node client with --state-dir does. Real coordinator, two
 * real Node clients, the built page in headless Chromium on WASM.
 */

const browsers: Browser[] = [];
let harness: Harness | undefined;
const dirs: string[] = [];

beforeAll(requireChromiumAndWebClient);
afterEach(async () => {
  await harness?.dispose();
  harness = undefined;
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});
afterAll(async () => {
  for (const browser of browsers) await browser.close();
});

/** Fills the form of an opened /join/ page (the coordinator is its origin) and joins. */
async function joinRun(page: Page, token: string, consoleLines: string[]): Promise<void> {
  await page.fill('#token', token);
  await page.fill('#sample-count', '200');
  await page.click('#join');
  await page
    .waitForSelector('body[data-state="connected"]', { timeout: 90_000 })
    .catch(async (error: unknown) => {
      const banner = await page.textContent('#banner');
      throw new Error(
        `the page did not connect (${banner ?? ''}): ${String(error)}\n${consoleLines.join('\n')}`,
      );
    });
}

interface StoredControls {
  adopted: { values: number[] } | null;
  staged: { round: number; values: number[] } | null;
}

/** The page's c_i records of `runId`, read from its IndexedDB by code running in the page. */
function pageControls(page: Page, origin: string, runId: string): Promise<StoredControls> {
  return page.evaluate(
    async ({ database, storeName, origin, runId }) => {
      const opening = indexedDB.open(database);
      const db = await new Promise<IDBDatabase>((resolve, reject) => {
        opening.onsuccess = () => resolve(opening.result);
        opening.onerror = () => reject(opening.error);
      });
      try {
        if (!db.objectStoreNames.contains(storeName)) return { adopted: null, staged: null };
        const read = (kind: string) =>
          new Promise<{ values: Float32Array; round?: number } | undefined>((resolve, reject) => {
            const request = db
              .transaction(storeName)
              .objectStore(storeName)
              .get([origin, runId, kind]);
            request.onsuccess = () => resolve(request.result);
            request.onerror = () => reject(request.error);
          });
        const adopted = await read('adopted');
        const staged = await read('staged');
        return {
          adopted: adopted === undefined ? null : { values: Array.from(adopted.values) },
          staged:
            staged === undefined
              ? null
              : { round: staged.round as number, values: Array.from(staged.values) },
        };
      } finally {
        db.close();
      }
    },
    { database: CONTROL_VARIATE_DB, storeName: CONTROL_VARIATE_STORE, origin, runId },
  );
}

describe('SCAFFOLD in the browser', () => {
  it('keeps c_i in IndexedDB across a reload between rounds; c stays the mean of the page’s and the Node clients’ c_i', async () => {
    harness = await startHarness();
    const h = harness;
    const { federationId, tokens } = await createFederation(h, 3);
    const stateDirs = spawnScaffoldClients(
      h,
      [0, 1].map((k) => tokens[k]?.token as string),
      300,
      dirs,
    );
    const pageToken = tokens[2] as (typeof tokens)[number];
    const browser = await launchChromium('wasm');
    browsers.push(browser);
    const page = await browser.newPage();
    const consoleLines: string[] = [];
    page.on('console', (message) => consoleLines.push(`[${message.type()}] ${message.text()}`));
    page.on('pageerror', (error) => consoleLines.push(`[pageerror] ${error.message}`));
    const origin = new URL(h.coordinator.url).origin;
    await page.goto(`${h.coordinator.url}/join/?backend=wasm`);
    await joinRun(page, pageToken.token, consoleLines);
    expect(await page.getAttribute('body', 'data-control-variates')).toBe('indexeddb');
    await waitFor(() => h.coordinator.registry.list().length === 3, 'three clients to connect');

    const runId = await createKeptScaffoldRun(h, federationId);
    // Paused after round 1, so that the page reloads between rounds 1 and 2.
    const roundOne = new Promise<void>((resolve) =>
      h.coordinator.on('round-started', (event) => {
        if (event.runId === runId && event.round === 1) resolve();
      }),
    );
    const finishes: { status: string; error?: string }[] = [];
    h.coordinator.on('run-finished', (event) => finishes.push(event));
    expect((await h.api('POST', `/runs/${runId}/start`)).status).toBe(202);
    await roundOne;
    expect((await h.api('POST', `/runs/${runId}/pause`)).status).toBe(202);
    await waitFor(() => finishes.length === 1, 'the run to pause after round 1', 180_000);
    if (finishes[0]?.status !== 'paused') {
      throw new Error(
        `run ${JSON.stringify(finishes[0])}:\n${h.logs.slice(-30).join('\n')}\n${consoleLines.join('\n')}`,
      );
    }
    expect((await h.db.runs.get(runId)).currentRound).toBe(1);

    // The page's c_i⁺ of round 1 is staged (adopted only when round 2 arrives), in IndexedDB.
    const beforeReload = await pageControls(page, origin, runId);
    expect(beforeReload.adopted).toBeNull();
    expect(beforeReload.staged?.round).toBe(1);
    const stagedRoundOne = Float32Array.from(beforeReload.staged?.values ?? []);
    expect(stagedRoundOne).toHaveLength(199_210);
    expect(stagedRoundOne.some((value) => value !== 0)).toBe(true);

    await page.reload();
    // A new page: nothing of the last one's memory, but its IndexedDB records are there.
    expect(await page.getAttribute('body', 'data-state')).toBeNull();
    const afterReload = await pageControls(page, origin, runId);
    expect(afterReload.staged?.round).toBe(1);
    expect(Float32Array.from(afterReload.staged?.values ?? [])).toEqual(stagedRoundOne);
    await joinRun(page, pageToken.token, consoleLines);
    await waitFor(() => h.coordinator.registry.list().length === 3, 'the page to rejoin');
    expect((await h.api('POST', `/runs/${runId}/start`)).status).toBe(202);
    await waitFor(() => finishes.length === 2, 'the run to finish', 240_000);
    if (finishes[1]?.status !== 'completed') {
      throw new Error(`run ${finishes[1]?.status}:\n${h.logs.slice(-30).join('\n')}`);
    }
    const rounds = await h.db.rounds.list(runId);
    for (const round of rounds) {
      expect(round.participantClientIds).toContain(pageToken.client.id);
      expect(round.participantClientIds).toHaveLength(3);
    }

    // Round 2 started from the c_i kept across the reload: the page's c_i after round 2
    // (adopted when round 3 arrived) is that c_i plus the Δc_i it sent in round 2, as recorded.
    const afterRun = await pageControls(page, origin, runId);
    expect(afterRun.staged?.round).toBe(3);
    const pageAfterRoundTwo = Float32Array.from(afterRun.adopted?.values ?? []);
    expect(pageAfterRoundTwo).toHaveLength(199_210);
    const keptRoundTwo = await h.db.rounds.updatesWithWeights(runId, 2);
    const pageDelta = keptRoundTwo.find((update) => update.clientId === pageToken.client.id);
    const delta = bytesToWeights(pageDelta?.controlDelta as Uint8Array, 199_210);
    let worstStep = 0;
    for (let i = 0; i < delta.length; i++) {
      const expected = (stagedRoundOne[i] as number) + (delta[i] as number);
      worstStep = Math.max(worstStep, Math.abs(expected - (pageAfterRoundTwo[i] as number)));
    }
    expect(worstStep).toBeLessThan(1e-5);

    // The c the coordinator committed with round 2 is the mean of the three clients' c_i.
    const checkpoint = await h.db.rounds.checkpoint(runId, 2);
    const c = decodeStrategyState(checkpoint.strategyState as Uint8Array).arrays['c'];
    const nodeControls = stateDirs.map((dir) => nodeControlVariate(dir, runId));
    let largest = 0;
    let worst = 0;
    for (let i = 0; i < 199_210; i++) {
      const mean =
        ((nodeControls[0]?.[i] as number) +
          (nodeControls[1]?.[i] as number) +
          (pageAfterRoundTwo[i] as number)) /
        3;
      largest = Math.max(largest, Math.abs(c?.[i] as number));
      worst = Math.max(worst, Math.abs(mean - (c?.[i] as number)));
    }
    expect(largest).toBeGreaterThan(1e-4);
    expect(worst).toBeLessThan(1e-5 * Math.max(1, largest));

    // The run, the page's updates and Δc_i included, replays bit-identically.
    const report = await verifyRun(h.db, runId);
    expect(report.identical).toBe(true);
    expect(report.checks).toHaveLength(3);
  }, 600_000);

  it('says so, and keeps c_i in memory, where the browser gives the page no IndexedDB', async () => {
    harness = await startHarness();
    const h = harness;
    const { tokens } = await createFederation(h, 1);
    const browser = await launchChromium('wasm');
    browsers.push(browser);
    const page = await browser.newPage();
    const consoleLines: string[] = [];
    page.on('pageerror', (error) => consoleLines.push(`[pageerror] ${error.message}`));
    // As in a browser whose storage is switched off for the site.
    await page.addInitScript(() => {
      Object.defineProperty(window, 'indexedDB', { value: undefined, configurable: true });
    });
    await page.goto(`${h.coordinator.url}/join/?backend=wasm`);
    await joinRun(page, tokens[0]?.token as string, consoleLines);
    expect(await page.getAttribute('body', 'data-control-variates')).toBe('memory');
    const log = await page.textContent('#log');
    expect(log).toMatch(
      /SCAFFOLD control variates are kept in memory only .*IndexedDB is not available \(this browser has no IndexedDB\)/,
    );
  }, 180_000);
});
