import {
  loadPenguins,
  loadSpamAssassin,
  PENGUINS_INPUT,
  PENGUINS_OUTPUT,
  SPAM_ASSASSIN_OUTPUT,
  selectTexts,
  tabularExamples,
  textExamples,
  withPreprocessing,
} from '@tessera/data';
import { BUILTIN_DATASET_TASK_PARAM_COUNTS, builtinTask } from '@tessera/tasks';
import { describe, expect, it } from 'vitest';
import { initBackend } from './backend.js';
import {
  penguinsPreprocessing,
  penguinsTopology,
  SPAM_TEXT,
  spamTopology,
  spamVocabulary,
} from './dataset-tasks.js';
import { planNativeTraining } from './native-training.js';
import { buildTaskModel, checkTaskModel } from './task-model.js';
import { evaluateModel, taskObjective, trainLocal } from './train.js';
import { getFlatWeights } from './weights.js';

// The built-in penguins and spam tasks are generated (packages/ml/scripts/
// write-builtin-topologies.ts): these fail until the stored file is what the data and the
// layers make now.
describe('built-in tasks on shipped datasets', () => {
  it("penguins: the data's columns, with the training split's constants, and its model", async () => {
    const task = builtinTask('penguins');
    const constants = penguinsPreprocessing();
    expect(task.input).toEqual(withPreprocessing(PENGUINS_INPUT, constants));
    expect(task.output).toEqual(PENGUINS_OUTPUT);
    expect(task.model.topology).toEqual(penguinsTopology(constants));
    const summary = await checkTaskModel(task, { maxParams: 10_000 });
    expect(summary).toEqual({ paramCount: 211, inputShape: [9], outputUnits: 3 });
    expect(BUILTIN_DATASET_TASK_PARAM_COUNTS['penguins']).toBe(summary.paramCount);
  });

  it("spam: the training split's vocabulary and a one-block Transformer under 200k parameters", async () => {
    const task = builtinTask('spam');
    expect(task.input).toEqual({
      kind: 'text',
      maxLength: SPAM_TEXT.maxLength,
      tokenizer: { kind: 'word', lowercase: true, vocabulary: spamVocabulary() },
    });
    expect(task.output).toEqual(SPAM_ASSASSIN_OUTPUT);
    const vocabularyLength = SPAM_TEXT.vocabularySize;
    expect(task.model.topology).toEqual(spamTopology(vocabularyLength));
    const summary = await checkTaskModel(task, { maxParams: 200_000 });
    expect(summary.inputShape).toEqual([SPAM_TEXT.maxLength]);
    expect(summary.outputUnits).toBe(1);
    expect(BUILTIN_DATASET_TASK_PARAM_COUNTS['spam']).toBe(summary.paramCount);
    // (vocabulary + 2) x 32 + positions x 32, the block, the output unit.
    const d = SPAM_TEXT.embedDim;
    const ff = SPAM_TEXT.feedForwardDim;
    expect(summary.paramCount).toBe(
      (vocabularyLength + 2) * d +
        SPAM_TEXT.maxLength * d +
        (4 * (d * d + d) + 2 * 2 * d + (d * ff + ff) + (ff * d + d)) +
        (d + 1),
    );
  });

  it('penguins: central training reaches 95 % on the test split', async () => {
    const task = builtinTask('penguins');
    if (task.input.kind !== 'tabular') throw new Error('penguins is tabular');
    const { train, test } = loadPenguins();
    const model = await buildTaskModel(task, { seed: 1 });
    try {
      const examples = tabularExamples(train, task.input);
      const objective = taskObjective(task);
      await trainLocal(
        model,
        { x: examples.x, y: examples.y, count: examples.count },
        { epochs: 15, batchSize: 8, learningRate: 0.1, seed: 1, objective, loop: 'tfjs' },
      );
      const held = tabularExamples(test, task.input);
      const result = await evaluateModel(
        model,
        { x: held.x, y: held.y, count: held.count },
        undefined,
        objective,
      );
      expect(result.metrics['accuracy']).toBeGreaterThanOrEqual(0.95);
    } finally {
      model.dispose();
    }
  }, 120_000);

  it('spam: trains through trainLocal on wasm (the tfjs loop)', async () => {
    // WebAssembly, as a Node client without the native addon trains: tfjs's JavaScript
    // backend takes minutes over these batched attention products.
    await initBackend('wasm');
    const task = builtinTask('spam');
    if (task.input.kind !== 'text') throw new Error('spam is text');
    const { train } = loadSpamAssassin();
    // Every 150th message: both classes (the split keeps the package's order, ham first).
    const some = selectTexts(
      train,
      Array.from({ length: 32 }, (_, i) => i * 150),
    );
    expect(new Set(some.labels)).toEqual(new Set([0, 1]));
    const examples = textExamples(some, task.input);
    const model = await buildTaskModel(task, { seed: 2 });
    try {
      // The native loop plans it (native-layers.test.ts trains it there); on wasm, tfjs trains.
      expect(planNativeTraining(model, task.loss)).toMatchObject({ ok: true });
      const before = getFlatWeights(model);
      const result = await trainLocal(
        model,
        { x: examples.x, y: examples.y, count: examples.count },
        { epochs: 1, batchSize: 16, learningRate: 0.05, seed: 1, objective: taskObjective(task) },
      );
      expect(result.loop).toBe('tfjs');
      expect(Number.isFinite(result.loss)).toBe(true);
      expect(Object.keys(result.metrics).sort()).toEqual(['accuracy', 'auc', 'loss']);
      const after = getFlatWeights(model);
      expect(after.length).toBe(before.length);
      expect(after.some((value, i) => value !== before[i])).toBe(true);
    } finally {
      model.dispose();
    }
  }, 120_000);
});
