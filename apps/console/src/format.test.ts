import { describe, expect, it } from 'vitest';
import { formatCountdown, formatMetric, formatMs, formatNumber, formatPercent } from './format.js';
import { decimalsFor, roundTicks, shareAxis } from './scale.js';

describe("the console's numbers", () => {
  it('writes durations in one unit each, never "1 min 60 s"', () => {
    expect(formatMs(850)).toBe('850 ms');
    expect(formatMs(4_240)).toBe('4.2 s');
    expect(formatMs(59_600)).toBe('59.6 s');
    expect(formatMs(59_980)).toBe('1 min 0 s');
    expect(formatMs(119_700)).toBe('2 min 0 s');
    expect(formatMs(125_000)).toBe('2 min 5 s');
  });

  it('counts a deadline down in whole seconds, rounded up', () => {
    expect(formatCountdown(60_000)).toBe('1 min 0 s');
    expect(formatCountdown(59_500)).toBe('1 min 0 s');
    expect(formatCountdown(59_000)).toBe('59 s');
    expect(formatCountdown(300)).toBe('1 s');
    expect(formatCountdown(-20)).toBe('0 s');
    expect(formatCountdown(600_000)).toBe('10 min 0 s');
  });

  it('groups thousands, drops decimals past 100 and shows shares as percentages', () => {
    expect(formatNumber(7998.9416)).toBe('7,999');
    expect(formatNumber(1_234_567.8)).toBe('1,234,568');
    expect(formatNumber(12.345)).toBe('12.3');
    expect(formatNumber(0.341234)).toBe('0.3412');
    expect(formatNumber(null)).toBe('—');
    expect(formatPercent(0.9899)).toBe('98.99%');
    expect(formatMetric('accuracy', 0.9899)).toBe('98.99%');
    expect(formatMetric('samplesPerSecond', 7998.9416)).toBe('7,999');
  });
});

describe('chart axes', () => {
  it('fits an accuracy axis to the data: 95–98% is not a flat line at the top of 0–1', () => {
    const axis = shareAxis([0.951, 0.966, 0.978]);
    expect(axis.min).toBeGreaterThanOrEqual(0.9);
    expect(axis.min).toBeLessThan(0.951);
    expect(axis.max).toBeGreaterThan(0.978);
    expect(axis.max).toBeLessThanOrEqual(1);
    // Every tick is inside the axis, on a round value, and ticks are evenly spaced.
    expect(axis.ticks[0]).toBe(axis.min);
    expect(axis.ticks.at(-1)).toBe(axis.max);
    const steps = axis.ticks.slice(1).map((t, k) => t - (axis.ticks[k] ?? 0));
    for (const step of steps) expect(step).toBeCloseTo(steps[0] ?? 0, 9);
    expect(shareAxis([0.2, 0.99]).max).toBe(1);
    expect(shareAxis([]).ticks).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
  });

  it('keeps every round number tick: 8 rounds do not lose round 4', () => {
    expect(roundTicks(1, 8)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(roundTicks(1, 50)).toEqual([1, 10, 20, 30, 40, 50]);
    expect(roundTicks(1, 1)).toEqual([1]);
    const many = roundTicks(1, 4321);
    expect(many.length).toBeLessThanOrEqual(10);
    expect(many.every(Number.isInteger)).toBe(true);
  });

  it('labels ticks with the decimals their spacing needs', () => {
    expect(decimalsFor(0.25)).toBe(2);
    expect(decimalsFor(0.5)).toBe(1);
    expect(decimalsFor(5)).toBe(0);
    expect(decimalsFor(0.005)).toBe(3);
  });
});
