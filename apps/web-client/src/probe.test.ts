import { describe, expect, it } from 'vitest';
import {
  describeProbe,
  explainPick,
  isSoftwareRenderer,
  type ProbeResult,
  pickBackend,
  rankProbes,
} from './probe.js';

const softwareWebgl: ProbeResult = {
  backend: 'webgl',
  status: 'measured',
  samplesPerSecond: 900,
  adapter: 'SwiftShader',
  software: true,
};
const wasm: ProbeResult = {
  backend: 'wasm',
  status: 'measured',
  samplesPerSecond: 420,
  adapter: null,
  software: false,
};

describe('choosing the browser backend by measurement', () => {
  it('ranks a software GPU below a real backend even when its short probe was faster', () => {
    expect(pickBackend([softwareWebgl, wasm])).toBe('wasm');
    expect(rankProbes([softwareWebgl, wasm]).map((r) => r.backend)).toEqual(['wasm', 'webgl']);
  });

  it('picks the fastest hardware backend, and a software one only when nothing else ran', () => {
    const gpu: ProbeResult = {
      ...wasm,
      backend: 'webgpu',
      samplesPerSecond: 5000,
      adapter: 'NVIDIA',
    };
    expect(pickBackend([wasm, gpu, softwareWebgl])).toBe('webgpu');
    const failedWasm: ProbeResult = { backend: 'wasm', status: 'failed', reason: 'no SIMD' };
    expect(pickBackend([softwareWebgl, failedWasm])).toBe('webgl');
  });

  it('never picks a candidate that failed or timed out; none measured: no pick', () => {
    const timedOut: ProbeResult = { backend: 'webgpu', status: 'timed-out', capMs: 8000 };
    const failed: ProbeResult = { backend: 'wasm', status: 'failed', reason: 'failed to start' };
    expect(pickBackend([timedOut, failed])).toBeNull();
    expect(pickBackend([])).toBeNull();
  });

  it('explains the pick best first, naming software adapters and stopped probes', () => {
    const stopped: ProbeResult = {
      backend: 'webgpu',
      status: 'timed-out',
      capMs: 8000,
      adapter: 'SwiftShader',
      software: true,
    };
    expect(explainPick([stopped, { ...softwareWebgl, samplesPerSecond: 12.34 }, wasm])).toBe(
      'WASM: 420 samples/s; WebGL (SwiftShader, software): 12 samples/s; ' +
        'WebGPU (SwiftShader, software): stopped after 8 s without finishing its probe',
    );
    expect(describeProbe({ ...wasm, samplesPerSecond: 12_345.6 })).toBe('WASM: 12,346 samples/s');
    expect(
      describeProbe({ backend: 'webgpu', status: 'failed', reason: 'this browser has no WebGPU' }),
    ).toBe('WebGPU: this browser has no WebGPU');
  });

  it('recognises the CPU implementations of the GPU APIs by their renderer names', () => {
    expect(
      isSoftwareRenderer(
        'ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device (Subzero) (0x0000C0DE)), SwiftShader driver)',
      ),
    ).toBe(true);
    expect(isSoftwareRenderer('llvmpipe (LLVM 15.0.6, 256 bits)')).toBe(true);
    expect(
      isSoftwareRenderer('ANGLE (NVIDIA, NVIDIA GeForce RTX 3060 Direct3D11 vs_5_0 ps_5_0)'),
    ).toBe(false);
    expect(isSoftwareRenderer(null)).toBe(false);
  });
});
