import type { RedisClient } from './redis.js';

/**
 * The listeners a process keeps on per-run channels while it owns the runs (the reply relay's,
 * the remote fold's): one binary listener per run, subscribed by serve and dropped by unserve.
 * Because the owner alone listens, PUBLISH's receiver count tells a sender whether any process
 * owns the run.
 */
export class RunChannels {
  private readonly listeners = new Map<string, (message: Buffer) => void>();

  constructor(
    private readonly subscriber: RedisClient,
    private readonly channelOf: (runId: string) => string,
  ) {}

  async serve(runId: string, listener: (message: Buffer) => void): Promise<void> {
    this.listeners.set(runId, listener);
    await this.subscriber.subscribe(this.channelOf(runId), listener, true);
  }

  async unserve(runId: string): Promise<void> {
    const listener = this.listeners.get(runId);
    if (!listener) return;
    this.listeners.delete(runId);
    await this.subscriber.unsubscribe(this.channelOf(runId), listener, true).catch(() => {});
  }

  async unserveAll(): Promise<void> {
    for (const runId of [...this.listeners.keys()]) await this.unserve(runId);
  }
}
