/**
 * Clipping, and local differential privacy of one client's update: the client clips its
 * change w - g to L2 norm C and adds N(0, sigma^2 C^2) to every coordinate before it sends
 * anything, so what leaves the device is already the Gaussian mechanism's output (sensitivity
 * 2C under replace-one of that client's whole contribution, C under add/remove of the update).
 */
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { Accountant } from './accountant.js';
import type { NormalStream } from './noise.js';

export interface Clipped {
  /** ||change|| before clipping. */
  norm: number;
  /** Whether it was scaled down. */
  clipped: boolean;
}

/** The L2 norm, summed in order in float64. */
export function l2Norm(values: ArrayLike<number>): number {
  let squared = 0;
  for (let i = 0; i < values.length; i++) squared += (values[i] as number) ** 2;
  return Math.sqrt(squared);
}

/**
 * Scales `change` in place to L2 norm at most `bound` (by bound / ||change|| when above it).
 * The bound holds exactly for the float64 values left in `change`: rounding in the scaling can
 * leave the recomputed norm an ulp above the bound, so the scale is nudged down until it is
 * not (the sensitivity argument needs <= C, not "about C").
 */
export function clipInPlace(change: Float64Array, bound: number): Clipped {
  if (!(bound > 0) || !Number.isFinite(bound)) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `a clip norm must be positive and finite, got ${bound}`,
      {
        field: 'clipNorm',
      },
    );
  }
  const norm = l2Norm(change);
  if (norm <= bound) return { norm, clipped: false };
  const original = change.slice();
  let scale = bound / norm;
  for (;;) {
    for (let i = 0; i < change.length; i++) change[i] = (original[i] as number) * scale;
    if (l2Norm(change) <= bound) return { norm, clipped: true };
    scale *= 1 - 2 ** -50;
  }
}

/** w - g in float64. */
export function changeFrom(global: Float32Array, weights: Float32Array): Float64Array {
  const change = new Float64Array(global.length);
  for (let i = 0; i < change.length; i++)
    change[i] = (weights[i] as number) - (global[i] as number);
  return change;
}

/** What a run promises of every client's update under local DP. */
export interface LocalDpSettings {
  /** C: the L2 bound of the change before noise. */
  clipNorm: number;
  /** sigma: noise std over C per coordinate (0: clip only, no privacy from noise). */
  noiseMultiplier: number;
}

/**
 * The names under which the settings travel in the train instruction's
 * `strategy.settings` (docs/protocol.md §5.2), chosen so they cannot clash with a strategy's own.
 */
export const LOCAL_DP_SETTING_KEYS = {
  clipNorm: 'localClipNorm',
  noiseMultiplier: 'localNoiseMultiplier',
} as const;

function settingError(key: string, message: string): TesseraError {
  return new TesseraError(ErrorCode.INVALID_ARGUMENT, message, { field: key });
}

function checkLocalDp(settings: LocalDpSettings): void {
  const { clipNorm, noiseMultiplier } = settings;
  if (!(clipNorm > 0) || !Number.isFinite(clipNorm)) {
    throw settingError(
      LOCAL_DP_SETTING_KEYS.clipNorm,
      `localClipNorm must be positive and finite, got ${clipNorm}`,
    );
  }
  if (!(noiseMultiplier >= 0) || !Number.isFinite(noiseMultiplier)) {
    throw settingError(
      LOCAL_DP_SETTING_KEYS.noiseMultiplier,
      `localNoiseMultiplier must be a finite number >= 0, got ${noiseMultiplier}`,
    );
  }
}

/** The settings as the train instruction carries them (what `configureTrain` returns). */
export function localDpTrainSettings(settings: LocalDpSettings): Record<string, number> {
  checkLocalDp(settings);
  return {
    [LOCAL_DP_SETTING_KEYS.clipNorm]: settings.clipNorm,
    [LOCAL_DP_SETTING_KEYS.noiseMultiplier]: settings.noiseMultiplier,
  };
}

/**
 * The client's side: local DP settings from a train instruction's strategy settings, or null
 * when there are none. One without the other, or a value that is not a valid number, is
 * refused (a client must fail the round rather than send an update the run did not promise).
 */
export function readLocalDpSettings(
  settings: Readonly<Record<string, number | boolean | string>>,
): LocalDpSettings | null {
  const clipNorm = settings[LOCAL_DP_SETTING_KEYS.clipNorm];
  const noiseMultiplier = settings[LOCAL_DP_SETTING_KEYS.noiseMultiplier];
  if (clipNorm === undefined && noiseMultiplier === undefined) return null;
  if (typeof clipNorm !== 'number') {
    throw settingError(
      LOCAL_DP_SETTING_KEYS.clipNorm,
      'localClipNorm must be a number when local DP is asked for',
    );
  }
  if (typeof noiseMultiplier !== 'number') {
    throw settingError(
      LOCAL_DP_SETTING_KEYS.noiseMultiplier,
      'localNoiseMultiplier must be a number when local DP is asked for',
    );
  }
  const parsed = { clipNorm, noiseMultiplier };
  checkLocalDp(parsed);
  return parsed;
}

/** w - g, refusing mismatched lengths and non-finite values before anything is computed. */
function checkedChange(global: Float32Array, weights: Float32Array): Float64Array {
  if (weights.length !== global.length) {
    throw new TesseraError(
      ErrorCode.WEIGHTS_LENGTH_MISMATCH,
      `update has ${weights.length} parameters; the model has ${global.length}`,
      { field: 'weights' },
    );
  }
  const change = changeFrom(global, weights);
  const firstBad = change.findIndex((value) => !Number.isFinite(value));
  if (firstBad !== -1) {
    throw new TesseraError(ErrorCode.NON_FINITE_WEIGHTS, `weights[${firstBad}] is not finite`, {
      field: 'weights',
      index: firstBad,
    });
  }
  return change;
}

export interface PrivatisedUpdate {
  /** g + clip(w - g) + noise, rounded to float32: what the client sends. */
  weights: Float32Array;
  /** ||w - g|| before clipping (stays on the client: it is not private). */
  changeNorm: number;
  clipped: boolean;
}

/**
 * Local DP of one update: clips w - g to C and adds N(0, (sigma C)^2) per coordinate, with
 * draws from `noise` (a CryptoGaussianNoise stream in a real client). Refuses mismatched
 * lengths and non-finite values, leaving nothing changed.
 */
export function privatiseUpdate(
  global: Float32Array,
  weights: Float32Array,
  settings: LocalDpSettings,
  noise: NormalStream,
): PrivatisedUpdate {
  checkLocalDp(settings);
  const change = checkedChange(global, weights);
  const { norm, clipped } = clipInPlace(change, settings.clipNorm);
  const std = settings.noiseMultiplier * settings.clipNorm;
  const draws = new Float64Array(change.length);
  if (std > 0) noise.fill(draws);
  const out = new Float32Array(change.length);
  for (let i = 0; i < out.length; i++) {
    out[i] = (global[i] as number) + (change[i] as number) + std * (draws[i] as number);
  }
  return { weights: out, changeNorm: norm, clipped };
}

export interface NormRange {
  min: number;
  max: number;
}

/**
 * What the coordinator can check of a locally privatised update: only its norm. With
 * Delta' = c + z, ||c|| <= C, z ~ N(0, s^2 I_d), s = sigma C, the norm of z concentrates
 * (Gaussian concentration of a 1-Lipschitz function: P(| ||z|| - E||z|| | >= s t) <= 2 e^(-t^2/2)),
 * and d / sqrt(d + 1) <= E||z|| / s <= sqrt(d). So, except with probability
 * `falseRejection`, ||Delta'|| lies in
 *
 *   [s (d / sqrt(d + 1) - t) - C,  s (sqrt(d) + t) + C],   t = sqrt(2 ln(2 / falseRejection)),
 *
 * widened by `roundingSlack` for the float32 rounding of the weights sent. A norm below the
 * range means the promised noise was not added (the main lie worth catching); above it, the
 * change was not clipped or was scaled up. It cannot show that the noise was random or fresh:
 * a client can send any vector of the right norm. Without noise (sigma = 0) it is exact: [0, C].
 */
export function localDpNormRange(
  settings: LocalDpSettings,
  dimension: number,
  falseRejection = 1e-9,
  roundingSlack = 0,
): NormRange {
  checkLocalDp(settings);
  if (!Number.isSafeInteger(dimension) || dimension < 1) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `dimension must be a positive integer, got ${dimension}`,
      {
        field: 'dimension',
      },
    );
  }
  if (!(falseRejection > 0 && falseRejection < 1)) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `falseRejection must be in (0, 1), got ${falseRejection}`,
      {
        field: 'falseRejection',
      },
    );
  }
  const { clipNorm: c, noiseMultiplier } = settings;
  const s = noiseMultiplier * c;
  const t = Math.sqrt(2 * Math.log(2 / falseRejection));
  const low = s * (dimension / Math.sqrt(dimension + 1) - t) - c;
  const high = s * (Math.sqrt(dimension) + t) + c;
  return { min: Math.max(0, low - roundingSlack), max: high + roundingSlack };
}

/**
 * The coordinator's check of an update sent under local DP (see `localDpNormRange`): the norm
 * of w - g must lie in the range, else INVALID_ARGUMENT (field `weights`, with the norm and the
 * range), and the caller must not fold the update in. Returns the norm.
 */
export function checkLocalDpUpdate(
  global: Float32Array,
  weights: Float32Array,
  settings: LocalDpSettings,
  falseRejection = 1e-9,
): number {
  if (weights.length !== global.length) {
    throw new TesseraError(
      ErrorCode.WEIGHTS_LENGTH_MISMATCH,
      `update has ${weights.length} parameters; the model has ${global.length}`,
      { field: 'weights' },
    );
  }
  const norm = l2Norm(changeFrom(global, weights));
  // Each sent coordinate is rounded to float32 once: off by at most 2^-24 |w_i|.
  const slack = 2 ** -24 * l2Norm(weights);
  const range = localDpNormRange(settings, global.length, falseRejection, slack);
  if (!(norm >= range.min && norm <= range.max)) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `the update's change has norm ${norm}; local DP with C=${settings.clipNorm}, sigma=${settings.noiseMultiplier} over ${global.length} parameters gives [${range.min}, ${range.max}]`,
      { field: 'weights', norm, min: range.min, max: range.max },
    );
  }
  return norm;
}

/**
 * What local DP with these settings guarantees, stated for the run record. Each client's
 * update of one round is the Gaussian mechanism on its clipped change: two possible changes of
 * the same client differ by at most 2C (replace-one of that client's whole contribution, all
 * its examples at once), and the noise std is sigma C, so one round is the Gaussian mechanism
 * with noise multiplier sigma / 2 (std over sensitivity), without sampling (q = 1). Its RDP is
 * alpha / (2 (sigma / 2)^2) per round; over `rounds` rounds it adds up (the accountant with
 * q = 1), which bounds a client that took part in every one of them. The guarantee holds
 * against everyone who sees the update (the coordinator included), per client, not per example;
 * sigma = 0 (clip only) gives none (epsilon null).
 */
export interface LocalDpGuarantee {
  /** sigma / 2: the std over the replace-one sensitivity 2C. */
  noiseMultiplierPerSensitivity: number;
  /** epsilon of one round's update at `delta` (null without noise). */
  epsilonPerRound: number | null;
  /** epsilon after `rounds` rounds composed, at `delta` (null without noise). */
  epsilon: number | null;
  delta: number;
  rounds: number;
}

export function localDpGuarantee(
  settings: LocalDpSettings,
  rounds: number,
  delta: number,
): LocalDpGuarantee {
  checkLocalDp(settings);
  const multiplier = settings.noiseMultiplier / 2;
  if (multiplier === 0) {
    return {
      noiseMultiplierPerSensitivity: 0,
      epsilonPerRound: null,
      epsilon: null,
      delta,
      rounds,
    };
  }
  const step = { samplingRate: 1, noiseMultiplier: multiplier };
  const empty = Accountant.empty();
  return {
    noiseMultiplierPerSensitivity: multiplier,
    epsilonPerRound: empty.withSteps(step).epsilon(delta).epsilon,
    epsilon: empty.withSteps(step, rounds).epsilon(delta).epsilon,
    delta,
    rounds,
  };
}

/**
 * g + clip(w - g, bound) as the float32 weights a client sends, such that the change the other
 * side computes from them in float32 (sent - g, rounded to float32, as the SecAgg client does)
 * still has L2 norm <= bound: rounding g + c to float32 can lengthen c by up to an ulp of each
 * weight, so the bound is tightened by 2^-20 until the float32 change fits.
 */
export function clipForSending(
  global: Float32Array,
  weights: Float32Array,
  bound: number,
): { weights: Float32Array; norm: number; clipped: boolean } {
  const original = checkedChange(global, weights);
  const sent = new Float32Array(global.length);
  const received = new Float32Array(global.length);
  let target = bound;
  for (;;) {
    const change = original.slice();
    const { norm, clipped } = clipInPlace(change, target);
    for (let i = 0; i < sent.length; i++) sent[i] = (global[i] as number) + (change[i] as number);
    for (let i = 0; i < sent.length; i++) {
      received[i] = (sent[i] as number) - (global[i] as number);
    }
    if (l2Norm(received) <= bound) return { weights: sent, norm, clipped };
    target *= 1 - 2 ** -20;
  }
}
