// Where a native training step of fedavg-cnn spends its time: every call the loop makes into
// @tessera/ml-native timed one by one (a wrapper around each addon function), over 2,000 random
// examples at batch 10 and 50 on one thread, after 20 warm-up steps. The README's "How close the
// CNN is to the core's arithmetic" quotes a run. Not part of the tests.
//   OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE node --import tsx --conditions=@tessera/source bench/native-step-profile.ts
import { createModel, initBackend, NativeTrainer, planNativeTraining } from '@tessera/ml';
import { installedOpenblasAddon } from '../packages/ml/src/openblas-kernels.js';

const info = await initBackend('openblas', { threads: 1 });
console.log(info.detail);
const addon = installedOpenblasAddon() as unknown as Record<string, unknown>;
const times = new Map<string, { ms: number; calls: number }>();
const timed: Record<string, unknown> = {};
for (const name of Object.getOwnPropertyNames(addon)) {
  const value = addon[name];
  timed[name] =
    typeof value !== 'function'
      ? value
      : (...args: unknown[]) => {
          const start = performance.now();
          const result = (value as (...a: unknown[]) => unknown).apply(addon, args);
          const entry = times.get(name) ?? { ms: 0, calls: 0 };
          entry.ms += performance.now() - start;
          entry.calls++;
          times.set(name, entry);
          return result;
        };
}

const EXAMPLES = 2000;
for (const batch of [10, 50]) {
  const model = createModel('fedavg-cnn', { seed: 1 });
  const planned = planNativeTraining(model);
  if (!planned.ok) throw new Error(planned.reason);
  const trainer = new NativeTrainer(timed as never, planned.plan, batch);
  const x = Float32Array.from({ length: batch * 784 }, () => Math.random());
  const y = Int32Array.from({ length: batch }, (_, i) => i % 10);
  for (let i = 0; i < 20; i++) trainer.step(x, y, batch, 0.05);
  times.clear();
  const steps = EXAMPLES / batch;
  const start = performance.now();
  for (let i = 0; i < steps; i++) trainer.step(x, y, batch, 0.05);
  const total = performance.now() - start;
  trainer.finish();
  const perExample = (ms: number) => ((ms / EXAMPLES) * 1000).toFixed(1);
  console.log(
    `\nB=${batch}: ${perExample(total)} µs per example (${Math.round((EXAMPLES / total) * 1000)} examples/s)`,
  );
  let inCalls = 0;
  for (const [name, { ms, calls }] of [...times].sort((a, b) => b[1].ms - a[1].ms)) {
    inCalls += ms;
    console.log(
      `  ${name.padEnd(22)} ${perExample(ms).padStart(7)} µs  ${((100 * ms) / total).toFixed(1).padStart(5)}%  ${calls / steps} calls a step`,
    );
  }
  console.log(
    `  ${'(between the calls)'.padEnd(22)} ${perExample(total - inCalls).padStart(7)} µs`,
  );
  model.dispose();
}
