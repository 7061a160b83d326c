/**
 * Numbers and durations as the console shows them. Pure (no DOM), so unit tests run in Node;
 * grouping is fixed to "1,234.5" rather than the browser's locale, so pages and tests agree.
 */

const grouped = (value: number, fractionDigits: number) =>
  value.toLocaleString('en-US', {
    minimumFractionDigits: fractionDigits,
    maximumFractionDigits: fractionDigits,
  });

/** A duration: "850 ms", "4.2 s", "1 min 0 s" (seconds rounded first, so never "1 min 60 s"). */
export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 59_950) return `${(ms / 1000).toFixed(1)} s`;
  return minutesAndSeconds(Math.round(ms / 1000));
}

/**
 * Time left until a deadline, in whole seconds rounded up (a countdown reads 1 s until it is
 * over): "45 s", "1 min 0 s", "10 min 0 s".
 */
export function formatCountdown(ms: number): string {
  const seconds = Math.max(0, Math.ceil(ms / 1000));
  return seconds < 60 ? `${seconds} s` : minutesAndSeconds(seconds);
}

function minutesAndSeconds(totalSeconds: number): string {
  return `${Math.floor(totalSeconds / 60)} min ${totalSeconds % 60} s`;
}

/** A share in [0, 1] as a percentage with two decimals: 0.9899 -> "98.99%". */
export function formatPercent(value: number | null | undefined): string {
  return value === null || value === undefined ? '—' : `${(value * 100).toFixed(2)}%`;
}

/** A count or a rate: thousands grouped, no fraction past 100 ("7,999", "12.5", "0.3412"). */
export function formatNumber(value: number | null | undefined): string {
  if (value === null || value === undefined) return '—';
  if (!Number.isFinite(value)) return String(value);
  const size = Math.abs(value);
  if (size >= 100) return grouped(Math.round(value), 0);
  if (size >= 10) return grouped(value, 1);
  // Small values (losses) keep four significant digits.
  return value === 0 ? '0' : String(Number(value.toPrecision(4)));
}

/** A loss: four decimals, the precision the rounds table and the exports compare at. */
export function formatLoss(value: number | null | undefined): string {
  return value === null || value === undefined ? '—' : value.toFixed(4);
}

/** A client metric by its name: accuracies as percentages, the rest as numbers. */
export function formatMetric(name: string, value: number | null | undefined): string {
  return /accuracy/i.test(name) ? formatPercent(value) : formatNumber(value);
}
