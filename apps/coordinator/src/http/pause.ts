import type { Coordinator } from '../coordinator.js';

/**
 * Pausing a run: it finishes its open round (training, commit and evaluation), then stops
 * between rounds, and Resume (start) continues with the next round. The round engine has no
 * paused state of its own, so this waits for the round's 'round-evaluated' and stops there;
 * the run's status is then `stopped`, which start resumes from its last committed round.
 */
export class PauseRequests {
  private readonly pending = new Set<string>();

  constructor(coordinator: Coordinator) {
    coordinator.on('round-evaluated', ({ runId }) => {
      if (!this.pending.delete(runId)) return;
      // Synchronously, before the engine samples the next round: it stops between rounds.
      coordinator.stopRun(runId).catch((error: unknown) => {
        coordinator.logger.warn('pause: the run could not be stopped', {
          runId,
          message: (error as Error).message,
        });
      });
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
