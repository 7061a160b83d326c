import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadMnist, toExamples } from '@tessera/data';
import { modelSpec } from '@tessera/ml';
import { build } from 'esbuild';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrowserTrainingReport } from './browser-ml.entry.js';
import { CHROMIUM, launchChromium } from './chromium.js';

/**
 * packages/ml in a real browser: a page bundling @tessera/ml trains fedavg-cnn on real
 * MNIST examples in Debian's headless Chromium on each tfjs backend, WebGPU and WebGL
 * on SwiftShader (Chromium's CPU implementation of the GPU APIs) and WebAssembly with
 * @tessera/ml's training kernels, its .wasm files served by this test's own server.
 */

const root = fileURLToPath(new URL('..', import.meta.url));
const wasmDist = path.join(root, 'node_modules/@tensorflow/tfjs-backend-wasm/dist');

let server: Server | undefined;
let baseUrl = '';
const browsers: Browser[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium`);
  // Browser code, from the TypeScript sources; the Node-only paths of @tessera/ml (worker
  // threads, file paths) are dynamic imports of node: modules, never taken in a page.
  const bundle = await build({
    entryPoints: [path.join(root, 'test/browser-ml.entry.ts')],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    conditions: ['@tessera/source', 'module'],
    external: ['node:*'],
    logLevel: 'silent',
  });
  const script = bundle.outputFiles[0]?.text ?? '';
  const page =
    '<!doctype html><meta charset="utf-8"><script type="module" src="/entry.js"></script>';
  server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    if (url.pathname === '/') {
      response.writeHead(200, { 'content-type': 'text/html' }).end(page);
    } else if (url.pathname === '/entry.js') {
      response.writeHead(200, { 'content-type': 'text/javascript' }).end(script);
    } else if (/^\/wasm\/[\w.-]+\.wasm$/.test(url.pathname)) {
      const file = path.join(wasmDist, path.basename(url.pathname));
      if (!existsSync(file)) {
        response.writeHead(404).end();
        return;
      }
      response.writeHead(200, { 'content-type': 'application/wasm' }).end(readFileSync(file));
    } else {
      response.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const browser of browsers) await browser.close();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
});

const examples = toExamples(
  loadMnist('train'),
  Array.from({ length: 20 }, (_, i) => i),
);

describe('fedavg-cnn trains in headless Chromium', () => {
  it.each(['webgpu', 'webgl', 'wasm'] as const)(
    'on %s: the loss goes down and the weights stay finite',
    async (backend) => {
      const browser = await launchChromium(backend);
      browsers.push(browser);
      const page = await browser.newPage();
      const problems: string[] = [];
      page.on('pageerror', (error) => problems.push(error.message));
      page.on('console', (message) => {
        if (message.type() === 'error') problems.push(message.text());
      });
      await page.goto(`${baseUrl}/`);
      await page.waitForFunction(() => 'tesseraTrain' in globalThis, undefined, {
        timeout: 30_000,
      });
      const report = await page.evaluate(
        ([name, pixels, labels]) =>
          (
            globalThis as unknown as {
              tesseraTrain: (
                backend: string,
                pixels: number[],
                labels: number[],
              ) => Promise<BrowserTrainingReport>;
            }
          ).tesseraTrain(name, pixels, labels),
        [backend, Array.from(examples.x), Array.from(examples.y)] as const,
      );
      expect(report.backend, problems.join('\n')).toBe(backend);
      expect(report.paramCount).toBe(modelSpec('fedavg-cnn').paramCount);
      expect(report.weightsFinite).toBe(true);
      expect(report.weightsChanged).toBe(true);
      expect(report.lossBefore).toBeGreaterThan(2);
      expect(report.lossAfter).toBeLessThan(report.lossBefore * 0.95);
      await browser.close();
    },
    240_000,
  );
});
