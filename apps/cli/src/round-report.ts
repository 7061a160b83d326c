import type { RoundRecord } from '@tessera/db';
import { ROUND_PHASES, roundTotalMs } from '@tessera/protocol';

const seconds = (ms: number) =>
  ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;

/**
 * One evaluated round as `tessera simulate` prints it: the whole round's time and where it
 * went, phase by phase (durationMs alone stops before the commit and evaluation).
 */
export function formatRoundLine(round: RoundRecord): string {
  const accuracy = round.centralAccuracy ?? round.federatedAccuracy;
  const loss = round.centralLoss ?? round.federatedLoss;
  const head = `round ${String(round.number).padStart(4)}  ${round.participantClientIds.length} clients  test accuracy ${accuracy?.toFixed(4) ?? '-'}  loss ${loss?.toFixed(4) ?? '-'}`;
  const { phases } = round;
  const total = roundTotalMs(phases);
  if (phases === null || total === null)
    return `${head}  ${seconds(round.durationMs)} (training only)`;
  const parts = ROUND_PHASES.map(({ key, label }) => `${label} ${seconds(phases[key] ?? 0)}`);
  const central =
    phases.centralEvaluationMs === null
      ? ''
      : `; central evaluation ${seconds(phases.centralEvaluationMs)} beside the next round`;
  return `${head}  ${seconds(total)}: ${parts.join(', ')}${central}`;
}

/**
 * The run's rounds summed by phase, with each phase's share of the whole: where a run's time
 * went. Rounds without all their phases recorded are left out (and counted).
 */
export function formatPhaseSummary(rounds: readonly RoundRecord[]): string {
  const timed = rounds.filter((round) => roundTotalMs(round.phases) !== null);
  const sums = ROUND_PHASES.map(({ key, label }) => ({
    label,
    ms: timed.reduce((sum, round) => sum + (round.phases?.[key] ?? 0), 0),
  }));
  const total = sums.reduce((sum, { ms }) => sum + ms, 0);
  const skipped = rounds.length - timed.length;
  const lines = [
    `where the time went (${timed.length} rounds, ${seconds(total)}${skipped > 0 ? `; ${skipped} without phases left out` : ''}):`,
    ...sums.map(
      ({ label, ms }) =>
        `  ${label.padEnd(13)}${seconds(ms).padStart(10)}${`${total > 0 ? ((100 * ms) / total).toFixed(1) : '0.0'}%`.padStart(8)}`,
    ),
  ];
  return `${lines.join('\n')}\n`;
}
