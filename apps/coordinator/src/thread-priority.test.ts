import { readdirSync, readFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { WorkerCentralEvaluator } from './central-eval.js';
import { builtWorkerExecArgv } from './worker-argv.js';

// Workers run built code, as central evaluation's does (`npm run build` first).
const built = new URL('../dist/thread-priority.js', import.meta.url);

const linux = process.platform === 'linux';

/** A thread's niceness as the kernel reports it (/proc/<pid>/task/<tid>/stat, field 19). */
function niceOf(threadId: number): number {
  const stat = readFileSync(`/proc/${process.pid}/task/${threadId}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[16]);
}

describe.skipIf(!linux)('lowerThreadPriority', () => {
  it("lowers the calling worker thread's priority only, not the process's", async () => {
    const before = getPriority(process.pid);
    // The worker lowers itself and reports its kernel thread id, then waits to be read.
    const worker = new Worker(
      `
      const { parentPort } = require('node:worker_threads');
      const { readlinkSync } = require('node:fs');
      import(${JSON.stringify(built.href)}).then(
        ({ lowerThreadPriority }) => {
          const nice = lowerThreadPriority(7);
          const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
          parentPort.postMessage({ nice, tid });
          parentPort.once('message', () => process.exit(0));
        },
      );
      `,
      { eval: true, execArgv: builtWorkerExecArgv() },
    );
    const { nice, tid } = await new Promise<{ nice: number; tid: number }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    expect(nice).toBe(Math.max(7, before));
    expect(niceOf(tid)).toBe(Math.max(7, before));
    // The process's main thread keeps its priority.
    expect(getPriority(process.pid)).toBe(before);
    worker.postMessage('done');
    await new Promise((resolve) => worker.once('exit', resolve));
  });

  it('central evaluation runs on a thread of lowered priority; the event loop keeps its own', async () => {
    const loopBefore = niceOf(process.pid);
    const evaluator = new WorkerCentralEvaluator(undefined as never);
    try {
      const result = await evaluator.evaluate(
        { config: { model: 'fedavg-2nn' }, resolvedTask: null } as never,
        new Float32Array(199_210),
      );
      expect(result?.numExamples).toBe(10_000);
      const niceness = readdirSync(`/proc/${process.pid}/task`).map((tid) => niceOf(Number(tid)));
      // The worker and the threads its evaluation started run at 10; this thread does not.
      expect(niceness.filter((nice) => nice >= 10).length).toBeGreaterThanOrEqual(1);
      // The main thread (its id is the process's) keeps what it had before the worker started.
      expect(niceOf(process.pid)).toBe(loopBefore);
    } finally {
      await evaluator.close();
    }
  }, 60_000);
});
