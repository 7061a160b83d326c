import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode } from '@tessera/protocol';
import {
  type AdvertisedKeys,
  type Curve,
  SECAGG_PROTOCOL,
  SecAggClient,
  type SecAggInput,
  type SecAggResult,
  SecAggServer,
  type SecAggSetup,
  type SharesBundle,
  type UnmaskRequest,
} from '@tessera/secagg';
import { build } from 'esbuild';
import { Packr } from 'msgpackr';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, launchChromium } from './chromium.js';
import type { SecAggPageApi } from './secagg-browser.entry.js';
import { decodeRelay, encodeRelay, type PageAnswer } from './secagg-relay.js';

/**
 * Node and browser clients in the same SecAgg round: the server and some clients run here, the
 * others in headless Chromium pages (@tessera/secagg bundled for the browser, on Chromium's
 * WebCrypto), all messages passing through an in-memory relay: msgpackr bytes to and from the
 * Node clients (as the wire will carry them), JSON with base64 to and from the pages.
 */

const root = fileURLToPath(new URL('..', import.meta.url));
let httpServer: Server | undefined;
let baseUrl = '';
let browser: Browser | undefined;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium`);
  }
  const bundle = await build({
    entryPoints: [path.join(root, 'test/secagg-browser.entry.ts')],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    conditions: ['@tessera/source', 'module'],
    logLevel: 'silent',
  });
  const script = bundle.outputFiles[0]?.text ?? '';
  // The bundle must not need Node: no node: import survives into browser code.
  expect(script).not.toMatch(/from\s*["']node:/);
  const page =
    '<!doctype html><meta charset="utf-8"><script type="module" src="/entry.js"></script>';
  httpServer = createServer((request, response) => {
    if (request.url === '/') response.writeHead(200, { 'content-type': 'text/html' }).end(page);
    else if (request.url === '/entry.js') {
      response.writeHead(200, { 'content-type': 'text/javascript' }).end(script);
    } else response.writeHead(404).end();
  });
  await new Promise<void>((resolve) => httpServer?.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}`;
  browser = await launchChromium('no-gpu');
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await new Promise<void>((resolve) =>
    httpServer ? httpServer.close(() => resolve()) : resolve(),
  );
});

/** One client of the round, wherever it runs: replies to the server's messages. */
interface Party {
  id: string;
  where: 'node' | 'chromium';
  advertise(): Promise<unknown>;
  shareKeys(message: AdvertisedKeys): Promise<unknown>;
  maskInput(message: SharesBundle, input: SecAggInput): Promise<unknown>;
  unmask(message: UnmaskRequest): Promise<unknown>;
}

const packr = new Packr({ useRecords: false });
/** A message as the wire would deliver it: msgpackr bytes, decoded (binary fields as Buffers). */
const overTheWire = <T>(message: T): T => packr.unpack(packr.pack(message)) as T;

function nodeParty(client: SecAggClient): Party {
  return {
    id: client.clientId,
    where: 'node',
    advertise: async () => overTheWire(client.advertise()),
    shareKeys: async (message) => overTheWire(await client.shareKeys(overTheWire(message))),
    maskInput: async (message, input) =>
      overTheWire(await client.maskInput(overTheWire(message), input)),
    unmask: async (message) => overTheWire(client.unmask(overTheWire(message))),
  };
}

class PageRefusal extends Error {
  constructor(
    readonly code: string,
    readonly field: string | undefined,
  ) {
    super(`the page refused: ${code}${field ? ` (${field})` : ''}`);
  }
}

async function openPage(): Promise<{ page: Page; problems: string[] }> {
  const page = await (browser as Browser).newPage();
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(error.message));
  await page.goto(`${baseUrl}/`);
  await page.waitForFunction(() => 'tesseraSecAgg' in globalThis, undefined, { timeout: 30_000 });
  return { page, problems };
}

type Api = SecAggPageApi;
type Call = { [K in keyof Api]: [K, ...Parameters<Api[K]>] }[keyof Api];

/** Runs one of the page's functions; a refusal in the page is thrown here as a PageRefusal. */
async function callPage(page: Page, call: Call): Promise<unknown> {
  // Playwright's argument types recurse through the call's types; the page sees plain JSON.
  const evaluate = page.evaluate.bind(page) as (
    run: (call: unknown[]) => Promise<PageAnswer>,
    argument: unknown[],
  ) => Promise<PageAnswer>;
  const result = await evaluate(([name, ...args]) => {
    const api = (globalThis as unknown as { tesseraSecAgg: Record<string, unknown> }).tesseraSecAgg;
    return (api[name as string] as (...a: unknown[]) => Promise<PageAnswer>)(...args);
  }, call);
  if (!result.ok) throw new PageRefusal(result.code, result.field);
  return decodeRelay(result.message);
}

async function browserParty(page: Page, setup: SecAggSetup, id: string): Promise<Party> {
  await callPage(page, ['create', setup, id]);
  return {
    id,
    where: 'chromium',
    advertise: () => callPage(page, ['advertise', id]),
    shareKeys: (message) => callPage(page, ['shareKeys', id, encodeRelay(message)]),
    maskInput: (message, input) =>
      callPage(page, [
        'maskInput',
        id,
        encodeRelay(message),
        Array.from(input.weights),
        input.numExamples,
      ]),
    unmask: (message) => callPage(page, ['unmask', id, encodeRelay(message)]),
  };
}

function setupFor(curve: Curve, clientIds: string[]): SecAggSetup {
  return {
    protocol: SECAGG_PROTOCOL,
    roundId: `mixed-${curve}`,
    curve,
    clientIds,
    threshold: 4,
    parameterCount: 1000,
    clipRange: 2,
    maxExamplesPerClient: 500,
  };
}

function inputFor(index: number, parameterCount: number): SecAggInput {
  const weights = Float32Array.from(
    { length: parameterCount },
    (_, i) => Math.sin(i * 0.37 + index) * 1.5,
  );
  return { weights, numExamples: 50 + 67 * index };
}

/**
 * The relay: server messages out to each party, their replies in, step by step; `dropAfter`
 * names who stops answering after which step.
 */
async function relayRound(
  server: SecAggServer,
  parties: Party[],
  inputs: Map<string, SecAggInput>,
  dropAfter: Partial<Record<'advertise' | 'share' | 'mask', string[]>>,
) {
  for (const party of parties) await server.receiveAdvertise(party.id, await party.advertise());
  const advertised = server.closeAdvertising();
  let active = parties.filter((party) => !(dropAfter.advertise ?? []).includes(party.id));
  for (const party of active) {
    await server.receiveShareKeys(party.id, await party.shareKeys(advertised));
  }
  const bundles = server.closeSharing();
  active = active.filter((party) => !(dropAfter.share ?? []).includes(party.id));
  for (const party of active) {
    const bundle = bundles.get(party.id) as SharesBundle;
    await server.receiveMaskedInput(
      party.id,
      await party.maskInput(bundle, inputs.get(party.id) as SecAggInput),
    );
  }
  const request = server.closeMasking();
  active = active.filter((party) => !(dropAfter.mask ?? []).includes(party.id));
  for (const party of active)
    await server.receiveUnmaskResponse(party.id, await party.unmask(request));
  return { result: await server.finish(), bundles };
}

/** The round's result against FedAvg in float64 of the clipped inputs of `ids`. */
function expectFedAvg(
  result: SecAggResult,
  inputs: Map<string, SecAggInput>,
  ids: string[],
  clip: number,
) {
  const length = (inputs.get(ids[0] as string) as SecAggInput).weights.length;
  const sum = new Float64Array(length);
  let examples = 0;
  for (const id of ids) {
    const input = inputs.get(id) as SecAggInput;
    examples += input.numExamples;
    for (let i = 0; i < length; i++) {
      const value = Math.min(clip, Math.max(-clip, input.weights[i] as number));
      sum[i] = (sum[i] as number) + input.numExamples * value;
    }
  }
  expect(result.survivors).toEqual(ids);
  expect(result.totalExamples).toBe(examples);
  let worst = 0;
  for (let i = 0; i < length; i++) {
    worst = Math.max(
      worst,
      Math.abs((result.weights[i] as number) - (sum[i] as number) / examples),
    );
  }
  expect(worst).toBeLessThanOrEqual(result.maxAbsError);
}

describe('SecAgg with Node and Chromium clients in one round', () => {
  it('Chromium has X25519 and P-256 through WebCrypto', async () => {
    const { page } = await openPage();
    expect(
      await page.evaluate(() =>
        (globalThis as unknown as { tesseraSecAgg: SecAggPageApi }).tesseraSecAgg.curves(),
      ),
    ).toEqual(['X25519', 'P-256']);
    await page.close();
  }, 60_000);

  it.each(['X25519', 'P-256'] as const)(
    '%s: 3 Node + 3 Chromium clients, one of each dropping (after sharing, after masking): FedAvg of the survivors',
    async (curve) => {
      const ids = ['node-a', 'node-b', 'node-c', 'web-a', 'web-b', 'web-c'];
      const setup = setupFor(curve, ids);
      const first = await openPage();
      const second = await openPage();
      const parties: Party[] = [
        ...(await Promise.all(ids.slice(0, 3).map((id) => SecAggClient.create(setup, id)))).map(
          nodeParty,
        ),
        await browserParty(first.page, setup, 'web-a'),
        await browserParty(first.page, setup, 'web-b'),
        await browserParty(second.page, setup, 'web-c'),
      ];
      const inputs = new Map(ids.map((id, index) => [id, inputFor(index, setup.parameterCount)]));
      const server = new SecAggServer(setup);
      const { result } = await relayRound(server, parties, inputs, {
        share: ['node-b'],
        mask: ['web-c'],
      });
      expect(result.droppedAfterSharing).toEqual(['node-b']);
      expect(result.droppedAfterMasking).toEqual(['web-c']);
      expectFedAvg(
        result,
        inputs,
        ['node-a', 'node-c', 'web-a', 'web-b', 'web-c'],
        setup.clipRange,
      );
      expect(first.problems.concat(second.problems)).toEqual([]);
      await first.page.close();
      await second.page.close();
    },
    120_000,
  );

  it('a Chromium client refuses a tampered share with SECAGG_DECRYPTION_FAILED, then goes on', async () => {
    const ids = ['node-a', 'node-b', 'node-c', 'web-a'];
    const setup = { ...setupFor('X25519', ids), threshold: 3, roundId: 'tampered' };
    const { page } = await openPage();
    const web = await browserParty(page, setup, 'web-a');
    const parties: Party[] = [
      ...(await Promise.all(ids.slice(0, 3).map((id) => SecAggClient.create(setup, id)))).map(
        nodeParty,
      ),
      web,
    ];
    const inputs = new Map(ids.map((id, index) => [id, inputFor(index, setup.parameterCount)]));
    const server = new SecAggServer(setup);
    for (const party of parties) await server.receiveAdvertise(party.id, await party.advertise());
    const advertised = server.closeAdvertising();
    for (const party of parties)
      await server.receiveShareKeys(party.id, await party.shareKeys(advertised));
    const bundles = server.closeSharing();
    const bundle = bundles.get('web-a') as SharesBundle;
    const tampered = structuredClone(bundle);
    const ciphertext = (tampered.encryptedShares[1] as { ciphertext: Uint8Array }).ciphertext;
    ciphertext[40] = (ciphertext[40] as number) ^ 0x80;
    const input = inputs.get('web-a') as SecAggInput;
    const refusal = await web.maskInput(tampered, input).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(PageRefusal);
    expect(refusal).toMatchObject({
      code: ErrorCode.SECAGG_DECRYPTION_FAILED,
      field: 'encryptedShares[1].ciphertext',
    });
    for (const party of parties) {
      const own = bundles.get(party.id) as SharesBundle;
      await server.receiveMaskedInput(
        party.id,
        await party.maskInput(own, inputs.get(party.id) as SecAggInput),
      );
    }
    const request = server.closeMasking();
    for (const party of parties)
      await server.receiveUnmaskResponse(party.id, await party.unmask(request));
    expectFedAvg(await server.finish(), inputs, ids, setup.clipRange);
    await page.close();
  }, 120_000);
});
