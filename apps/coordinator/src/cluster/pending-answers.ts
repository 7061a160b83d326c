/**
 * Requests sent over Redis pub/sub that wait for their answer, by request id (the reply
 * relay's forwards, the remote fold's claims and collects). Each waits at most its timeout,
 * then settles with what `onTimeout` returns, or rejects with what it throws; an answer that
 * comes later, or for an id no one waits for, is ignored.
 */
export class PendingAnswers<T> {
  private readonly waiting = new Map<
    string,
    { resolve: (value: T) => void; timer: NodeJS.Timeout }
  >();

  /** The answer to `id`, or `onTimeout()`'s value (its error, if it throws) past `timeoutMs`. */
  wait(id: string, timeoutMs: number, onTimeout: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        try {
          resolve(onTimeout());
        } catch (cause) {
          reject(cause);
        }
      }, timeoutMs);
      this.waiting.set(id, { resolve, timer });
    });
  }

  /** Answers `id`; false when no one waits for it (unknown, timed out, cancelled or settled). */
  settle(id: string, value: T): boolean {
    const waiting = this.waiting.get(id);
    if (!waiting) return false;
    this.waiting.delete(id);
    clearTimeout(waiting.timer);
    waiting.resolve(value);
    return true;
  }

  /** Stops waiting for `id` (its request reached no one): its promise never settles. */
  cancel(id: string): void {
    const waiting = this.waiting.get(id);
    if (waiting) clearTimeout(waiting.timer);
    this.waiting.delete(id);
  }

  /** Answers every request still waiting with `answerOf(id)` (the process closes). */
  closeAll(answerOf: (id: string) => T): void {
    for (const id of [...this.waiting.keys()]) this.settle(id, answerOf(id));
  }

  get size(): number {
    return this.waiting.size;
  }
}
