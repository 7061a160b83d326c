// Choosing the browser backend by measurement: what one candidate's probe found, and the
// ranking that picks among them. Pure: the timing itself happens in probe workers (worker.ts).

export type BrowserBackendName = 'webgpu' | 'webgl' | 'wasm';

/**
 * The candidates 'auto' measures, in the order they are probed: WASM first, while no GPU work a
 * stopped probe left behind competes with it for the CPU.
 */
export const PROBE_CANDIDATES: readonly BrowserBackendName[] = ['wasm', 'webgpu', 'webgl'];

export const BACKEND_LABELS: Record<BrowserBackendName, string> = {
  webgpu: 'WebGPU',
  webgl: 'WebGL',
  wasm: 'WASM',
};

export type ProbeResult =
  | {
      backend: BrowserBackendName;
      status: 'measured';
      /** Training samples per second over the timed steps (after a warm-up step). */
      samplesPerSecond: number;
      /** The adapter or renderer, e.g. 'SwiftShader'; null when the browser does not say. */
      adapter: string | null;
      /** A CPU implementation of the GPU API (SwiftShader, llvmpipe, a fallback adapter). */
      software: boolean;
    }
  /** It did not start, or failed while training: `reason` says why. */
  | ({ backend: BrowserBackendName; status: 'failed'; reason: string } & Partial<AdapterFacts>)
  /** It did not finish its steps within the cap and was stopped. */
  | ({ backend: BrowserBackendName; status: 'timed-out'; capMs: number } & Partial<AdapterFacts>);

/** What a probe learns about the device before it times anything. */
export interface AdapterFacts {
  adapter: string | null;
  software: boolean;
}

/** Renderer or adapter names that mean the GPU API runs on the CPU. */
const SOFTWARE_RENDERERS = /swiftshader|llvmpipe|softpipe|software|microsoft basic render/i;

export function isSoftwareRenderer(name: string | null | undefined): boolean {
  return name !== null && name !== undefined && SOFTWARE_RENDERERS.test(name);
}

/**
 * Best first: measured hardware backends by speed, then measured software ones by speed (a CPU
 * emulating a GPU is ranked below anything real, however its short probe went), then those that
 * timed out or failed, which are never picked.
 */
export function rankProbes(results: readonly ProbeResult[]): ProbeResult[] {
  const tier = (r: ProbeResult) => (r.status !== 'measured' ? 2 : r.software ? 1 : 0);
  const speed = (r: ProbeResult) => (r.status === 'measured' ? r.samplesPerSecond : 0);
  return [...results].sort((a, b) => tier(a) - tier(b) || speed(b) - speed(a));
}

/** The backend to train on, or null when no candidate completed its probe. */
export function pickBackend(results: readonly ProbeResult[]): BrowserBackendName | null {
  const best = rankProbes(results)[0];
  return best?.status === 'measured' ? best.backend : null;
}

/** "WebGL (SwiftShader, software): 12 samples/s" */
export function describeProbe(result: ProbeResult): string {
  const about = [result.adapter, result.software ? 'software' : null].filter(Boolean);
  const label = `${BACKEND_LABELS[result.backend]}${about.length > 0 ? ` (${about.join(', ')})` : ''}`;
  switch (result.status) {
    case 'measured': {
      const rate = result.samplesPerSecond;
      const shown = rate >= 100 ? Math.round(rate).toLocaleString('en') : rate.toPrecision(2);
      return `${label}: ${shown} samples/s`;
    }
    case 'timed-out':
      return `${label}: stopped after ${(result.capMs / 1000).toFixed(0)} s without finishing its probe`;
    case 'failed':
      return `${label}: ${result.reason}`;
  }
}

/** Why the pick was made: every candidate, best first, e.g. "WASM: 420 samples/s; WebGL (...)". */
export function explainPick(results: readonly ProbeResult[]): string {
  return rankProbes(results).map(describeProbe).join('; ');
}
