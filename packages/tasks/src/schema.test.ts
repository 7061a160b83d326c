import { ErrorCode, type JsonValue } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import {
  BUILTIN_MNIST_TASKS,
  BUILTIN_TASK_FOR_MODEL,
  BUILTIN_TASKS,
  builtinTask,
} from './builtin.js';
import { featureWidth, minimumFeatureWidth, outputUnits, taskNeedsStatistics } from './geometry.js';
import { parseTaskDefinition, type TaskDefinition } from './schema.js';

/** A Dense(16, relu) - Dense(3, softmax) topology on 6 features, as tfjs writes it (abridged). */
const TOPOLOGY: { [key: string]: JsonValue } = {
  class_name: 'Sequential',
  config: {
    name: 'tiny',
    layers: [
      {
        class_name: 'Dense',
        config: { units: 16, activation: 'relu', batch_input_shape: [null, 6] },
      },
      { class_name: 'Dense', config: { units: 3, activation: 'softmax' } },
    ],
  },
};

/** 3 numeric columns and one categorical with 3 categories: 6 features, 3 classes. */
function tabularTask(): TaskDefinition {
  return {
    schemaVersion: 1,
    name: 'iris-like',
    description: 'flowers',
    input: {
      kind: 'tabular',
      label: 'species',
      columns: [
        { name: 'length', type: 'numeric', standardize: 'federated' },
        { name: 'width', type: 'numeric', standardize: { mean: 3, std: 0.5 } },
        { name: 'height', type: 'numeric' },
        { name: 'soil', type: 'categorical', categories: ['clay', 'sand', 'loam'] },
      ],
    },
    output: { kind: 'multiclass', classes: ['setosa', 'versicolor', 'virginica'] },
    loss: 'softmax-cross-entropy',
    metrics: ['accuracy'],
    model: { topology: TOPOLOGY },
  };
}

function binaryTextTask(): TaskDefinition {
  return {
    schemaVersion: 1,
    name: 'tickets',
    input: {
      kind: 'text',
      maxLength: 32,
      tokenizer: { kind: 'word', lowercase: true, vocabulary: ['refund', 'late', 'thanks'] },
    },
    output: { kind: 'binary', classes: ['fine', 'urgent'] },
    loss: 'sigmoid-binary-cross-entropy',
    metrics: ['accuracy', 'auc'],
    model: { topology: TOPOLOGY },
  };
}

function regressionTask(): TaskDefinition {
  return {
    schemaVersion: 1,
    name: 'house-prices',
    input: { kind: 'tabular', label: 'price', columns: [{ name: 'rooms', type: 'numeric' }] },
    output: { kind: 'regression' },
    loss: 'mean-squared-error',
    metrics: ['mae', 'rmse'],
    model: { topology: TOPOLOGY, weights: { sha256: 'a'.repeat(64), byteLength: 1024 } },
  };
}

// biome-ignore lint/suspicious/noExplicitAny: the edits write invalid values on purpose.
type Editable = any;

/** The task with one change made by `edit` (on a deep copy). */
function edited(base: () => TaskDefinition, edit: (task: Editable) => void): unknown {
  const task = structuredClone(base());
  edit(task);
  return task;
}

describe('parseTaskDefinition', () => {
  it('accepts the built-in tasks, a tabular, a binary text and a regression task unchanged', () => {
    for (const task of [...BUILTIN_TASKS, tabularTask(), binaryTextTask(), regressionTask()]) {
      expect(parseTaskDefinition(structuredClone(task))).toEqual(task);
    }
  });

  it.each([
    [
      'a wrong schema version',
      (t: Editable) => (t.schemaVersion = 2),
      'schemaVersion',
      /expected 1/i,
    ],
    ['a name with capitals', (t: Editable) => (t.name = 'Iris'), 'name', /lowercase letters/],
    ['a name of 65 characters', (t: Editable) => (t.name = 'a'.repeat(65)), 'name', /1-64/],
    ['an unknown key', (t: Editable) => (t.owner = 'me'), '(body)', /unrecognized key/i],
    [
      'a NUL in the description',
      (t: Editable) => (t.description = 'a\u0000b'),
      'description',
      /NUL/,
    ],
    ['an unknown input kind', (t: Editable) => (t.input.kind = 'audio'), 'input.kind', /./],
    ['no columns', (t: Editable) => (t.input.columns = []), 'input.columns', /too small|>=1/i],
    [
      'a column declared twice',
      (t: Editable) => (t.input.columns[2].name = 'length'),
      'input.columns.2.name',
      /'length' is declared twice/,
    ],
    [
      'the label among the features',
      (t: Editable) => (t.input.label = 'height'),
      'input.columns.2.name',
      /'height' is the label column/,
    ],
    [
      'a category listed twice',
      (t: Editable) => t.input.columns[3].categories.push('sand'),
      'input.columns.3.categories.3',
      /'sand' is listed twice/,
    ],
    [
      'a zero standard deviation',
      (t: Editable) => (t.input.columns[1].standardize.std = 0),
      'input.columns.1.standardize.std',
      /./,
    ],
    [
      'an unknown column type',
      (t: Editable) => (t.input.columns[0].type = 'date'),
      'input.columns.0.type',
      /./,
    ],
    ['one class', (t: Editable) => (t.output.classes = ['a']), 'output.classes', /too small|>=2/i],
    [
      'a class listed twice',
      (t: Editable) => (t.output.classes[2] = 'setosa'),
      'output.classes.2',
      /'setosa' is listed twice/,
    ],
    [
      'a loss that does not fit the output',
      (t: Editable) => (t.loss = 'mean-squared-error'),
      'loss',
      /multiclass output is trained with softmax-cross-entropy/,
    ],
    ['an unknown metric', (t: Editable) => (t.metrics = ['f1']), 'metrics.0', /./],
    [
      'auc on a multiclass task',
      (t: Editable) => (t.metrics = ['accuracy', 'auc']),
      'metrics.1',
      /auc is for binary outputs, not multiclass/,
    ],
    [
      'a metric listed twice',
      (t: Editable) => (t.metrics = ['accuracy', 'accuracy']),
      'metrics.1',
      /listed twice/,
    ],
    [
      'a topology that is not one',
      (t: Editable) => (t.model.topology = { layers: [] }),
      'model.topology',
      /must be a layers topology/,
    ],
    [
      'an infinite number in the topology',
      (t: Editable) => (t.model.topology.config.layers[0].config.units = Number.POSITIVE_INFINITY),
      // zod names the JSON value union that failed, not the number inside it.
      'model.topology.config',
      /./,
    ],
  ])('refuses %s with its field', (_what, edit, field, message) => {
    expectRefusal(edited(tabularTask, edit), field, message);
  });

  it.each([
    [
      'a vocabulary entry twice',
      (t: Editable) => t.input.tokenizer.vocabulary.push('late'),
      'input.tokenizer.vocabulary.3',
      /'late' is in the vocabulary twice/,
    ],
    [
      'a capitalised entry for a lowercasing tokenizer',
      (t: Editable) => (t.input.tokenizer.vocabulary[0] = 'Refund'),
      'input.tokenizer.vocabulary.0',
      /lowercases the text, so 'Refund' never occurs/,
    ],
    [
      'a word entry with a space',
      (t: Editable) => (t.input.tokenizer.vocabulary[1] = 'too late'),
      'input.tokenizer.vocabulary.1',
      /splits at whitespace/,
    ],
    [
      'a char entry of two characters',
      (t: Editable) => (t.input.tokenizer.kind = 'char'),
      'input.tokenizer.vocabulary.0',
      /single characters, got 'refund'/,
    ],
    ['a zero maxLength', (t: Editable) => (t.input.maxLength = 0), 'input.maxLength', /./],
    [
      'mae on a binary task',
      (t: Editable) => (t.metrics = ['mae']),
      'metrics.0',
      /mae is for regression outputs, not binary/,
    ],
    [
      'softmax cross-entropy on a binary output',
      (t: Editable) => (t.loss = 'softmax-cross-entropy'),
      'loss',
      /binary output is trained with sigmoid-binary-cross-entropy/,
    ],
    [
      'three binary classes',
      (t: Editable) => t.output.classes.push('maybe'),
      'output.classes',
      /./,
    ],
    [
      'the same class twice in a binary output',
      (t: Editable) => (t.output.classes = ['x', 'x']),
      'output.classes.1',
      /'x' is listed twice/,
    ],
  ])('refuses %s (text, binary) with its field', (_what, edit, field, message) => {
    expectRefusal(edited(binaryTextTask, edit), field, message);
  });

  it.each([
    [
      'accuracy on a regression',
      (t: Editable) => (t.metrics = ['accuracy']),
      'metrics.0',
      /accuracy is for multiclass or binary outputs, not regression/,
    ],
    [
      'an upper-case weights hash',
      (t: Editable) => (t.model.weights.sha256 = 'A'.repeat(64)),
      'model.weights.sha256',
      /64 lowercase hex/,
    ],
    [
      'weights of a byte length that is not float32',
      (t: Editable) => (t.model.weights.byteLength = 1023),
      'model.weights.byteLength',
      /multiple of 4/,
    ],
  ])('refuses %s with its field', (_what, edit, field, message) => {
    expectRefusal(edited(regressionTask, edit), field, message);
  });

  it('refuses an image whose value range is empty', () => {
    expectRefusal(
      edited(
        () => structuredClone(BUILTIN_TASKS[0] as TaskDefinition),
        (t) => (t.input.valueRange = { min: 1, max: 1 }),
      ),
      'input.valueRange.max',
      /greater than min/,
    );
    expectRefusal(
      edited(
        () => structuredClone(BUILTIN_TASKS[0] as TaskDefinition),
        (t) => (t.input.channels = 2),
      ),
      'input.channels',
      /./,
    );
  });

  it('lists every issue, not only the first', () => {
    const task = edited(tabularTask, (t) => {
      t.loss = 'mean-squared-error';
      t.output.classes[1] = 'setosa';
    });
    expect(() => parseTaskDefinition(task)).toThrow(
      expect.objectContaining({
        data: expect.objectContaining({
          issues: expect.arrayContaining([
            expect.objectContaining({ field: 'loss' }),
            expect.objectContaining({ field: 'output.classes.1' }),
          ]),
        }),
      }),
    );
  });
});

function expectRefusal(task: unknown, field: string, message: RegExp): void {
  let thrown: unknown;
  try {
    parseTaskDefinition(task);
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toMatchObject({ code: ErrorCode.INVALID_ARGUMENT, data: { field } });
  expect((thrown as Error).message).toMatch(message);
}

describe('task geometry', () => {
  it('counts features: numeric 1, categorical one per category, image h*w*c, text maxLength', () => {
    expect(featureWidth(tabularTask().input)).toBe(6);
    expect(featureWidth(binaryTextTask().input)).toBe(32);
    expect(featureWidth(builtinTask('mnist-cnn').input)).toBe(784);
    expect(
      featureWidth({
        kind: 'image',
        height: 96,
        width: 64,
        channels: 3,
        valueRange: { min: 0, max: 255 },
      }),
    ).toBe(96 * 64 * 3);
  });

  it('has no width while categories are still to be collected, and a least width', () => {
    const task = edited(tabularTask, (t) => {
      delete t.input.columns[3].categories;
      t.input.columns.push({ name: 'region', type: 'categorical', categories: ['n', 's'] });
    }) as TaskDefinition;
    expect(featureWidth(task.input)).toBeUndefined();
    expect(minimumFeatureWidth(task.input)).toBe(3 + 1 + 2);
  });

  it('counts output units: classes, or one', () => {
    expect(outputUnits(tabularTask().output)).toBe(3);
    expect(outputUnits(binaryTextTask().output)).toBe(1);
    expect(outputUnits(regressionTask().output)).toBe(1);
  });

  it('says which columns need the federated statistics round', () => {
    expect(taskNeedsStatistics(tabularTask())).toEqual({ standardize: ['length'], categories: [] });
    const noCategories = edited(tabularTask, (t) => {
      delete t.input.columns[3].categories;
      t.input.columns[0].standardize = false;
    }) as TaskDefinition;
    expect(taskNeedsStatistics(noCategories)).toEqual({ standardize: [], categories: ['soil'] });
    expect(taskNeedsStatistics(regressionTask())).toBeNull();
    expect(taskNeedsStatistics(binaryTextTask())).toBeNull();
  });
});

describe('built-in tasks', () => {
  it('has one MNIST task per zoo model, then penguins and spam, found by name', () => {
    expect(BUILTIN_TASKS.map((task) => task.name)).toEqual([
      'mnist-2nn',
      'mnist-cnn',
      'mnist-mlp',
      'mnist-small-cnn',
      'penguins',
      'spam',
    ]);
    expect(Object.values(BUILTIN_TASK_FOR_MODEL)).toEqual(
      BUILTIN_MNIST_TASKS.map((task) => task.name),
    );
    expect(builtinTask('penguins').input.kind).toBe('tabular');
    expect(builtinTask('spam').output).toEqual({ kind: 'binary', classes: ['ham', 'spam'] });
    expect(builtinTask('mnist-cnn').output).toEqual({
      kind: 'multiclass',
      classes: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'],
    });
    expect(() => builtinTask('mnist')).toThrow(
      expect.objectContaining({
        code: ErrorCode.NOT_FOUND,
        message: expect.stringMatching(/mnist-2nn, mnist-cnn/),
      }),
    );
  });
});
