import type { Coordinator } from '../coordinator.js';

/**
 * Pausing a run: it finishes its open round (training, commit and evaluation), then ends
 * between rounds with status `paused`, and Resume (start) continues with the next round. The
 * engine ends there itself (Coordinator.pauseRun); this keeps which pauses are pending for
 * the run's record (`pausing`). A paused run is not resumed when the coordinator restarts
 * (only `running` ones are).
 */
export class PauseRequests {
  private readonly pending = new Set<string>();

  constructor(private readonly coordinator: Coordinator) {
    coordinator.on('run-finished', ({ runId }) => this.pending.delete(runId));
  }

  /** Throws CONFLICT when the run is not running in this process. */
  request(runId: string): void {
    this.coordinator.pauseRun(runId);
    this.pending.add(runId);
  }

  cancel(runId: string): void {
    this.pending.delete(runId);
  }

  isPending(runId: string): boolean {
    return this.pending.has(runId);
  }
}
