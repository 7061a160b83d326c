import { ErrorCode, TesseraError } from '@tessera/protocol';
// Registers 'cpu', so models can be built (e.g. a coordinator's initial weights) before,
// or without, initBackend.
import '@tensorflow/tfjs-backend-cpu';
import * as tfl from '@tensorflow/tfjs-layers';

export const MODEL_NAMES = ['fedavg-2nn', 'fedavg-cnn', 'mlp', 'cnn'] as const;
export type ModelName = (typeof MODEL_NAMES)[number];

export interface ModelSpec {
  name: ModelName;
  /** Shape of one example as the model takes it (without the batch dimension). */
  inputShape: number[];
  /** Numbers per example in a flat feature vector (28 x 28 pixels). */
  featureSize: 784;
  numClasses: 10;
  /** Trainable parameters, i.e. the length of the flat weight vector. */
  paramCount: number;
  description: string;
}

const IMAGE_SHAPE = [28, 28, 1];
const FLAT_SHAPE = [784];

const SPECS: Record<ModelName, Omit<ModelSpec, 'name' | 'featureSize' | 'numClasses'>> = {
  'fedavg-2nn': {
    inputShape: FLAT_SHAPE,
    paramCount: 199_210,
    description:
      'McMahan et al. 2017 "2NN": 784-200-200-10 fully connected, ReLU, softmax (199,210 parameters)',
  },
  'fedavg-cnn': {
    inputShape: IMAGE_SHAPE,
    paramCount: 1_663_370,
    description:
      'McMahan et al. 2017 CNN: 5x5 conv 32 (same), 2x2 max-pool, 5x5 conv 64 (same), 2x2 max-pool, dense 512 ReLU, dense 10 softmax (1,663,370 parameters)',
  },
  mlp: {
    inputShape: FLAT_SHAPE,
    paramCount: 218_058,
    description: 'Small MLP: 784-256-64-10 fully connected, ReLU, softmax (218,058 parameters)',
  },
  cnn: {
    inputShape: IMAGE_SHAPE,
    paramCount: 225_034,
    description:
      'Small CNN: 3x3 conv 32, 2x2 max-pool, 3x3 conv 64, 2x2 max-pool (valid padding, ReLU), dense 128 ReLU, dense 10 softmax (225,034 parameters)',
  },
};

export function isModelName(value: unknown): value is ModelName {
  return typeof value === 'string' && (MODEL_NAMES as readonly string[]).includes(value);
}

function assertModelName(name: string, where: string): asserts name is ModelName {
  if (!isModelName(name)) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `${where}: unknown model '${name}'; valid models: ${MODEL_NAMES.join(', ')}`,
    );
  }
}

export function modelSpec(name: string): ModelSpec {
  assertModelName(name, 'modelSpec');
  const spec = SPECS[name];
  return {
    name,
    inputShape: [...spec.inputShape],
    featureSize: 784,
    numClasses: 10,
    paramCount: spec.paramCount,
    description: spec.description,
  };
}

export interface CreateModelOptions {
  /** Seeds the weight initialisers: the same seed gives the same initial weights. */
  seed: number;
}

/**
 * Builds a model of the zoo with Glorot-uniform kernels and zero biases, seeded layer by
 * layer. Each layer gets its own seed derived from `seed`, so that two layers of one
 * shape do not start identical.
 */
export function createModel(name: string, options: CreateModelOptions): tfl.LayersModel {
  assertModelName(name, 'createModel');
  const { seed } = options;
  if (!Number.isSafeInteger(seed) || Math.abs(seed) > 2 ** 48) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `createModel: seed must be an integer with |seed| <= 2^48, got ${String(seed)}`,
    );
  }
  let layerIndex = 0;
  // Up to 16 layers per model: seed * 16 + index keeps every (seed, layer) pair distinct.
  const seeded = () => ({
    kernelInitializer: tfl.initializers.glorotUniform({ seed: seed * 16 + layerIndex++ }),
    biasInitializer: 'zeros' as const,
  });
  const dense = (units: number, activation: 'relu' | 'softmax') =>
    tfl.layers.dense({ units, activation, ...seeded() });

  switch (name) {
    case 'fedavg-2nn':
      return tfl.sequential({
        name: 'fedavg_2nn',
        layers: [
          tfl.layers.dense({ inputShape: FLAT_SHAPE, units: 200, activation: 'relu', ...seeded() }),
          dense(200, 'relu'),
          dense(10, 'softmax'),
        ],
      });
    case 'mlp':
      return tfl.sequential({
        name: 'mlp',
        layers: [
          tfl.layers.dense({ inputShape: FLAT_SHAPE, units: 256, activation: 'relu', ...seeded() }),
          dense(64, 'relu'),
          dense(10, 'softmax'),
        ],
      });
    case 'fedavg-cnn':
      return tfl.sequential({
        name: 'fedavg_cnn',
        layers: [
          tfl.layers.conv2d({
            inputShape: IMAGE_SHAPE,
            filters: 32,
            kernelSize: 5,
            padding: 'same',
            activation: 'relu',
            ...seeded(),
          }),
          tfl.layers.maxPooling2d({ poolSize: 2, strides: 2 }),
          tfl.layers.conv2d({
            filters: 64,
            kernelSize: 5,
            padding: 'same',
            activation: 'relu',
            ...seeded(),
          }),
          tfl.layers.maxPooling2d({ poolSize: 2, strides: 2 }),
          tfl.layers.flatten(),
          dense(512, 'relu'),
          dense(10, 'softmax'),
        ],
      });
    case 'cnn':
      return tfl.sequential({
        name: 'cnn',
        layers: [
          tfl.layers.conv2d({
            inputShape: IMAGE_SHAPE,
            filters: 32,
            kernelSize: 3,
            activation: 'relu',
            ...seeded(),
          }),
          tfl.layers.maxPooling2d({ poolSize: 2, strides: 2 }),
          tfl.layers.conv2d({ filters: 64, kernelSize: 3, activation: 'relu', ...seeded() }),
          tfl.layers.maxPooling2d({ poolSize: 2, strides: 2 }),
          tfl.layers.flatten(),
          dense(128, 'relu'),
          dense(10, 'softmax'),
        ],
      });
  }
}
