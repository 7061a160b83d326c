/**
 * Sends one frame to many connections without holding the event loop for long. A round's
 * `train` goes to every sampled client with the model in it (800 KB for the 2NN): Socket.IO
 * encodes it once per emit, but each connection's write is a syscall that copies the frame
 * into the kernel (on loopback, through the receiver's TCP stack too), 1–3 ms per connection
 * on a loaded 2-core machine, so one emit to 1,000 clients held the loop for seconds: updates,
 * pings and `/healthz` waited behind it. Here the recipients go out in chunks, each chunk one
 * emit, within slices of about `sliceMs`, and the loop is given back between slices
 * (setImmediate: I/O that arrived meanwhile is handled first).
 *
 * Chunks are sized from the time per connection measured on this frame's earlier chunks, so a
 * small frame (`round-closed`) still goes out in a few emits and a large one is not encoded
 * once per connection. Frames leave in the order they were given, whole frame after whole
 * frame, so a client never sees a later frame before an earlier one.
 */
export interface PacedSender {
  /** Queues `send` for these connections; `send(chunk)` writes the frame to each of `chunk`. */
  send(connections: readonly string[], send: (chunk: string[]) => void): void;
  /** Connections still waiting for a frame (for tests and metrics). */
  readonly pending: number;
}

export function createPacedSender(
  options: {
    sliceMs?: number;
    /** A chunk's send threw: it is told here, and the frame's other chunks still go out. */
    onError?: (error: unknown) => void;
  } = {},
): PacedSender {
  const sliceMs = options.sliceMs ?? 8;
  interface Job {
    connections: readonly string[];
    send: (chunk: string[]) => void;
    next: number;
    /** Measured ms per connection for this frame, once a chunk has been sent. */
    msPerConnection: number | null;
  }
  const queue: Job[] = [];
  let scheduled = false;
  let pending = 0;

  const pump = () => {
    scheduled = false;
    const sliceStart = performance.now();
    while (queue.length > 0 && performance.now() - sliceStart < sliceMs) {
      const job = queue[0] as Job;
      const left = sliceMs - (performance.now() - sliceStart);
      // The first chunk of a frame is one connection: its time sizes the chunks after it.
      const size =
        job.msPerConnection === null
          ? 1
          : Math.max(1, Math.floor(left / Math.max(job.msPerConnection, 1e-3)));
      const chunk = job.connections.slice(job.next, job.next + size);
      job.next += chunk.length;
      pending -= chunk.length;
      const start = performance.now();
      try {
        job.send(chunk);
      } catch (error) {
        options.onError?.(error);
      }
      job.msPerConnection = (performance.now() - start) / chunk.length;
      if (job.next >= job.connections.length) queue.shift();
    }
    if (queue.length > 0) schedule();
  };
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(pump);
  };

  return {
    send(connections, send) {
      if (connections.length === 0) return;
      queue.push({ connections, send, next: 0, msPerConnection: null });
      pending += connections.length;
      // The first slice at once: a frame to a few clients leaves in this turn, as before.
      if (!scheduled && queue.length === 1) pump();
      else schedule();
    },
    get pending() {
      return pending;
    },
  };
}
