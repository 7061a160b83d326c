/**
 * How many threads a timed stretch of work really used, read from Linux's per-thread CPU
 * clocks (/proc/self/task/TID/stat): "1 thread" is then measured, not assumed. The PyTorch
 * side (train_speed.py) counts the same way.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** CPU clock ticks (user + system) of each of this process's threads, by thread id. */
export function threadCpuTicks(): Map<string, number> {
  const ticks = new Map<string, number>();
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return ticks; // not Linux: the bench prints '-'
  }
  for (const tid of tids) {
    try {
      // Fields after the ')' that ends the thread's name: utime and stime are the 12th and 13th.
      const fields = (readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(')').pop() ?? '')
        .trim()
        .split(/\s+/);
      ticks.set(tid, Number(fields[11]) + Number(fields[12]));
    } catch {
      // a thread that ended meanwhile
    }
  }
  return ticks;
}

/** Linux's USER_HZ: what /proc's CPU times count in (100 on every Linux platform Node runs on). */
const TICKS_PER_SECOND = 100;

/** Threads that ran more than a tenth of `wallSeconds` between the two readings. */
export function busyThreads(
  before: Map<string, number>,
  after: Map<string, number>,
  wallSeconds: number,
): number {
  let busy = 0;
  for (const [tid, ticks] of after) {
    if ((ticks - (before.get(tid) ?? 0)) / TICKS_PER_SECOND > wallSeconds / 10) busy++;
  }
  return busy;
}

/** Runs `work`, returning its result with the process's CPU time over wall time and busy threads. */
export async function measureThreads<T>(
  work: () => Promise<T>,
): Promise<{ result: T; cpuPerWall: number; busyThreads: number }> {
  const ticksBefore = threadCpuTicks();
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const result = await work();
  const wallSeconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  return {
    result,
    cpuPerWall: (cpu.user + cpu.system) / 1e6 / wallSeconds,
    busyThreads: busyThreads(ticksBefore, threadCpuTicks(), wallSeconds),
  };
}
