// The poisoning bench's attacks (bench/poisoning-attacks.ts): each sends what it claims.
import { createRng } from '@tessera/data';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import {
  distance,
  flippedLabels,
  gaussianAround,
  meanModel,
  scaledChange,
  signFlipped,
} from '../bench/poisoning-attacks.js';

const global = Float32Array.from([1, -2, 0.5, 0]);
const honest = Float32Array.from([1.5, -2.25, 0.5, 0.125]); // change: 0.5, -0.25, 0, 0.125

function expectRefused(action: () => unknown, field: string): void {
  let caught: unknown;
  try {
    action();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(TesseraError);
  expect((caught as TesseraError).code).toBe(ErrorCode.INVALID_ARGUMENT);
  expect((caught as TesseraError).data?.['field']).toBe(field);
}

describe('signFlipped', () => {
  it('sends w_g - 10 (w - w_g)', () => {
    expect([...signFlipped(global, honest, 10)]).toEqual([-4, 0.5, 0.5, -1.25]);
  });

  it('leaves its inputs as they were', () => {
    const before = [...global, ...honest];
    signFlipped(global, honest, 10);
    expect([...global, ...honest]).toEqual(before);
  });

  it('refuses a model of another length and a non-finite factor', () => {
    expectRefused(() => signFlipped(global, honest.subarray(0, 3), 10), 'model');
    expectRefused(() => signFlipped(global, honest, Number.NaN), 'factor');
    expectRefused(() => signFlipped(global, honest, Number.POSITIVE_INFINITY), 'factor');
  });
});

describe('scaledChange', () => {
  it('sends w_g + 10 (w - w_g): the change ten times as long, the same direction', () => {
    const sent = scaledChange(global, honest, 10);
    expect([...sent]).toEqual([6, -4.5, 0.5, 1.25]);
    expect(distance(sent, global)).toBeCloseTo(10 * distance(honest, global), 5);
  });

  it('at factor 1 is the honest model, at factor -1 the mirror image of sign-flip x1', () => {
    expect([...scaledChange(global, honest, 1)]).toEqual([...honest]);
    expect([...scaledChange(global, honest, -1)]).toEqual([...signFlipped(global, honest, 1)]);
  });

  it('refuses a model of another length and a non-finite factor', () => {
    expectRefused(() => scaledChange(global, new Float32Array(5), 10), 'model');
    expectRefused(() => scaledChange(global, honest, Number.NaN), 'factor');
  });
});

describe('gaussianAround', () => {
  it('adds N(0, sigma^2) per coordinate: mean 0 and std sigma over many coordinates', () => {
    const size = 200_000;
    const centre = new Float32Array(size).fill(3);
    const sent = gaussianAround(centre, 0.5, createRng(7));
    let sum = 0;
    let squares = 0;
    for (const value of sent) {
      sum += value - 3;
      squares += (value - 3) ** 2;
    }
    const mean = sum / size;
    const std = Math.sqrt(squares / size - mean * mean);
    // Standard error of the mean 0.5 / sqrt(2e5) ~ 0.0011; of the std ~ 0.0008.
    expect(Math.abs(mean)).toBeLessThan(0.005);
    expect(std).toBeGreaterThan(0.495);
    expect(std).toBeLessThan(0.505);
  });

  it('is the seeded stream scaled by sigma, so the same seed sends the same update', () => {
    const draws = createRng(11);
    const expected = [...global].map((g) => Math.fround(g + 2 * draws.normal()));
    expect([...gaussianAround(global, 2, createRng(11))]).toEqual(expected);
    expect([...gaussianAround(global, 0, createRng(11))]).toEqual([...global]);
  });

  it('refuses a negative or non-finite sigma', () => {
    expectRefused(() => gaussianAround(global, -1, createRng(1)), 'sigma');
    expectRefused(() => gaussianAround(global, Number.NaN, createRng(1)), 'sigma');
  });
});

describe('flippedLabels', () => {
  it('maps y to 9 - y for MNIST, in a new array', () => {
    const labels = Uint8Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9]);
    const flipped = flippedLabels(labels, 10);
    expect([...flipped]).toEqual([9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0]);
    expect(labels[0]).toBe(0);
  });

  it('refuses a label outside the classes and a bad class count, naming the field', () => {
    expectRefused(() => flippedLabels(Uint8Array.from([0, 10]), 10), 'labels.1');
    expectRefused(() => flippedLabels(Uint8Array.from([0]), 1), 'classes');
    expectRefused(() => flippedLabels(Uint8Array.from([0]), 2.5), 'classes');
  });
});

describe('meanModel', () => {
  it('is the unweighted coordinate mean', () => {
    expect([...meanModel([global, honest])]).toEqual([1.25, -2.125, 0.5, 0.0625]);
  });

  it('refuses no models and models of different lengths', () => {
    expectRefused(() => meanModel([]), 'models');
    expectRefused(() => meanModel([global, new Float32Array(3)]), 'models.1');
  });
});
