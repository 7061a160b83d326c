import type { PhasesAfterCommit, PhasesBeforeCommit, RoundPhases } from '@tessera/db';

type WithoutMs<Key> = Key extends `${infer Phase}Ms` ? Phase : never;
/** A phase of a round, as RoundPhases names its times (without the `Ms`). */
export type RoundPhase = WithoutMs<keyof RoundPhases>;

/**
 * Where one round's time goes. Each lap ends the phase that was running and starts the next,
 * so the phases are back to back and add up to the round's wall time. A phase lapped again
 * (the distribution and training of a retried attempt) adds to its earlier turns.
 */
export class PhaseClock {
  private readonly spent = new Map<RoundPhase, number>();
  private last: number;

  constructor(private readonly now: () => number = () => performance.now()) {
    this.last = now();
  }

  /** Ends `phase` now: the time since the previous lap (or the start) goes to it. */
  lap(phase: RoundPhase): void {
    const now = this.now();
    this.spent.set(phase, (this.spent.get(phase) ?? 0) + (now - this.last));
    this.last = now;
  }

  /** Whole milliseconds spent in `phase` so far (0 for a phase not lapped). */
  ms(phase: RoundPhase): number {
    return Math.round(this.spent.get(phase) ?? 0);
  }

  /** The phases that end before the commit, as the commit records them. */
  beforeCommit(): PhasesBeforeCommit {
    return {
      waitingMs: this.ms('waiting'),
      distributionMs: this.ms('distribution'),
      trainingMs: this.ms('training'),
      aggregationMs: this.ms('aggregation'),
    };
  }

  /** The commit's and the evaluation's times, recorded after the evaluation. */
  afterCommit(): Omit<PhasesAfterCommit, 'centralEvaluationMs'> {
    return { commitMs: this.ms('commit'), evaluationMs: this.ms('evaluation') };
  }
}
