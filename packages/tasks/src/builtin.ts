import { ErrorCode, TesseraError } from '@tessera/protocol';
import { BUILTIN_TOPOLOGIES } from './builtin-topologies.js';
import type { TaskDefinition } from './schema.js';

/**
 * The built-in task that each zoo model (@tessera/ml's MODEL_NAMES) trains. Task names say
 * what is learned and with which net (`mnist-cnn`); the model names stay what old runs
 * recorded, so a run that names a model can be mapped to its task.
 */
export const BUILTIN_TASK_FOR_MODEL: Readonly<Record<string, string>> = {
  'fedavg-2nn': 'mnist-2nn',
  'fedavg-cnn': 'mnist-cnn',
  mlp: 'mnist-mlp',
  cnn: 'mnist-small-cnn',
};

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

/** The four MNIST tasks, one per zoo model, in MODEL_NAMES order. */
export const BUILTIN_TASKS: readonly TaskDefinition[] =
  Object.keys(BUILTIN_TASK_FOR_MODEL).map(mnistTask);

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
