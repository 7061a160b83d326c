/** Shared by this package's tests: setups, deterministic inputs, and the plain FedAvg to compare with. */
import { TesseraError } from '@tessera/protocol';
import { expect } from 'vitest';
import type { SecAggInput } from './quantise.js';
import { SECAGG_PROTOCOL, type SecAggSetup } from './setup.js';

export function clientIdsOf(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `client-${String(i).padStart(3, '0')}`);
}

export function makeSetup(n: number, overrides: Partial<SecAggSetup> = {}): SecAggSetup {
  return {
    protocol: SECAGG_PROTOCOL,
    roundId: 'run-1/round-1',
    curve: 'X25519',
    clientIds: clientIdsOf(n),
    threshold: Math.floor(n / 2) + 1,
    parameterCount: 64,
    clipRange: 4,
    maxExamplesPerClient: 1000,
    ...overrides,
  };
}

/** mulberry32: a small seeded generator, so a failing case can be rerun as it was. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Inputs in [−R, R] (a few beyond, to exercise clipping) with example counts in [1, E]. */
export function makeInputs(setup: SecAggSetup, seed: number): Map<string, SecAggInput> {
  const random = seededRandom(seed);
  const inputs = new Map<string, SecAggInput>();
  for (const id of setup.clientIds) {
    const weights = new Float32Array(setup.parameterCount);
    for (let i = 0; i < weights.length; i++) {
      weights[i] = (random() * 2.2 - 1.1) * setup.clipRange;
    }
    const numExamples = 1 + Math.floor(random() * setup.maxExamplesPerClient);
    inputs.set(id, { weights, numExamples });
  }
  return inputs;
}

/** FedAvg in float64 of the clipped inputs of `survivors`: what SecAgg must equal. */
export function plainFedAvg(
  setup: SecAggSetup,
  inputs: ReadonlyMap<string, SecAggInput>,
  survivors: readonly string[],
): { weights: Float64Array; totalExamples: number } {
  const weights = new Float64Array(setup.parameterCount);
  let totalExamples = 0;
  for (const id of survivors) {
    const input = inputs.get(id) as SecAggInput;
    totalExamples += input.numExamples;
    for (let i = 0; i < weights.length; i++) {
      const clipped = Math.min(
        setup.clipRange,
        Math.max(-setup.clipRange, input.weights[i] as number),
      );
      weights[i] = (weights[i] as number) + input.numExamples * clipped;
    }
  }
  for (let i = 0; i < weights.length; i++) weights[i] = (weights[i] as number) / totalExamples;
  return { weights, totalExamples };
}

/** Largest |a[i] − b[i]|. */
export function maxDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++)
    worst = Math.max(worst, Math.abs((a[i] as number) - (b[i] as number)));
  return worst;
}

/** Awaits `action` and expects a TesseraError with `code` (and `field`, when given). */
export async function expectRefusal(
  action: () => unknown,
  code: string,
  field?: string,
): Promise<TesseraError> {
  let caught: unknown;
  try {
    await action();
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected a refusal with ${code}`).toBeInstanceOf(TesseraError);
  const error = caught as TesseraError;
  expect({ code: error.code, message: error.message }).toMatchObject({ code });
  if (field !== undefined) expect(error.data?.['field']).toBe(field);
  return error;
}
