/**
 * Where a committed round's time went: written by the coordinator's engine into the round
 * record (Round.phases), read by the REST API, the exports, the console and `tessera simulate`.
 * Browser-safe: types and pure functions only.
 */

/**
 * A round's phases in milliseconds, as the engine measured them: back to back, so their sum
 * is the time the round held the run's loop, from the moment the engine began it until the
 * next round could begin (a round record's durationMs covers only one attempt's
 * distribution, training and aggregation). A phase that a round went through more than once
 * (a retried attempt) is the sum of its turns. Central evaluation runs beside the next
 * round's training, so it is not one of them: `centralEvaluationMs` says how long it took.
 */
export interface RoundPhases {
  /** Waiting for enough idle clients before an attempt could sample them. */
  waitingMs: number;
  /** Sampling, encoding the global model and handing it to the transport for the clients. */
  distributionMs: number;
  /** From the model sent until every selected client answered or the deadline passed. */
  trainingMs: number;
  /** The strategy's final step (the updates are folded in as they arrive, during training). */
  aggregationMs: number;
  /**
   * Encoding the new checkpoint and strategy state and the commit transaction; null until
   * recorded after the evaluation.
   */
  commitMs: number | null;
  /**
   * What evaluation held the loop up after the commit: federated evaluation (its clients are
   * busy until it ends), and waiting for the previous round's central evaluation where that
   * was still running; null until recorded (and for a round that a resumed run evaluated: its
   * other phases were another process's).
   */
  evaluationMs: number | null;
  /**
   * How long central evaluation took, from the commit to its result, while the next round was
   * already training (not part of the sum); null until recorded, and without one.
   */
  centralEvaluationMs: number | null;
}

/** The phases in the order they run, with the words the console and the CLI show. */
export const ROUND_PHASES = [
  { key: 'waitingMs', label: 'waiting' },
  { key: 'distributionMs', label: 'distribution' },
  { key: 'trainingMs', label: 'training' },
  { key: 'aggregationMs', label: 'aggregation' },
  { key: 'commitMs', label: 'commit' },
  { key: 'evaluationMs', label: 'evaluation' },
] as const satisfies ReadonlyArray<{ key: keyof RoundPhases; label: string }>;

/** The whole round (the sum of its phases) once all of them are recorded; else null. */
export function roundTotalMs(phases: RoundPhases | null | undefined): number | null {
  if (!phases) return null;
  let total = 0;
  for (const { key } of ROUND_PHASES) {
    const ms = phases[key];
    if (ms === null) return null;
    total += ms;
  }
  return total;
}
