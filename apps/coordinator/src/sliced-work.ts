/**
 * Runs queued work in slices of about `sliceMs`, giving the event loop back between slices.
 * The socket edge hands each client reply (an update: schema check, decode, finiteness check,
 * sha256, fold: several ms for the 2NN, more on a loaded machine) to this queue instead of
 * handling it inside the socket's read callback: when hundreds of updates arrive together,
 * libuv reads them all in one poll phase, and handling each one there held the loop for
 * seconds, long enough for `/healthz` to time out and for Socket.IO's ping timers (which run
 * before the pongs waiting in the socket buffers are read) to drop clients.
 *
 * Work runs in the order given (a client's replies stay in order). Past `maxQueuedBytes` of
 * queued frames, the queue is run through at once and new work runs as it comes, as before:
 * then the loop stays in the read callbacks, the kernel's socket buffers fill, and TCP slows
 * the senders, rather than this process holding every update in memory.
 */
export interface SlicedWork {
  /** Queues `work` (`bytes`: what it holds, for the bound), or runs it now past the bound. */
  run(work: () => void, bytes: number): void;
  /** Work waiting (for tests). */
  readonly queued: number;
}

export function createSlicedWork(
  options: { sliceMs?: number; maxQueuedBytes?: number; onError?: (error: unknown) => void } = {},
): SlicedWork {
  const sliceMs = options.sliceMs ?? 8;
  const maxQueuedBytes = options.maxQueuedBytes ?? 256 * 1024 * 1024;
  const queue: Array<{ work: () => void; bytes: number }> = [];
  let head = 0;
  let queuedBytes = 0;
  let scheduled = false;

  const runOne = (work: () => void) => {
    try {
      work();
    } catch (error) {
      options.onError?.(error);
    }
  };
  const drain = () => {
    scheduled = false;
    const start = performance.now();
    while (head < queue.length && performance.now() - start < sliceMs) {
      const item = queue[head] as { work: () => void; bytes: number };
      queue[head++] = undefined as never;
      queuedBytes -= item.bytes;
      runOne(item.work);
    }
    if (head >= queue.length) {
      queue.length = 0;
      head = 0;
    } else if (!scheduled) {
      scheduled = true;
      setImmediate(drain);
    }
  };

  return {
    run(work, bytes) {
      // Past the bound: what is queued runs now, then this, in order (the loop is held, as
      // it was before this queue existed, and the senders wait on TCP).
      if (queuedBytes + bytes > maxQueuedBytes) {
        while (head < queue.length) {
          const item = queue[head] as { work: () => void; bytes: number };
          queue[head++] = undefined as never;
          queuedBytes -= item.bytes;
          runOne(item.work);
        }
        queue.length = 0;
        head = 0;
        runOne(work);
        return;
      }
      queue.push({ work, bytes });
      queuedBytes += bytes;
      if (!scheduled) {
        scheduled = true;
        setImmediate(drain);
      }
    },
    get queued() {
      return queue.length - head;
    },
  };
}
