import { BUILTIN_MNIST_TASKS, BUILTIN_TASK_FOR_MODEL, builtinTask } from '@tessera/tasks';
import { describe, expect, it } from 'vitest';
import { createModel, MODEL_NAMES } from './models.js';
import { buildTaskModel } from './task-model.js';
import { getFlatWeights } from './weights.js';
import { zooTopology } from './zoo-topology.js';

/** The first index where the two differ bitwise (or their lengths do), -1 where none does. */
function firstDifference(a: Float32Array, b: Float32Array): number {
  const bitsA = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const bitsB = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < Math.max(a.length, b.length); i++) if (bitsA[i] !== bitsB[i]) return i;
  return -1;
}

// The four zoo models must stay bit-identical when built from their built-in tasks: replay
// of recorded runs rebuilds the initial model from the run's seed.
describe('built-in tasks are the zoo', () => {
  it('stores exactly the topology createModel writes (regenerate: packages/ml/scripts)', () => {
    expect(BUILTIN_MNIST_TASKS.map((task) => task.model.topology)).toEqual(
      MODEL_NAMES.map((name) => zooTopology(name)),
    );
  });

  it.each(MODEL_NAMES.map((name) => [name, BUILTIN_TASK_FOR_MODEL[name] as string]))(
    '%s: the task %s builds the same parameters and, seeded, the same initial weights',
    async (modelName, taskName) => {
      for (const seed of [-3, 2 ** 40]) {
        const zoo = createModel(modelName, { seed });
        const built = await buildTaskModel(builtinTask(taskName), { seed });
        try {
          expect(built.countParams()).toBe(zoo.countParams());
          expect(built.inputs[0]?.shape).toEqual(zoo.inputs[0]?.shape);
          // Bit for bit; the index of the first difference, not a diff of a million floats.
          expect(firstDifference(getFlatWeights(built), getFlatWeights(zoo))).toBe(-1);
        } finally {
          zoo.dispose();
          built.dispose();
        }
      }
    },
  );
});
