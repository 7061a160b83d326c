/**
 * A level-free wake-up call: `wait` resolves at the next `notify`, or after `timeoutMs`.
 * The round engine re-checks its conditions after every wake-up, so a missed notify can only
 * delay it until the timeout, never hang it.
 */
export class Wakeup {
  private waiters = new Set<() => void>();

  notify(): void {
    const waiters = this.waiters;
    this.waiters = new Set();
    for (const wake of waiters) wake();
  }

  wait(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, timeoutMs));
      this.waiters.add(done);
    });
  }
}
