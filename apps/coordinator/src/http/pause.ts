import type { Coordinator } from '../coordinator.js';

/**
 * Pausing a run: it finishes its open round (training, commit and evaluation), then ends
 * between rounds with status `paused`, and Resume (start) continues with the next round. This
 * waits for the round's 'round-evaluated' and pauses the engine there. A paused run is not
 * resumed when the coordinator restarts (only `running` ones are).
 */
export class PauseRequests {
  private readonly pending = new Set<string>();

  constructor(coordinator: Coordinator) {
    coordinator.on('round-evaluated', ({ runId }) => {
      if (!this.pending.delete(runId)) return;
      // Synchronously, before the engine samples the next round: it ends between rounds.
      try {
        coordinator.pauseRun(runId);
      } catch (error) {
        coordinator.logger.warn('pause: the run could not be paused', {
          runId,
          message: (error as Error).message,
        });
      }
    });
    coordinator.on('run-finished', ({ runId }) => this.pending.delete(runId));
  }

  request(runId: string): void {
    this.pending.add(runId);
  }

  cancel(runId: string): void {
    this.pending.delete(runId);
  }

  isPending(runId: string): boolean {
    return this.pending.has(runId);
  }
}
