import { ErrorCode, TesseraError } from '@tessera/protocol';

export type ParticipantOutcome = 'pending' | 'updated' | 'failed' | 'rejected' | 'dropped';

/**
 * The bookkeeping of one training round, free of I/O and clocks: who was selected, who replied,
 * who failed or dropped, and whether the round may close. The engine asks it before it touches
 * any weights, so a frame from the wrong run, round or client is refused cheaply.
 */
export class RoundState {
  private readonly outcomes = new Map<string, ParticipantOutcome>();
  private closed = false;
  /** Clients whose updates were accepted, in arrival order (the aggregation order). */
  readonly arrivals: string[] = [];

  constructor(
    readonly runId: string,
    readonly round: number,
    selected: readonly string[],
  ) {
    for (const clientId of selected) this.outcomes.set(clientId, 'pending');
  }

  get selected(): string[] {
    return [...this.outcomes.keys()];
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Throws the error the sender should get when it may not reply to this round now. */
  checkReply(clientId: string, runId: string, round: number): void {
    if (runId !== this.runId) {
      throw new TesseraError(
        ErrorCode.WRONG_RUN,
        `reply names run ${runId}; this client is training run ${this.runId}`,
      );
    }
    if (round !== this.round || this.closed) {
      throw new TesseraError(
        ErrorCode.WRONG_ROUND,
        this.closed && round === this.round
          ? `round ${round} of run ${runId} is already closed`
          : `reply is for round ${round}; the open round of run ${runId} is ${this.round}`,
        { openRound: this.round },
      );
    }
    const outcome = this.outcomes.get(clientId);
    if (outcome === undefined || outcome === 'dropped') {
      throw new TesseraError(
        ErrorCode.NOT_SELECTED,
        `client ${clientId} is not part of round ${round}`,
      );
    }
    if (outcome !== 'pending') {
      throw new TesseraError(
        ErrorCode.DUPLICATE_UPDATE,
        `client ${clientId} already replied to round ${round} (${outcome})`,
      );
    }
  }

  record(clientId: string, outcome: Exclude<ParticipantOutcome, 'pending'>): void {
    if (this.outcomes.get(clientId) !== 'pending') return;
    this.outcomes.set(clientId, outcome);
    if (outcome === 'updated') this.arrivals.push(clientId);
  }

  /**
   * A client whose update is in the aggregate although it disconnected before the round
   * ended: under secure aggregation, one that dropped after masking still counts.
   */
  counted(clientId: string): void {
    const outcome = this.outcomes.get(clientId);
    if (outcome !== 'pending' && outcome !== 'dropped') return;
    this.outcomes.set(clientId, 'updated');
    this.arrivals.push(clientId);
  }

  /** A selected client that disconnected before replying; the round goes on without it. */
  drop(clientId: string): boolean {
    if (this.outcomes.get(clientId) !== 'pending') return false;
    this.outcomes.set(clientId, 'dropped');
    return true;
  }

  /**
   * A client counted as updated whose update is not in the aggregate after all: folded by
   * another coordinator whose partial sum never came. It is recorded dropped.
   */
  lose(clientId: string): void {
    if (this.outcomes.get(clientId) !== 'updated') return;
    this.outcomes.set(clientId, 'dropped');
    this.arrivals.splice(this.arrivals.indexOf(clientId), 1);
  }

  close(): void {
    this.closed = true;
  }

  /** Every selected client has replied, failed or dropped: nothing more to wait for. */
  get allAnswered(): boolean {
    for (const outcome of this.outcomes.values()) if (outcome === 'pending') return false;
    return true;
  }

  get numUpdates(): number {
    return this.arrivals.length;
  }

  outcomeOf(clientId: string): ParticipantOutcome | undefined {
    return this.outcomes.get(clientId);
  }

  clientsWith(outcome: ParticipantOutcome): string[] {
    return [...this.outcomes].filter(([, o]) => o === outcome).map(([id]) => id);
  }
}
