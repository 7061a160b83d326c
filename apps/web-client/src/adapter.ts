/// <reference lib="dom" />
// What device each GPU API would run on, read without tfjs (so the page can ask before probing).
import { type AdapterFacts, type BrowserBackendName, isSoftwareRenderer } from './probe.js';

/** The part of the WebGPU adapter read here (older Chromium: requestAdapterInfo()). */
interface AdapterLike {
  isFallbackAdapter?: boolean;
  info?: AdapterInfoLike;
  requestAdapterInfo?: () => Promise<AdapterInfoLike>;
}
interface AdapterInfoLike {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
  isFallbackAdapter?: boolean;
}

/** A short name for an adapter or renderer: 'SwiftShader' rather than ANGLE's long string. */
function shortAdapterName(text: string): string | null {
  const known = /swiftshader|llvmpipe|softpipe/i.exec(text);
  if (known) return known[0] === 'swiftshader' ? 'SwiftShader' : (known[0] as string);
  const trimmed = text.trim();
  if (trimmed === '') return null;
  return trimmed.length > 60 ? `${trimmed.slice(0, 59)}…` : trimmed;
}

/**
 * Which device a GPU backend runs on, and whether it is a CPU implementing the GPU API: WebGPU's
 * fallback adapter flag, WebGL's unmasked renderer (SwiftShader, llvmpipe). WASM is the CPU, by
 * design, and is not "software" in this sense.
 */
export async function describeAdapter(name: BrowserBackendName): Promise<AdapterFacts> {
  if (name === 'webgpu') {
    const gpu = (navigator as unknown as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
    const adapter = (await gpu?.requestAdapter()) as AdapterLike | null | undefined;
    if (!adapter) return { adapter: null, software: false };
    const info = adapter.info ?? (await adapter.requestAdapterInfo?.().catch(() => undefined));
    const text = [info?.vendor, info?.architecture, info?.device, info?.description]
      .filter((part): part is string => typeof part === 'string' && part !== '')
      .join(' ');
    const fallback = info?.isFallbackAdapter === true || adapter.isFallbackAdapter === true;
    return { adapter: shortAdapterName(text), software: fallback || isSoftwareRenderer(text) };
  }
  if (name === 'webgl') {
    const canvas = new OffscreenCanvas(1, 1);
    const gl = (canvas.getContext('webgl2') ?? canvas.getContext('webgl')) as
      | WebGLRenderingContext
      | WebGL2RenderingContext
      | null;
    if (!gl) return { adapter: null, software: false };
    const debug = gl.getExtension('WEBGL_debug_renderer_info');
    const renderer = String(
      gl.getParameter(debug ? debug.UNMASKED_RENDERER_WEBGL : gl.RENDERER) ?? '',
    );
    return { adapter: shortAdapterName(renderer), software: isSoftwareRenderer(renderer) };
  }
  return { adapter: null, software: false };
}
