// What this client did, round by round, and the summary printed when it leaves or goes idle.
// The coordinator does not tell clients that a run ended, so the client keeps its own account.

/**
 * sent: the coordinator took the update; refused: it answered with an error; failed: local
 * training failed (the coordinator was told why); unfinished: no reply was sent (the round
 * closed first, or the client left while training).
 */
export type RoundOutcome = 'sent' | 'refused' | 'failed' | 'unfinished';

export interface RoundEntry {
  round: number;
  outcome: RoundOutcome;
  numExamples?: number;
  durationMs?: number;
  loss?: number;
  /** Why it failed or was refused. */
  reason?: string;
  heldOutAccuracy?: number;
}

const OUTCOMES: readonly RoundOutcome[] = ['sent', 'refused', 'failed', 'unfinished'];

export class ParticipationLog {
  /** Per run, its rounds in the order they started. */
  private readonly runs = new Map<string, RoundEntry[]>();

  started(runId: string, round: number): void {
    const rounds = this.runs.get(runId) ?? [];
    this.runs.set(runId, rounds);
    // A retried round keeps its number: the retry replaces the earlier attempt.
    const kept = rounds.filter((entry) => entry.round !== round);
    kept.push({ round, outcome: 'unfinished' });
    rounds.splice(0, rounds.length, ...kept);
  }

  finished(runId: string, round: number, result: Omit<RoundEntry, 'round'>): void {
    const entry = this.entry(runId, round);
    Object.assign(entry, result);
  }

  evaluated(runId: string, round: number, accuracy: number): void {
    const entry = this.runs.get(runId)?.find((e) => e.round === round);
    if (entry) entry.heldOutAccuracy = accuracy;
  }

  /** Runs with at least one round, oldest first. */
  runIds(): string[] {
    return [...this.runs.keys()];
  }

  /** One line per run this client took part in; none if it trained no round. */
  summaries(): string[] {
    return this.runIds().map((runId) => this.summary(runId));
  }

  summary(runId: string): string {
    const rounds = this.runs.get(runId) ?? [];
    const counts = OUTCOMES.map(
      (outcome) => [outcome, rounds.filter((r) => r.outcome === outcome).length] as const,
    )
      .filter(([, count]) => count > 0)
      .map(([outcome, count]) => `${count} ${outcome}`);
    const parts = [
      `run ${runId}: took part in ${rounds.length} round${rounds.length === 1 ? '' : 's'} (${counts.join(', ')})`,
    ];
    const trained = rounds.filter((r) => r.durationMs !== undefined);
    if (trained.length > 0) {
      const seconds = trained.reduce((sum, r) => sum + (r.durationMs ?? 0), 0) / 1000;
      parts.push(`${seconds.toFixed(1)} s of training`);
    }
    const last = [...rounds].reverse();
    const lastLoss = last.find((r) => r.loss !== undefined);
    if (lastLoss) parts.push(`last loss ${lastLoss.loss?.toFixed(4)} (round ${lastLoss.round})`);
    const lastAccuracy = last.find((r) => r.heldOutAccuracy !== undefined);
    if (lastAccuracy) {
      parts.push(
        `held-out accuracy ${formatPercent(lastAccuracy.heldOutAccuracy ?? 0)} (round ${lastAccuracy.round})`,
      );
    }
    const lastProblem = last.find((r) => r.reason !== undefined);
    if (lastProblem) parts.push(`last problem (round ${lastProblem.round}): ${lastProblem.reason}`);
    return parts.join(', ');
  }

  private entry(runId: string, round: number): RoundEntry {
    const found = this.runs.get(runId)?.find((e) => e.round === round);
    if (found) return found;
    this.started(runId, round);
    return this.entry(runId, round);
  }
}

export const formatPercent = (fraction: number) => `${(fraction * 100).toFixed(2)}%`;

/** "round 3: trained on 360 examples in 1.2 s (298 samples/s), loss 0.3412, sent" */
export function roundLine(summary: {
  round: number;
  numExamples: number;
  durationMs: number;
  samplesPerSecond: number;
  loss: number;
  refusal?: string;
}): string {
  return (
    `round ${summary.round}: trained on ${summary.numExamples} examples in ${(summary.durationMs / 1000).toFixed(1)} s ` +
    `(${Math.round(summary.samplesPerSecond)} samples/s), loss ${summary.loss.toFixed(4)}, ` +
    (summary.refusal === undefined ? 'sent' : `refused: ${summary.refusal}`)
  );
}
