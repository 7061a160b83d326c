import type { RunRecord } from '@tessera/db';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { Coordinator } from '../coordinator.js';
import { PauseRequests } from './pause.js';

/** A run as run control answers it: the record, and whether a pause is pending. */
export type ControlledRun = RunRecord & { pausing: boolean };

/**
 * Starting, pausing and stopping runs: one service behind both edges that do it, the REST
 * routes and the console's live `/admin` namespace, so they refuse and answer alike. The
 * serialisation itself is the coordinator's (a conditional transition in the database).
 */
export class RunControl {
  readonly pauses: PauseRequests;
  private readonly startedListeners: Array<(run: RunRecord) => Promise<void> | void> = [];

  constructor(private readonly coordinator: Coordinator) {
    this.pauses = new PauseRequests(coordinator);
  }

  /** Called with the run after each start (the live feed pushes its new status). */
  onStarted(listener: (run: RunRecord) => Promise<void> | void): void {
    this.startedListeners.push(listener);
  }

  isPausing(runId: string): boolean {
    return this.pauses.isPending(runId);
  }

  /**
   * Starts a created run or resumes a paused one; CONFLICT when it runs already or cannot be
   * started. A stopped run is final (its open round was discarded): it is refused by name.
   */
  async start(runId: string): Promise<ControlledRun> {
    const current = await this.coordinator.db.runs.get(runId);
    if (current.status === 'stopped') {
      throw new TesseraError(ErrorCode.CONFLICT, `run ${runId} was stopped; create a new run`, {
        runId,
        status: current.status,
      });
    }
    const run = await this.coordinator.startRun(runId);
    for (const listener of this.startedListeners) await listener(run);
    return { ...run, pausing: false };
  }

  /** Asks a running run to pause after its open round; CONFLICT when it is not running. */
  async pause(runId: string): Promise<ControlledRun> {
    const run = await this.coordinator.db.runs.get(runId);
    if (!this.coordinator.isRunning(runId)) {
      throw new TesseraError(ErrorCode.CONFLICT, `run ${runId} is ${run.status}, not running`, {
        runId,
        status: run.status,
      });
    }
    this.pauses.request(runId);
    return { ...run, pausing: true };
  }

  /**
   * Stops a running run for good (and cancels a pending pause): the open round is discarded
   * and the run cannot be started again. CONFLICT when it is not running.
   */
  async stop(runId: string): Promise<ControlledRun> {
    this.pauses.cancel(runId);
    await this.coordinator.stopRun(runId);
    // The run's loop reports 'stopped' itself (run-finished): no second push here.
    return { ...(await this.coordinator.db.runs.get(runId)), pausing: false };
  }
}
