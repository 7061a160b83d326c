import { readlinkSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/**
 * Lowers the calling thread's CPU priority to `niceness` (Linux, where nice is per thread and
 * threads the caller starts later inherit it), for background work that must not take cores
 * from the event loop: central evaluation runs beside the next round, and on a machine whose
 * cores are all busy (clients training there too) its forward passes competed with the loop
 * that answers clients and `/healthz`. Elsewhere, or when the thread cannot be named, it
 * changes nothing. Returns the thread's niceness after the call, or null where unknown.
 */
export function lowerThreadPriority(niceness = 10): number | null {
  let threadId: number;
  try {
    // "<pid>/task/<tid>": the kernel's id of this thread (worker_threads do not expose it).
    threadId = Number(readlinkSync('/proc/thread-self').split('/').pop());
  } catch {
    return null;
  }
  if (!Number.isInteger(threadId) || threadId <= 0) return null;
  try {
    // Only ever lowered: raising a priority needs privileges, and is never this call's job.
    if (getPriority(threadId) < niceness) setPriority(threadId, niceness);
    return getPriority(threadId);
  } catch {
    return null;
  }
}
