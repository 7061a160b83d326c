import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { LeaseFence, LeaseRepository } from '@tessera/db';
import { TesseraError } from '@tessera/protocol';
import type { Logger } from './logger.js';

/** Default lease: how long a dead coordinator's runs wait before another process takes them. */
export const DEFAULT_LEASE_MS = 15_000;

/**
 * This process's name as a lease owner: host and pid say where it ran (for an operator reading
 * the lease table), the random part keeps a restarted process with a reused pid from passing
 * for its predecessor (whose lease must expire or be taken over, not silently continued).
 */
export function processOwnerId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

/** True for the refusal of a write whose lease was taken over (`checkFence` in @tessera/db). */
export function isLeaseLost(error: unknown): boolean {
  return error instanceof TesseraError && error.data?.['lease'] === 'lost';
}

interface Held {
  fence: LeaseFence;
  timer: NodeJS.Timeout;
  /** Called once, when a renewal finds that another owner has the lease now. */
  onLost: () => void;
}

/**
 * The leases this process holds on its running runs: taken when a run starts or is taken over,
 * renewed every ttl/3 (so two renewals may fail, e.g. in a database blip, before it expires),
 * released on a clean end. A renewal that finds the lease gone calls the run's `onLost` at
 * once: the engine must stop without touching the run's status, which its new owner drives now.
 * The fence itself is what keeps a late former owner from writing (every commit checks it);
 * renewal only makes it stop sooner.
 */
export class RunLeases {
  private readonly held = new Map<string, Held>();

  constructor(
    private readonly leases: LeaseRepository,
    readonly owner: string,
    readonly ttlMs: number,
    private readonly logger: Logger,
  ) {}

  /** Takes the run's lease; null while another process holds it unexpired. Not yet renewed. */
  async acquire(runId: string): Promise<LeaseFence | null> {
    const lease = await this.leases.acquire(runId, this.owner, this.ttlMs);
    return lease === null ? null : { owner: lease.owner, token: lease.token };
  }

  /** Keeps `fence` renewed until `release` (or until it is lost: then `onLost`). */
  hold(runId: string, fence: LeaseFence, onLost: () => void): void {
    this.stopRenewing(runId);
    const timer = setInterval(
      () => void this.renew(runId),
      Math.max(1, Math.floor(this.ttlMs / 3)),
    );
    timer.unref();
    this.held.set(runId, { fence, timer, onLost });
  }

  /** Runs whose lease this process holds now. */
  get heldCount(): number {
    return this.held.size;
  }

  fenceOf(runId: string): LeaseFence | undefined {
    return this.held.get(runId)?.fence;
  }

  /**
   * Gives the lease up so another process may take the run at once (its engine has ended);
   * a lease that was lost meanwhile is left to its new owner (release checks the token).
   */
  async release(runId: string, fence: LeaseFence | undefined = this.fenceOf(runId)): Promise<void> {
    this.stopRenewing(runId);
    if (fence === undefined) return;
    try {
      await this.leases.release(runId, fence);
    } catch (cause) {
      // It expires by itself within ttlMs: a failed release only delays a takeover.
      this.logger.warn('could not release a run lease; it expires by itself', {
        runId,
        message: TesseraError.from(cause).message,
      });
    }
  }

  private stopRenewing(runId: string): void {
    const held = this.held.get(runId);
    if (held === undefined) return;
    clearInterval(held.timer);
    this.held.delete(runId);
  }

  private async renew(runId: string): Promise<void> {
    const held = this.held.get(runId);
    if (held === undefined) return;
    let renewed: Awaited<ReturnType<LeaseRepository['renew']>>;
    try {
      renewed = await this.leases.renew(runId, held.fence, this.ttlMs);
    } catch (cause) {
      // The database is out of reach: keep trying. If it stays away past the lease, another
      // process may take the run over; then the next renewal (or commit) learns it.
      this.logger.warn('could not renew a run lease; trying again', {
        runId,
        message: TesseraError.from(cause).message,
      });
      return;
    }
    if (renewed !== null || this.held.get(runId) !== held) return;
    this.stopRenewing(runId);
    this.logger.warn('run lease lost to another coordinator; stopping its engine here', {
      runId,
      owner: this.owner,
      token: held.fence.token,
    });
    held.onLost();
  }
}
