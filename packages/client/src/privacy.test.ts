import { l2Norm, localDpNormRange } from '@tessera/privacy';
import { describe, expect, it } from 'vitest';
import { privatised } from './client.js';
import { readClientPrivacy, readStrategySettings } from './strategy-settings.js';

/**
 * The client core's send path under the run's privacy settings: what leaves the client is
 * local DP's clipped and noised update, or central DP's clipped change weighed 1.
 */

const d = 5000;
const global = Float32Array.from({ length: d }, (_, i) => Math.cos(i) * 0.1);
// A change of norm ~ 0.7 * sqrt(d / 2) = 25: far outside C = 1.
const trained = Float32Array.from(global, (g, i) => g + Math.sin(i) * 0.7);
const changeOf = (weights: Float32Array) =>
  Float64Array.from(weights, (w, i) => w - (global[i] as number));

describe('the client core under privacy settings', () => {
  it('sends the update as trained, weighed by its examples, without them', () => {
    const out = privatised(global, trained, 120, { localDp: null, centralClipNorm: null });
    expect(out).toEqual({ weights: trained, weight: 120 });
  });

  it('under local DP clips to C and adds fresh noise of std sigma C: the norm lands where the coordinator checks it', () => {
    const localDp = { clipNorm: 1, noiseMultiplier: 0.5 };
    const first = privatised(global, trained, 120, { localDp, centralClipNorm: null });
    const second = privatised(global, trained, 120, { localDp, centralClipNorm: null });
    expect(first.weight).toBe(120);
    const range = localDpNormRange(localDp, d);
    for (const out of [first, second]) {
      const norm = l2Norm(changeOf(out.weights));
      expect(norm).toBeGreaterThanOrEqual(range.min);
      expect(norm).toBeLessThanOrEqual(range.max);
    }
    // The noise's std: about sigma C = 0.5 per coordinate (the clipped change adds <= 1 in L2).
    const std = l2Norm(changeOf(first.weights)) / Math.sqrt(d);
    expect(std).toBeGreaterThan(0.45);
    expect(std).toBeLessThan(0.55);
    // Fresh draws from the CSPRNG each time, never the same vector twice.
    expect(first.weights).not.toEqual(second.weights);
  });

  it('under central DP with secure aggregation clips the change to C and weighs it 1', () => {
    const out = privatised(global, trained, 120, { localDp: null, centralClipNorm: 0.5 });
    expect(out.weight).toBe(1);
    const norm = l2Norm(Float32Array.from(out.weights, (w, i) => w - (global[i] as number)));
    expect(norm).toBeLessThanOrEqual(0.5);
    expect(norm).toBeGreaterThan(0.499);
  });

  it('reads privacy settings under any strategy, and refuses bad ones with the round', () => {
    const fedavg = { name: 'fedavg', settings: { localClipNorm: 1, localNoiseMultiplier: 2 } };
    expect(readStrategySettings(fedavg, [])).toEqual({});
    expect(readClientPrivacy(fedavg)).toEqual({
      localDp: { clipNorm: 1, noiseMultiplier: 2 },
      centralClipNorm: null,
    });
    const dp = { name: 'dp-fedavg', settings: { centralClipNorm: 0.5 } };
    expect(readStrategySettings(dp, [])).toEqual({});
    expect(readClientPrivacy(dp).centralClipNorm).toBe(0.5);
    // FedProx's own setting is still checked beside them.
    const fedprox = {
      name: 'fedprox',
      settings: { proximalMu: 0.1, localClipNorm: 1, localNoiseMultiplier: 1 },
    };
    expect(readStrategySettings(fedprox, ['proximalMu'])).toEqual({ proximalMu: 0.1 });
    // An unknown setting of a strategy without a client side is still refused.
    expect(() => readStrategySettings({ name: 'fedavg', settings: { other: 1 } }, [])).toThrow(
      /does not implement the client side of strategy "fedavg"/,
    );
    const bad: Record<string, number | string>[] = [
      { localClipNorm: 1 },
      { centralClipNorm: -1 },
      { localClipNorm: 1, localNoiseMultiplier: 'x' },
    ];
    for (const settings of bad) {
      let thrown: unknown;
      try {
        readClientPrivacy({ name: 'fedavg', settings });
      } catch (error) {
        thrown = error;
      }
      expect((thrown as { code?: string }).code).toBe('UNSUPPORTED_STRATEGY_SETTING');
    }
  });
});
