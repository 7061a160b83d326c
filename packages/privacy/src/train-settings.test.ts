import { ErrorCode } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import {
  clipForSending,
  DEFAULT_RDP_ORDERS,
  epsilonFromRdp,
  l2Norm,
  localDpGuarantee,
  privacyTrainSettings,
  readPrivacySettings,
} from './index.js';
import { expectCode } from './testing/fixtures.js';

describe('privacy settings in the train instruction', () => {
  it('carries local DP and the central clip norm, and reads them back', () => {
    const settings = { localDp: { clipNorm: 0.5, noiseMultiplier: 2 }, centralClipNorm: 0.25 };
    const wire = privacyTrainSettings(settings);
    expect(wire).toEqual({ localClipNorm: 0.5, localNoiseMultiplier: 2, centralClipNorm: 0.25 });
    expect(readPrivacySettings({ ...wire, proximalMu: 0.1 })).toEqual(settings);
    expect(privacyTrainSettings({ localDp: null, centralClipNorm: null })).toEqual({});
    expect(readPrivacySettings({ proximalMu: 0.1 })).toEqual({
      localDp: null,
      centralClipNorm: null,
    });
  });

  it('refuses values a client could not honour, naming the setting', () => {
    expectCode(
      () => readPrivacySettings({ centralClipNorm: 0 }),
      ErrorCode.INVALID_ARGUMENT,
      'centralClipNorm',
    );
    expectCode(
      () => readPrivacySettings({ centralClipNorm: 'one' }),
      ErrorCode.INVALID_ARGUMENT,
      'centralClipNorm',
    );
    expectCode(
      () => privacyTrainSettings({ localDp: null, centralClipNorm: Number.POSITIVE_INFINITY }),
      ErrorCode.INVALID_ARGUMENT,
      'centralClipNorm',
    );
    expectCode(
      () =>
        privacyTrainSettings({
          localDp: { clipNorm: 1, noiseMultiplier: -1 },
          centralClipNorm: null,
        }),
      ErrorCode.INVALID_ARGUMENT,
      'localNoiseMultiplier',
    );
  });
});

describe("local DP's guarantee", () => {
  it('is the Gaussian mechanism at multiplier sigma / 2 without sampling: RDP alpha / (2 (sigma/2)^2), composed over rounds', () => {
    const sigma = 4;
    const delta = 1e-5;
    const byHand = (rounds: number) =>
      epsilonFromRdp(
        Float64Array.from(DEFAULT_RDP_ORDERS, (alpha) => (rounds * alpha) / (2 * (sigma / 2) ** 2)),
        DEFAULT_RDP_ORDERS,
        delta,
      ).epsilon;
    const one = localDpGuarantee({ clipNorm: 1, noiseMultiplier: sigma }, 1, delta);
    const ten = localDpGuarantee({ clipNorm: 1, noiseMultiplier: sigma }, 10, delta);
    expect(one.epsilonPerRound).toBeCloseTo(byHand(1), 10);
    expect(ten.epsilon).toBeCloseTo(byHand(10), 10);
    expect(ten.epsilonPerRound).toBe(one.epsilonPerRound);
    expect(ten.epsilon as number).toBeGreaterThan(one.epsilon as number);
    expect(ten).toMatchObject({ noiseMultiplierPerSensitivity: 2, delta, rounds: 10 });
  });

  it('is none without noise', () => {
    expect(localDpGuarantee({ clipNorm: 1, noiseMultiplier: 0 }, 3, 1e-5)).toMatchObject({
      epsilonPerRound: null,
      epsilon: null,
    });
  });
});

describe('clipping for sending', () => {
  it('leaves the float32 change the receiver computes within the bound', () => {
    // Large weights, so rounding g + c to float32 moves each coordinate by a visible ulp.
    const d = 1000;
    const global = Float32Array.from({ length: d }, (_, i) => 1000 + i * 0.37);
    const weights = Float32Array.from(global, (g, i) => g + Math.sin(i) * 0.5);
    const bound = 0.75;
    const { weights: sent, clipped, norm } = clipForSending(global, weights, bound);
    expect(clipped).toBe(true);
    expect(norm).toBeGreaterThan(bound);
    const received = Float32Array.from(sent, (w, i) => w - (global[i] as number));
    expect(l2Norm(received)).toBeLessThanOrEqual(bound);
    // Not shrunk to nothing: within a few ulps of the bound.
    expect(l2Norm(received)).toBeGreaterThan(bound * (1 - 1e-3));
    // A change inside the bound is sent as it is.
    const small = Float32Array.from(global, (g, i) => (i === 0 ? g + 0.125 : g));
    expect(clipForSending(global, small, bound).weights).toEqual(small);
  });

  it('refuses a wrong length or a non-finite weight', () => {
    const global = new Float32Array(3);
    expectCode(
      () => clipForSending(global, new Float32Array(2), 1),
      ErrorCode.WEIGHTS_LENGTH_MISMATCH,
      'weights',
    );
    expectCode(
      () => clipForSending(global, new Float32Array([0, Number.NaN, 0]), 1),
      ErrorCode.NON_FINITE_WEIGHTS,
      'weights',
    );
  });
});
