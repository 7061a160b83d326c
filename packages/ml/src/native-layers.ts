import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel, LayerVariable } from '@tensorflow/tfjs-layers';
import { type Conv2DShape, conv2DInfo } from './conv-info.js';
import type { NativeTrainingAddon } from './native-addon.js';

/**
 * The layers of the native training loop (native-training.ts): for each Keras class name a
 * planner that reads the layer's config and either returns a step (its sizes, and how to
 * create what runs it) or says why the layer cannot run natively. Adding a layer is adding
 * a planner and a NativeLayer here; the loop itself does not change.
 */

/** A trainable weight as the loop holds it: the model's variable, the loop's copy, its gradient. */
export interface NativeWeight {
  variable: LayerVariable;
  values: Float32Array;
  gradient: Float32Array;
}

/** Where a forward pass is in the round: what a dropout mask is drawn from. */
export interface ForwardContext {
  /** The round's seed (TrainOptions.seed). */
  seed: number;
  /** The step within the round, 0-based, counting across epochs. */
  step: number;
  /**
   * Inference (native-evaluation.ts), as Keras predicts: Dropout is the identity and
   * BatchNormalization normalizes with its moving statistics and leaves them alone. No
   * backward pass follows such a forward pass. Unset: training, as the loop trains.
   */
  inference?: boolean;
}

/** One layer as the loop runs it, on buffers it allocated for the round's largest batch. */
export interface NativeLayer {
  /** Its trainable weights, whose gradients backward() writes. */
  readonly weights: readonly NativeWeight[];
  forward(size: number, input: Float32Array, output: Float32Array, context: ForwardContext): void;
  /**
   * The gradients of its weights, and of its input into inputGradient (null for the first
   * layer: nothing needs it), with the weights before the step. outputGradient may be
   * overwritten.
   */
  backward(
    size: number,
    input: Float32Array,
    output: Float32Array,
    outputGradient: Float32Array,
    inputGradient: Float32Array | null,
  ): void;
  /**
   * Where the step is plain SGD (no proximal term, which needs the gradient and the weight
   * apart): backward, with the step w -= learningRate * gradient taken on the layer's weights
   * here, after its input gradient, instead of their gradients written for the loop to step.
   * Safe because the layers before it never read its weights. The dense layers fold it into
   * their weight-gradient product.
   */
  backwardAndStep?(
    size: number,
    input: Float32Array,
    output: Float32Array,
    outputGradient: Float32Array,
    inputGradient: Float32Array | null,
    learningRate: number,
  ): void;
  /** Writes what the layer keeps besides its trainable weights into the model (moving statistics). */
  finish?(): void;
}

/** What a step's NativeLayer is created with. */
export interface LayerRuntime {
  addon: NativeTrainingAddon;
  maxBatch: number;
  /** 'im2col' forces the OpenBLAS convolution where oneDNN is built in (tests). */
  engine: 'auto' | 'im2col';
  /** The step's index in the plan (dropout masks differ per layer). */
  index: number;
}

/** A planned layer: its name, sizes per example, and how to create what runs it. */
export interface PlanStep {
  name: string;
  className: string;
  inSize: number;
  outSize: number;
  create(runtime: LayerRuntime): NativeLayer;
}

export type Layer = LayersModel['layers'][number];

/** The keys of tfjs layer configs read here (getConfig() returns them loosely typed). */
export interface LayerConfig {
  activation?: unknown;
  dataFormat?: unknown;
  dilationRate?: unknown;
  filters?: unknown;
  kernelSize?: unknown;
  padding?: unknown;
  poolSize?: unknown;
  strides?: unknown;
  useBias?: unknown;
  [key: string]: unknown;
}

/** What a planner gets: the layer, its config and shapes, and whether it is the model's last. */
export interface PlanInput {
  layer: Layer;
  config: LayerConfig;
  /** Per example (no batch dimension), every dimension fixed. */
  inShape: number[];
  outShape: number[];
  inSize: number;
  outSize: number;
  last: boolean;
  /** The activation the loss takes the last layer's output through (folded into the loss). */
  lastActivation: 'softmax' | 'sigmoid' | 'linear';
}

/** A step, or the reason the layer cannot run natively; null: the layer needs no step (Flatten). */
export type Planned = PlanStep | string | null;

export function pair(value: unknown): [number, number] | undefined {
  if (typeof value === 'number') return [value, value];
  if (Array.isArray(value) && value.length === 2 && value.every((v) => typeof v === 'number')) {
    return [value[0] as number, value[1] as number];
  }
  return undefined;
}

/**
 * The `layer` a dropout mask is drawn for: plan step `index`'s dropout number `sub` (a
 * Dropout layer has one, sub 0; a TransformerBlock two, 1 and 2), distinct across a plan.
 */
export function dropoutStream(index: number, sub: number): number {
  return index * 4 + sub;
}

/** A copy the loop owns of a variable (dataSync may hand out the backend's own array). */
export function copyOf(variable: LayerVariable): Float32Array {
  return (variable.read().dataSync() as Float32Array).slice();
}

export function trainable(variable: LayerVariable): NativeWeight {
  const values = copyOf(variable);
  return { variable, values, gradient: new Float32Array(values.length) };
}

export function writeVariable(variable: LayerVariable, values: Float32Array): void {
  const tensor = tf.tensor(values, variable.shape as number[], 'float32');
  variable.write(tensor);
  tensor.dispose();
}

/**
 * The layer's weights by name, in the order given, or why not: frozen, or other weights
 * than those (a trainable variable's name ends in '/<name>', as tfjs-layers names them).
 */
export function namedWeights(
  layer: Layer,
  trainableNames: readonly string[],
  nonTrainableNames: readonly string[] = [],
): LayerVariable[] | string {
  if (!layer.trainable) return 'it is frozen';
  const pick = (variables: LayerVariable[], names: readonly string[]) =>
    variables.length === names.length &&
    names.every((name, i) => variables[i]?.originalName.endsWith(`/${name}`));
  if (
    !pick(layer.trainableWeights, trainableNames) ||
    !pick(layer.nonTrainableWeights, nonTrainableNames)
  ) {
    return `it has other weights than ${[...trainableNames, ...nonTrainableNames].join(', ')}`;
  }
  return [...layer.trainableWeights, ...layer.nonTrainableWeights];
}

function planDense(input: PlanInput): Planned {
  const { layer, config, inShape, inSize, outSize, last, lastActivation } = input;
  const variables = namedWeights(layer, ['kernel', 'bias']);
  if (typeof variables === 'string') return config.useBias === false ? 'it has no bias' : variables;
  const activation = config.activation;
  if (last ? activation !== lastActivation : activation !== 'relu' && activation !== 'linear') {
    return `activation ${String(activation)}${last ? ` (the last layer must be ${lastActivation} for the loss)` : ''}`;
  }
  const inputDim = inShape[inShape.length - 1] ?? 0;
  const units = outSize / (inSize / inputDim);
  // Dense on a sequence applies to its last axis: one row per position.
  const rowsPerExample = inSize / inputDim;
  const relu = activation === 'relu';
  const [kernelVariable, biasVariable] = variables as [LayerVariable, LayerVariable];
  return {
    name: layer.name,
    className: 'Dense',
    inSize,
    outSize,
    create({ addon }) {
      const kernel = trainable(kernelVariable);
      const bias = trainable(biasVariable);
      const sizes = new Int32Array(3);
      // dx = dz w^T from the kernel before any write, then dw = alpha x^T dz + beta dw (db alike).
      const propagate = (
        size: number,
        x: Float32Array,
        y: Float32Array,
        dy: Float32Array,
        dx: Float32Array | null,
        dw: Float32Array,
        db: Float32Array,
        alpha: number,
        beta: number,
      ) => {
        if (relu) addon.reluBackward(y, dy);
        sizes.set([size * rowsPerExample, inputDim, units]);
        addon.denseBackward(x, dy, kernel.values, dx, dw, db, sizes, alpha, beta);
      };
      return {
        weights: [kernel, bias],
        forward(size, x, y) {
          sizes.set([size * rowsPerExample, inputDim, units]);
          addon.denseForward(x, kernel.values, bias.values, y, sizes, relu);
        },
        backward(size, x, y, dy, dx) {
          propagate(size, x, y, dy, dx, kernel.gradient, bias.gradient, 1, 0);
        },
        backwardAndStep(size, x, y, dy, dx, learningRate) {
          // The SGD step in the product: w = -lr x^T dz + 1 w, b likewise. The kernel (3136 x
          // 512 in fedavg-cnn) is then read and written once a step, instead of written as a
          // gradient and read twice more by the step.
          propagate(size, x, y, dy, dx, kernel.values, bias.values, -learningRate, 1);
        },
      };
    },
  };
}

function planConv2D(input: PlanInput): Planned {
  const { layer, config, inShape, inSize, outSize } = input;
  const variables = namedWeights(layer, ['kernel', 'bias']);
  if (typeof variables === 'string') return config.useBias === false ? 'it has no bias' : variables;
  const strides = pair(config.strides);
  const kernelSize = pair(config.kernelSize);
  const dilation = pair(config.dilationRate) ?? [1, 1];
  const activation = config.activation;
  if (strides === undefined || kernelSize === undefined) return 'unexpected config';
  if (dilation[0] !== 1 || dilation[1] !== 1) return 'dilation is not 1';
  if (activation !== 'relu' && activation !== 'linear') return `activation ${String(activation)}`;
  const [inHeight = 0, inWidth = 0, inChannels = 0] = inShape;
  const outChannels = config.filters as number;
  const info = conv2DInfo(
    [1, inHeight, inWidth, inChannels] as Conv2DShape,
    [kernelSize[0], kernelSize[1], inChannels, outChannels] as Conv2DShape,
    {
      strides,
      pad: config.padding as 'same' | 'valid',
      dataFormat: 'NHWC',
      dimRoundingMode: undefined,
    },
  );
  const { top, left, bottom, right } = info.padInfo;
  const sizes = Int32Array.of(
    inHeight,
    inWidth,
    inChannels,
    kernelSize[0],
    kernelSize[1],
    outChannels,
    info.outHeight,
    info.outWidth,
    strides[0],
    strides[1],
    top,
    left,
    bottom,
    right,
  );
  const relu = activation === 'relu';
  const [kernelVariable, biasVariable] = variables as [LayerVariable, LayerVariable];
  return {
    name: layer.name,
    className: 'Conv2D',
    inSize,
    outSize,
    create({ addon, engine }) {
      const kernel = trainable(kernelVariable);
      const bias = trainable(biasVariable);
      const conv = addon.convLayerCreate(sizes, relu, engine);
      return {
        weights: [kernel, bias],
        forward(size, x, y) {
          addon.convLayerForward(conv, size, x, kernel.values, bias.values, y);
        },
        backward(size, x, y, dy, dx) {
          if (relu) addon.reluBackward(y, dy);
          addon.convLayerBackward(
            conv,
            size,
            x,
            kernel.values,
            dy,
            dx,
            kernel.gradient,
            bias.gradient,
          );
        },
      };
    },
  };
}

/** Pool sizes as the addon's pool kernels take them; batch is written into [0] per call. */
function poolSizes(input: PlanInput): Int32Array | string {
  const { config, inShape } = input;
  const poolSize = pair(config.poolSize);
  const strides = pair(config.strides) ?? poolSize;
  if (poolSize === undefined || strides === undefined) return 'unexpected config';
  if (config.dataFormat !== undefined && config.dataFormat !== 'channelsLast') {
    return `dataFormat is ${String(config.dataFormat)}`;
  }
  const [inHeight = 0, inWidth = 0, channels = 0] = inShape;
  const info = tf.backend_util.computePool2DInfo(
    [1, inHeight, inWidth, channels],
    poolSize,
    strides,
    1,
    config.padding as 'same' | 'valid',
  );
  return Int32Array.of(
    0,
    inHeight,
    inWidth,
    channels,
    poolSize[0],
    poolSize[1],
    info.outHeight,
    info.outWidth,
    strides[0],
    strides[1],
    info.padInfo.top,
    info.padInfo.left,
  );
}

function planMaxPooling2D(input: PlanInput): Planned {
  const sizes = poolSizes(input);
  if (typeof sizes === 'string') return sizes;
  return {
    name: input.layer.name,
    className: 'MaxPooling2D',
    inSize: input.inSize,
    outSize: input.outSize,
    create({ addon, maxBatch }) {
      const argmax = new Int32Array(maxBatch * input.outSize);
      return {
        weights: [],
        forward(size, x, y) {
          sizes[0] = size;
          addon.maxPoolForward(x, y, argmax.subarray(0, y.length), sizes);
        },
        backward(_size, _x, y, dy, dx) {
          if (dx !== null) addon.maxPoolBackward(dy, argmax.subarray(0, y.length), dx);
        },
      };
    },
  };
}

function planAveragePooling2D(input: PlanInput): Planned {
  // tfjs's average-pool gradient divides by the whole window even where 'same' padding
  // cuts it, unlike its forward pass: only 'valid' pools, where both agree, run here.
  if (input.config.padding !== 'valid') return `padding is ${String(input.config.padding)}`;
  const sizes = poolSizes(input);
  if (typeof sizes === 'string') return sizes;
  return {
    name: input.layer.name,
    className: 'AveragePooling2D',
    inSize: input.inSize,
    outSize: input.outSize,
    create({ addon }) {
      return {
        weights: [],
        forward(size, x, y) {
          sizes[0] = size;
          addon.averagePoolForward(x, y, sizes);
        },
        backward(size, _x, _y, dy, dx) {
          if (dx === null) return;
          sizes[0] = size;
          addon.averagePoolBackward(dy, dx, sizes);
        },
      };
    },
  };
}

/** GlobalAveragePooling1D ([steps, channels]) and 2D ([height, width, channels]): the mean over positions. */
function planGlobalAveragePooling(input: PlanInput): Planned {
  const { config, inSize, outSize } = input;
  if (config.dataFormat !== undefined && config.dataFormat !== 'channelsLast') {
    return `dataFormat is ${String(config.dataFormat)}`;
  }
  const channels = outSize;
  const positions = inSize / channels;
  return {
    name: input.layer.name,
    className: input.layer.getClassName(),
    inSize,
    outSize,
    create({ addon }) {
      const sizes = new Int32Array(3);
      return {
        weights: [],
        forward(size, x, y) {
          sizes.set([size, positions, channels]);
          addon.globalAveragePoolForward(x, y, sizes);
        },
        backward(size, _x, _y, dy, dx) {
          if (dx === null) return;
          sizes.set([size, positions, channels]);
          addon.globalAveragePoolBackward(dy, dx, sizes);
        },
      };
    },
  };
}

function planDropout(input: PlanInput): Planned {
  const { config, inSize } = input;
  const rate = config['rate'];
  if (typeof rate !== 'number' || !(rate >= 0 && rate < 1)) return `rate ${String(rate)}`;
  if (config['noiseShape'] !== undefined && config['noiseShape'] !== null) {
    return 'noiseShape is set';
  }
  return {
    name: input.layer.name,
    className: 'Dropout',
    inSize,
    outSize: inSize,
    create({ addon, maxBatch, index }) {
      const mask = new Uint8Array(maxBatch * inSize);
      return {
        weights: [],
        forward(size, x, y, { seed, step, inference }) {
          if (inference === true) {
            y.set(x);
            return;
          }
          addon.dropoutForward(
            x,
            y,
            mask.subarray(0, size * inSize),
            rate,
            seed,
            dropoutStream(index, 0),
            step,
          );
        },
        backward(size, _x, _y, dy, dx) {
          if (dx !== null) addon.dropoutBackward(dy, mask.subarray(0, size * inSize), dx, rate);
        },
      };
    },
  };
}

/** The config's normalization axis is the last one (Keras' -1, or its index). */
function lastAxis(config: LayerConfig, rank: number): boolean {
  const axis = config['axis'];
  const axes = Array.isArray(axis) ? axis : [axis];
  return axes.length === 1 && (axes[0] === -1 || axes[0] === rank);
}

function centredAndScaled(config: LayerConfig): string | undefined {
  if (config['center'] === false) return 'center is false';
  if (config['scale'] === false) return 'scale is false';
  return undefined;
}

function planLayerNormalization(input: PlanInput): Planned {
  const { layer, config, inShape, inSize } = input;
  if (!lastAxis(config, inShape.length)) return `axis ${JSON.stringify(config['axis'])}`;
  const why = centredAndScaled(config);
  if (why !== undefined) return why;
  const variables = namedWeights(layer, ['gamma', 'beta']);
  if (typeof variables === 'string') return variables;
  const [gammaVariable, betaVariable] = variables as [LayerVariable, LayerVariable];
  const epsilon = config['epsilon'] as number;
  const cols = inShape[inShape.length - 1] ?? 0;
  const rowsPerExample = inSize / cols;
  return {
    name: layer.name,
    className: 'LayerNormalization',
    inSize,
    outSize: inSize,
    create({ addon, maxBatch }) {
      const gamma = trainable(gammaVariable);
      const beta = trainable(betaVariable);
      const normalized = new Float32Array(maxBatch * inSize);
      const inverseStd = new Float32Array(maxBatch * rowsPerExample);
      const sizes = new Int32Array(2);
      const views = (size: number) => {
        sizes.set([size * rowsPerExample, cols]);
        return [
          normalized.subarray(0, size * inSize),
          inverseStd.subarray(0, size * rowsPerExample),
        ] as const;
      };
      return {
        weights: [gamma, beta],
        forward(size, x, y) {
          const [xhat, inverse] = views(size);
          addon.layerNormForward(x, gamma.values, beta.values, y, xhat, inverse, sizes, epsilon);
        },
        backward(size, _x, _y, dy, dx) {
          const [xhat, inverse] = views(size);
          addon.layerNormBackward(
            dy,
            xhat,
            inverse,
            gamma.values,
            dx,
            gamma.gradient,
            beta.gradient,
            sizes,
          );
        },
      };
    },
  };
}

function planBatchNormalization(input: PlanInput): Planned {
  const { layer, config, inShape, inSize } = input;
  if (!lastAxis(config, inShape.length)) return `axis ${JSON.stringify(config['axis'])}`;
  const why = centredAndScaled(config);
  if (why !== undefined) return why;
  const variables = namedWeights(layer, ['gamma', 'beta'], ['moving_mean', 'moving_variance']);
  if (typeof variables === 'string') return variables;
  const [gammaVariable, betaVariable, meanVariable, varianceVariable] = variables as [
    LayerVariable,
    LayerVariable,
    LayerVariable,
    LayerVariable,
  ];
  const epsilon = config['epsilon'] as number;
  const momentum = config['momentum'] as number;
  const channels = inShape[inShape.length - 1] ?? 0;
  const rowsPerExample = inSize / channels;
  return {
    name: layer.name,
    className: 'BatchNormalization',
    inSize,
    outSize: inSize,
    create({ addon, maxBatch }) {
      const gamma = trainable(gammaVariable);
      const beta = trainable(betaVariable);
      // Non-trainable: moved by every training forward pass, written back in finish().
      const movingMean = copyOf(meanVariable);
      const movingVariance = copyOf(varianceVariable);
      const normalized = new Float32Array(maxBatch * inSize);
      const inverseStd = new Float32Array(channels);
      const sizes = new Int32Array(2);
      return {
        weights: [gamma, beta],
        forward(size, x, y, { inference }) {
          if (inference === true) {
            batchNormInference(
              x,
              y,
              gamma.values,
              beta.values,
              movingMean,
              movingVariance,
              epsilon,
            );
            return;
          }
          sizes.set([size * rowsPerExample, channels]);
          addon.batchNormForward(
            x,
            gamma.values,
            beta.values,
            movingMean,
            movingVariance,
            y,
            normalized.subarray(0, size * inSize),
            inverseStd,
            sizes,
            epsilon,
            momentum,
          );
        },
        backward(size, _x, _y, dy, dx) {
          sizes.set([size * rowsPerExample, channels]);
          addon.batchNormBackward(
            dy,
            normalized.subarray(0, size * inSize),
            inverseStd,
            gamma.values,
            dx,
            gamma.gradient,
            beta.gradient,
            sizes,
          );
        },
        finish() {
          writeVariable(meanVariable, movingMean);
          writeVariable(varianceVariable, movingVariance);
        },
      };
    },
  };
}

/**
 * BatchNormalization at inference, per channel (the last axis): y = (x - movingMean) /
 * sqrt(movingVariance + epsilon) * gamma + beta, what tfjs-layers computes when not training.
 * In TypeScript: one multiply-add per value, small next to the layers around it.
 */
function batchNormInference(
  x: Float32Array,
  y: Float32Array,
  gamma: Float32Array,
  beta: Float32Array,
  movingMean: Float32Array,
  movingVariance: Float32Array,
  epsilon: number,
): void {
  const channels = gamma.length;
  const scale = new Float32Array(channels);
  const shift = new Float32Array(channels);
  for (let c = 0; c < channels; c++) {
    const factor = (gamma[c] as number) / Math.sqrt((movingVariance[c] as number) + epsilon);
    scale[c] = factor;
    shift[c] = (beta[c] as number) - (movingMean[c] as number) * factor;
  }
  for (let i = 0; i < x.length; i += channels) {
    for (let c = 0; c < channels; c++) {
      y[i + c] = (x[i + c] as number) * (scale[c] as number) + (shift[c] as number);
    }
  }
}

function planEmbedding(input: PlanInput): Planned {
  const { layer, config, inSize, outSize } = input;
  if (config['maskZero'] === true) return 'maskZero is set';
  const variables = namedWeights(layer, ['embeddings']);
  if (typeof variables === 'string') return variables;
  const [tableVariable] = variables as [LayerVariable];
  const vocabulary = config['inputDim'] as number;
  const dim = config['outputDim'] as number;
  return {
    name: layer.name,
    className: 'Embedding',
    inSize,
    outSize,
    create({ addon }) {
      const table = trainable(tableVariable);
      const sizes = new Int32Array(3);
      return {
        weights: [table],
        forward(size, ids, y) {
          sizes.set([size * inSize, vocabulary, dim]);
          addon.embeddingForward(ids, table.values, y, sizes);
        },
        backward(size, ids, _y, dy, dx) {
          sizes.set([size * inSize, vocabulary, dim]);
          addon.embeddingBackward(ids, dy, table.gradient, sizes);
          // Token ids are not differentiable (tfjs casts them to int32): no gradient flows back.
          dx?.fill(0);
        },
      };
    },
  };
}

const noStep = (): Planned => null;

/** The planners of tfjs-layers' classes, by the class name getClassName() returns. */
export const BASE_PLANNERS: Readonly<Record<string, (input: PlanInput) => Planned>> = {
  InputLayer: noStep,
  // NHWC activations are row-major: flattening moves nothing.
  Flatten: noStep,
  Dense: planDense,
  Conv2D: planConv2D,
  MaxPooling2D: planMaxPooling2D,
  AveragePooling2D: planAveragePooling2D,
  GlobalAveragePooling1D: planGlobalAveragePooling,
  GlobalAveragePooling2D: planGlobalAveragePooling,
  Dropout: planDropout,
  LayerNormalization: planLayerNormalization,
  BatchNormalization: planBatchNormalization,
  Embedding: planEmbedding,
};

/** Config keys that add a term or a projection the loop does not compute. */
export const UNSUPPORTED_OPTIONS = [
  'kernelRegularizer',
  'biasRegularizer',
  'activityRegularizer',
  'kernelConstraint',
  'biasConstraint',
  'embeddingsRegularizer',
  'embeddingsConstraint',
  'gammaRegularizer',
  'betaRegularizer',
  'gammaConstraint',
  'betaConstraint',
] as const;

/** Written back into the model's variables: what finish() does for trainable weights. */
export function writeWeights(weights: readonly NativeWeight[]): void {
  for (const { variable, values } of weights) writeVariable(variable, values);
}
