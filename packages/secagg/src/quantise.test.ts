import { ErrorCode } from '@tessera/protocol';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addInto } from './masking.js';
import { dequantiseSum, quantiseInput, type SecAggInput } from './quantise.js';
import { expectRefusal, makeSetup, maxDifference, plainFedAvg } from './round.fixtures.js';
import { checkSetup, SUM_BOUND } from './setup.js';

/** Quantise every input, add the words modulo 2^32 as the server's sum does, dequantise. */
function sumAndDecode(setup: ReturnType<typeof makeSetup>, inputs: Map<string, SecAggInput>) {
  const quantisation = checkSetup(setup);
  const sum = new Uint32Array(quantisation.vectorWords);
  for (const input of inputs.values()) addInto(sum, quantiseInput(setup, quantisation, input));
  return dequantiseSum(setup, quantisation, sum, inputs.size);
}

describe('fixed point modulo 2^32', () => {
  it('the decoded sum is the FedAvg of the clipped inputs within the stated bound (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 255 }),
        fc.double({ min: 1e-3, max: 1e3, noNaN: true }),
        fc.integer({ min: 1, max: 100_000 }),
        fc.integer({ min: 1, max: 12 }),
        fc.array(
          fc.tuple(
            fc.double({ min: -2, max: 2, noNaN: true }),
            fc.double({ min: 0, max: 1, noNaN: true }),
          ),
          {
            minLength: 2,
            maxLength: 12,
          },
        ),
        (n, clipRange, maxExamples, parameterCount, draws) => {
          fc.pre(n * maxExamples <= SUM_BOUND);
          const setup = makeSetup(n, {
            clipRange,
            maxExamplesPerClient: maxExamples,
            parameterCount,
          });
          const clients = Math.min(n, draws.length);
          const inputs = new Map<string, SecAggInput>();
          for (let k = 0; k < clients; k++) {
            const [scale, share] = draws[k] as [number, number];
            const weights = Float32Array.from({ length: parameterCount }, (_, i) =>
              Math.fround(scale * clipRange * Math.cos(i + k)),
            );
            inputs.set(setup.clientIds[k] as string, {
              weights,
              numExamples: 1 + Math.floor(share * (maxExamples - 1)),
            });
          }
          const decoded = sumAndDecode(setup, inputs);
          const plain = plainFedAvg(setup, inputs, [...inputs.keys()]);
          expect(decoded.totalExamples).toBe(plain.totalExamples);
          expect(maxDifference(decoded.weights, plain.weights)).toBeLessThanOrEqual(
            decoded.maxAbsError,
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  it('n clients at the edges of the range with the most examples each do not wrap', () => {
    for (const n of [2, 3, 50, 255]) {
      const maxExamplesPerClient = Math.floor(SUM_BOUND / n);
      const setup = makeSetup(n, { parameterCount: 3, clipRange: 1.5, maxExamplesPerClient });
      const inputs = new Map<string, SecAggInput>(
        setup.clientIds.map((id) => [
          id,
          { weights: Float32Array.of(1.5, -1.5, 100), numExamples: maxExamplesPerClient },
        ]),
      );
      const decoded = sumAndDecode(setup, inputs);
      expect(decoded.totalExamples).toBe(n * maxExamplesPerClient);
      expect(Math.abs((decoded.weights[0] as number) - 1.5)).toBeLessThanOrEqual(
        decoded.maxAbsError,
      );
      expect(Math.abs((decoded.weights[1] as number) + 1.5)).toBeLessThanOrEqual(
        decoded.maxAbsError,
      );
      // 100 is clipped to R.
      expect(Math.abs((decoded.weights[2] as number) - 1.5)).toBeLessThanOrEqual(
        decoded.maxAbsError,
      );
    }
  });

  it('a client word stays within ±L, two-complement encoded', () => {
    const setup = makeSetup(4, { parameterCount: 2, clipRange: 2, maxExamplesPerClient: 10 });
    const quantisation = checkSetup(setup);
    const words = quantiseInput(setup, quantisation, {
      weights: Float32Array.of(2, -2),
      numExamples: 10,
    });
    expect(words[0]).toBe(quantisation.levelBound);
    expect(words[1]).toBe(2 ** 32 - quantisation.levelBound);
    expect(words[2]).toBe(10);
    expect(quantisation.levelBound).toBe(Math.floor(SUM_BOUND / 4));
    expect(quantisation.step).toBeCloseTo((10 * 2) / quantisation.levelBound, 15);
  });

  it('refuses inputs it cannot encode, with their codes', async () => {
    const setup = makeSetup(3, { parameterCount: 2, maxExamplesPerClient: 10 });
    const quantisation = checkSetup(setup);
    const encode = (input: SecAggInput) => () => quantiseInput(setup, quantisation, input);
    await expectRefusal(
      encode({ weights: new Float32Array(3), numExamples: 1 }),
      ErrorCode.WEIGHTS_LENGTH_MISMATCH,
      'weights',
    );
    await expectRefusal(
      encode({ weights: Float32Array.of(0, Number.NaN), numExamples: 1 }),
      ErrorCode.NON_FINITE_WEIGHTS,
      'weights',
    );
    for (const numExamples of [0, 11, 1.5, -1]) {
      await expectRefusal(
        encode({ weights: new Float32Array(2), numExamples }),
        ErrorCode.INVALID_ARGUMENT,
        'numExamples',
      );
    }
  });
});

describe('checkSetup', () => {
  it('refuses a configuration whose sum could wrap: n × maxExamplesPerClient > 2^31 − 1', async () => {
    const n = 100;
    expect(() =>
      checkSetup(makeSetup(n, { maxExamplesPerClient: Math.floor(SUM_BOUND / n) })),
    ).not.toThrow();
    const error = await expectRefusal(
      () => checkSetup(makeSetup(n, { maxExamplesPerClient: Math.floor(SUM_BOUND / n) + 1 })),
      ErrorCode.INVALID_ARGUMENT,
      'maxExamplesPerClient',
    );
    expect(error.data?.['maximum']).toBe(Math.floor(SUM_BOUND / n));
  });

  it('refuses each bad field with its name', async () => {
    const cases: [Partial<ReturnType<typeof makeSetup>>, string][] = [
      [{ protocol: 'other' as never }, 'protocol'],
      [{ roundId: '' }, 'roundId'],
      [{ curve: 'P-384' as never }, 'curve'],
      [{ clientIds: ['solo'] }, 'clientIds'],
      [{ clientIds: ['a', 'b', 'a'] }, 'clientIds'],
      [{ clientIds: ['a', ''] }, 'clientIds[1]'],
      [{ clientIds: Array.from({ length: 256 }, (_, i) => `c${i}`) }, 'clientIds'],
      [{ threshold: 5 }, 'threshold'], // not a majority of 10
      [{ threshold: 11 }, 'threshold'],
      [{ threshold: 6.5 }, 'threshold'],
      [{ parameterCount: 0 }, 'parameterCount'],
      [{ clipRange: 0 }, 'clipRange'],
      [{ clipRange: Number.POSITIVE_INFINITY }, 'clipRange'],
      [{ maxExamplesPerClient: 0 }, 'maxExamplesPerClient'],
    ];
    for (const [override, field] of cases) {
      await expectRefusal(
        () => checkSetup(makeSetup(10, override)),
        ErrorCode.INVALID_ARGUMENT,
        field,
      );
    }
    expect(() => checkSetup(makeSetup(10, { threshold: 6 }))).not.toThrow();
  });
});
