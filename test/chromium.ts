import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium } from 'playwright-core';

/** Debian's Chromium (apt-get install -y chromium), driven by playwright-core. */
export const CHROMIUM = '/usr/bin/chromium';

/** The built web client, which the coordinator serves at /join/ (`npm run build` makes it). */
export const BUILT_WEB_CLIENT = fileURLToPath(
  new URL('../apps/web-client/dist/index.html', import.meta.url),
);

/** For the page tests: fails at once, saying what to install or build, when either is missing. */
export function requireChromiumAndWebClient(): void {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium`);
  }
  if (!existsSync(BUILT_WEB_CLIENT)) {
    throw new Error(`the web client is not built (${BUILT_WEB_CLIENT}): run npm run build first`);
  }
}

const BASE_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/**
 * Real WebGPU and WebGL on SwiftShader (Chromium's CPU implementation of the GPU APIs). Vulkan on
 * SwiftShader is needed too: without it, tfjs-webgpu's synchronous reads (dataSync, which go
 * through a WebGPU canvas drawn onto a 2D one) return zeros in headless Chromium.
 */
const GPU_FLAGS = [
  '--enable-unsafe-webgpu',
  '--use-webgpu-adapter=swiftshader',
  '--enable-unsafe-swiftshader',
  '--use-angle=swiftshader',
  '--enable-features=Vulkan',
  '--use-vulkan=swiftshader',
];

export type Backend = 'webgpu' | 'webgl' | 'wasm';

/**
 * Headless Chromium with the flags this machine needs (no network beyond localhost, no
 * sandbox as root), set up for one tfjs backend; pages that need no GPU (and the WASM runs)
 * keep it off altogether. The one launcher for every browser test.
 */
export function launchChromium(backend: Backend | 'no-gpu'): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      ...BASE_FLAGS,
      ...(backend === 'wasm' || backend === 'no-gpu' ? ['--disable-gpu'] : GPU_FLAGS),
    ],
  });
}
