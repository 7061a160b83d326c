/**
 * Runs queued work in slices of about `sliceMs`, giving the event loop back between slices.
 * The socket edge hands each client reply (an update: schema check, decode, finiteness check,
 * sha256, fold: several ms for the 2NN, more on a loaded machine) to this queue instead of
 * handling it inside the socket's read callback: when hundreds of updates arrive together,
 * libuv reads them all in one poll phase, and handling each one there held the loop for
 * seconds, long enough for `/healthz` to time out and for Socket.IO's ping timers (which run
 * before the pongs waiting in the socket buffers are read) to drop clients.
 *
 * Work runs in the order given (a client's replies stay in order). The queue's memory is
 * bounded by back-pressure, not by handling work inline: once more than `maxQueuedBytes` of
 * frames wait, `onPressure(true)` asks the edge to stop reading its connections (the frames
 * not yet read stay in the kernel's socket buffers and TCP slows the senders), and once the
 * queue has drained to half the bound, `onPressure(false)` lets them be read again. Handling
 * the queue inline past the bound, as this did before, held the loop for the whole backlog:
 * 4.7 s in one stretch in a 1,000-client round of the 2NN (`/healthz` answered in 5.4 s).
 */
export interface SlicedWork {
  /** Queues `work` (`bytes`: the frame it holds, counted against the bound). */
  run(work: () => void, bytes: number): void;
  /** Work waiting (for tests). */
  readonly queued: number;
  /** Whether more than the bound waits: the edge should not read more until it drains. */
  readonly pressured: boolean;
}

export interface SlicedWorkOptions {
  sliceMs?: number;
  /** Bytes of queued frames past which `onPressure(true)` is called (default 256 MiB). */
  maxQueuedBytes?: number;
  /** Back-pressure: true once the bound is passed, false once half of it is left. */
  onPressure?: (pressured: boolean) => void;
  onError?: (error: unknown) => void;
}

export function createSlicedWork(options: SlicedWorkOptions = {}): SlicedWork {
  const sliceMs = options.sliceMs ?? 8;
  const maxQueuedBytes = options.maxQueuedBytes ?? 256 * 1024 * 1024;
  const queue: Array<{ work: () => void; bytes: number } | undefined> = [];
  let head = 0;
  let queuedBytes = 0;
  let scheduled = false;
  let pressured = false;

  const runOne = (work: () => void) => {
    try {
      work();
    } catch (error) {
      options.onError?.(error);
    }
  };
  const setPressure = (value: boolean) => {
    if (pressured === value) return;
    pressured = value;
    try {
      options.onPressure?.(value);
    } catch (error) {
      options.onError?.(error);
    }
  };
  const drain = () => {
    scheduled = false;
    // Work queued by a running item is run by that item's drain, which then empties the queue:
    // the drain its `run` scheduled finds nothing (and must not read past the end).
    if (head >= queue.length) return;
    const start = performance.now();
    // At least one item a slice, however short the slice.
    do {
      const item = queue[head] as { work: () => void; bytes: number };
      queue[head++] = undefined;
      queuedBytes -= item.bytes;
      runOne(item.work);
    } while (head < queue.length && performance.now() - start < sliceMs);
    if (head >= queue.length) {
      queue.length = 0;
      head = 0;
    } else if (!scheduled) {
      scheduled = true;
      setImmediate(drain);
    }
    // Hysteresis: reads resume at half the bound, so that they do not toggle per frame.
    if (pressured && queuedBytes <= maxQueuedBytes / 2) setPressure(false);
  };

  return {
    run(work, bytes) {
      queue.push({ work, bytes });
      queuedBytes += bytes;
      if (queuedBytes > maxQueuedBytes) setPressure(true);
      if (!scheduled) {
        scheduled = true;
        setImmediate(drain);
      }
    },
    get queued() {
      return queue.length - head;
    },
    get pressured() {
      return pressured;
    },
  };
}
