/**
 * Axis ranges and ticks for the console's charts. Pure, so unit tests run in Node.
 */

/** The step among 1, 2, 2.5, 5 × 10^k nearest above `raw`: ticks people can read. */
function niceStep(raw: number): number {
  const power = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / power;
  const nice =
    fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 2.5 ? 2.5 : fraction <= 5 ? 5 : 10;
  return nice * power;
}

export interface Axis {
  min: number;
  max: number;
  ticks: number[];
}

/**
 * An axis over [low, high] with about `count` ticks on round values, extended to the ticks on
 * either side.
 */
export function niceAxis(low: number, high: number, count = 5): Axis {
  let span = high - low;
  if (!(span > 0)) span = Math.abs(low) > 0 ? Math.abs(low) * 0.1 : 1;
  const step = niceStep(span / count);
  // Ticks are integers times the step, rounded, so no floating drift ("0.30000000000000004").
  const at = (k: number) => Number((k * step).toPrecision(12));
  const first = Math.floor(low / step + 1e-9);
  const last = Math.max(Math.ceil(high / step - 1e-9), first + 1);
  const ticks: number[] = [];
  for (let k = first; k <= last; k++) ticks.push(at(k));
  return { min: at(first), max: at(last), ticks };
}

/**
 * Ticks for round numbers first..last: every round while at most `maxTicks` fit, else the
 * first round and the multiples of 2, 5, 10, 20, 50... after it. Whole numbers only, so no two
 * ticks collapse into one label (8 rounds keep their round 4).
 */
export function roundTicks(first: number, last: number, maxTicks = 10): number[] {
  let step = 1;
  for (let k = 0; (last - first) / step + 1 > maxTicks; k++) {
    step = [2, 5, 10][k % 3] ?? 10;
    step *= 10 ** Math.floor(k / 3);
  }
  const ticks = [first];
  for (let t = (Math.floor(first / step) + 1) * step; t <= last; t += step) {
    // Skip a multiple too close to the first round to be read apart from it.
    if (t - first >= step / 2) ticks.push(t);
  }
  return ticks;
}

/**
 * The axis of values that are shares in [0, 1] (accuracies): fitted to the data with a margin,
 * so 95–98% spreads over the chart rather than lying flat along the top of 0–1, and never past
 * 0 or 1.
 */
export function shareAxis(values: number[], count = 5): Axis {
  if (values.length === 0) return niceAxis(0, 1, count);
  const low = Math.min(...values);
  const high = Math.max(...values);
  const margin = Math.max((high - low) * 0.1, 0.005);
  const axis = niceAxis(Math.max(0, low - margin), Math.min(1, high + margin), count);
  const min = Math.max(0, axis.min);
  const max = Math.min(1, axis.max);
  return { min, max, ticks: axis.ticks.filter((t) => t >= min - 1e-9 && t <= max + 1e-9) };
}

/** Decimals a tick label needs for ticks `step` apart to read apart (0.25 -> 2, 5 -> 0). */
export function decimalsFor(step: number): number {
  return String(Number(step.toPrecision(6))).split('.')[1]?.length ?? 0;
}
