/**
 * Fixed point modulo 2^32 for the weighted sum that FedAvg needs.
 *
 * A client with n_k examples and parameters x (each clipped to [−R, R]) sends, per parameter,
 * q = round(n_k·x / Δ) as a two's-complement uint32 word, and n_k itself as one extra word.
 * With Δ = E·R / L and L = ⌊(2^31 − 1) / n⌋ (E: the most examples a client may declare, n: the
 * clients in the round), |q| ≤ L, so the sum of any ≤ n clients' words stays within
 * ±(2^31 − 1) and reads back exactly as a signed 32-bit integer: masking adds and removes
 * uniform words modulo 2^32, and the unmasked sum is the true integer sum.
 *
 * The server divides: w = Δ·Σq / Σn_k. Each client's rounding is at most Δ/2 in n_k·x, so
 * |w − Σ n_k·x / Σ n_k| ≤ m·Δ / (2·Σn_k) for m survivors, plus R·2^−23 for the float32 result
 * (half an ulp at |w| ≤ R, doubled to cover the float64 steps before it). Values outside
 * [−R, R] are clipped first: not an error of the encoding, but of the range chosen.
 * The example counts are not hidden from the sum: Σn_k is revealed, each n_k is not.
 */
import { ErrorCode } from '@tessera/protocol';
import { refuse } from './errors.js';
import type { Quantisation, SecAggSetup } from './setup.js';

export interface SecAggInput {
  weights: Float32Array;
  numExamples: number;
}

/** A client's input as words: parameterCount quantised values, then its example count. */
export function quantiseInput(
  setup: SecAggSetup,
  quantisation: Quantisation,
  input: SecAggInput,
): Uint32Array {
  const { weights, numExamples } = input;
  if (!(weights instanceof Float32Array) || weights.length !== setup.parameterCount) {
    refuse(ErrorCode.WEIGHTS_LENGTH_MISMATCH, 'the update has the wrong number of parameters', {
      field: 'weights',
      expectedParameters: setup.parameterCount,
      receivedParameters: weights instanceof Float32Array ? weights.length : undefined,
    });
  }
  if (
    !Number.isSafeInteger(numExamples) ||
    numExamples < 1 ||
    numExamples > setup.maxExamplesPerClient
  ) {
    refuse(
      ErrorCode.INVALID_ARGUMENT,
      `numExamples must be an integer from 1 to ${setup.maxExamplesPerClient}`,
      {
        field: 'numExamples',
      },
    );
  }
  const words = new Uint32Array(quantisation.vectorWords);
  const { step, levelBound } = quantisation;
  const range = setup.clipRange;
  for (let i = 0; i < weights.length; i++) {
    const value = weights[i] as number;
    if (!Number.isFinite(value)) {
      refuse(ErrorCode.NON_FINITE_WEIGHTS, 'the update contains NaN or ±Infinity', {
        field: 'weights',
        index: i,
      });
    }
    const clipped = Math.min(range, Math.max(-range, value));
    let level = Math.round((numExamples * clipped) / step);
    // Floating-point rounding could step one past L at the clip edge; the bound is what matters.
    if (level > levelBound) level = levelBound;
    else if (level < -levelBound) level = -levelBound;
    words[i] = level; // ToUint32: two's complement modulo 2^32
  }
  words[setup.parameterCount] = numExamples;
  return words;
}

export interface DequantisedSum {
  /** Σ n_k·x_k / Σ n_k over the survivors: their FedAvg. */
  weights: Float32Array;
  totalExamples: number;
  /** The bound on |weights[i] − the exact FedAvg of the clipped inputs|, float32 rounding included. */
  maxAbsError: number;
}

/** The unmasked sum of `survivors` clients' words back to their weighted average. */
export function dequantiseSum(
  setup: SecAggSetup,
  quantisation: Quantisation,
  sum: Uint32Array,
  survivors: number,
): DequantisedSum {
  const totalExamples = sum[setup.parameterCount] as number;
  if (totalExamples < survivors || totalExamples > survivors * setup.maxExamplesPerClient) {
    // Honest clients declare 1..E each; anything else means a corrupted sum. Refuse, never guess.
    refuse(ErrorCode.INTERNAL, 'the unmasked example count is out of range: the sum is corrupted', {
      field: 'totalExamples',
      totalExamples,
    });
  }
  const weights = new Float32Array(setup.parameterCount);
  const scale = quantisation.step / totalExamples;
  for (let i = 0; i < weights.length; i++) weights[i] = ((sum[i] as number) | 0) * scale;
  return {
    weights,
    totalExamples,
    maxAbsError: (survivors * quantisation.step) / (2 * totalExamples) + setup.clipRange * 2 ** -23,
  };
}
