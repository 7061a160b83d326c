import type { RoundRecord } from '@tessera/db';
import { ROUND_PHASES, roundTotalMs } from '@tessera/protocol';
import type { RoundTiming } from './simulate.js';

const seconds = (ms: number) =>
  ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;

/**
 * What the simulation measured beside the record: the clients' pure training time and the
 * whole round as a multiple of it (the coordinator's overhead), and /healthz during the round.
 */
export function formatTiming(round: RoundRecord, timing: RoundTiming): string {
  const total = roundTotalMs(round.phases) ?? round.durationMs;
  const parts: string[] = [];
  if (timing.trainingMs !== null && timing.trainingMs > 0) {
    parts.push(
      `pure training ${seconds(timing.trainingMs)} (${timing.trained} trainings; round = ${(total / timing.trainingMs).toFixed(2)}x)`,
    );
  }
  if (timing.healthz !== null) {
    const { samples, p50Ms, p99Ms, maxMs } = timing.healthz;
    parts.push(
      `/healthz p50 ${p50Ms.toFixed(1)} ms, p99 ${p99Ms.toFixed(1)} ms, max ${maxMs.toFixed(0)} ms (${samples} probes)`,
    );
  }
  return parts.join('; ');
}

/**
 * One evaluated round as `tessera simulate` prints it: the whole round's time and where it
 * went, phase by phase (durationMs alone stops before the commit and evaluation), and with a
 * timing, the simulation's own figures (formatTiming) on a second, indented line.
 */
export function formatRoundLine(round: RoundRecord, timing?: RoundTiming): string {
  const line = formatRecordLine(round);
  const measured = timing === undefined ? '' : formatTiming(round, timing);
  return measured === '' ? line : `${line}\n      ${measured}`;
}

function formatRecordLine(round: RoundRecord): string {
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
 * went. Rounds without all their phases recorded are left out (and counted). With the
 * simulation's timings, one more line: the rounds' time against the clients' pure training
 * time, and the p99 of every /healthz answer over the rounds.
 */
export function formatPhaseSummary(
  rounds: readonly RoundRecord[],
  timings: readonly RoundTiming[] = [],
): string {
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
  const trained = timings.filter((t) => t.trainingMs !== null && t.trainingMs > 0);
  if (trained.length > 0 && trained.length === timings.length && timings.length === rounds.length) {
    const training = trained.reduce((sum, t) => sum + (t.trainingMs ?? 0), 0);
    const whole = rounds.reduce((sum, r) => sum + (roundTotalMs(r.phases) ?? r.durationMs), 0);
    lines.push(
      `  the clients' pure training ${seconds(training)}: the rounds took ${(whole / training).toFixed(2)}x that (goal: at most 1.20x)`,
    );
  }
  const probed = timings.flatMap((t) => (t.healthz === null ? [] : [t.healthz]));
  if (probed.length > 0) {
    lines.push(
      `  /healthz p99 per round: ${probed.map((h) => `${h.p99Ms.toFixed(1)}`).join(', ')} ms (worst answer ${Math.max(...probed.map((h) => h.maxMs)).toFixed(0)} ms; goal: p99 under 50 ms)`,
    );
  }
  return `${lines.join('\n')}\n`;
}
