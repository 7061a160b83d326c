import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel, LayerVariable } from '@tensorflow/tfjs-layers';
import { type Conv2DShape, conv2DInfo } from './conv-info.js';

/**
 * The native training loop: for a Sequential model made of the layers below, one SGD step
 * is about twenty calls into @tessera/ml-native (oneDNN convolutions, OpenBLAS products,
 * a few loops in C++) on buffers allocated once per round, in place of the few hundred
 * tfjs operations, tape entries and tensor allocations of `optimizer.minimize`. It
 * computes what the tfjs loop computes (softmax cross-entropy with Keras' clip, plain SGD)
 * up to float rounding; native-training.test.ts checks it against tfjs's gradients.
 *
 * Supported: Conv2D (channels last, dilation 1, ReLU or linear, with bias), MaxPooling2D
 * (channels last), Flatten, Dense (ReLU or linear, with bias) and a last Dense with
 * softmax. A model with anything else (or a regulariser, a constraint, a frozen layer)
 * trains in the tfjs loop, and planNativeTraining says why.
 */

declare const nativeConvLayerBrand: unique symbol;
/** A convolution layer made by the addon (its oneDNN primitives live in C++). */
export type NativeConvLayer = { readonly [nativeConvLayerBrand]: true };

/** The part of @tessera/ml-native's addon the native training loop calls (training.cc). */
export interface NativeTrainingAddon {
  /**
   * sizes: inHeight, inWidth, inChannels, filterHeight, filterWidth, outChannels,
   * outHeight, outWidth, strideHeight, strideWidth, padTop, padLeft, padBottom, padRight.
   * engine 'im2col' forces the OpenBLAS convolution where oneDNN is built in (tests).
   */
  convLayerCreate(sizes: Int32Array, relu: boolean, engine: 'auto' | 'im2col'): NativeConvLayer;
  convLayerForward(
    layer: NativeConvLayer,
    batch: number,
    x: Float32Array,
    filter: Float32Array,
    bias: Float32Array,
    y: Float32Array,
  ): void;
  /** dy: the gradient after the ReLU's (reluBackward); dx null for a first layer. */
  convLayerBackward(
    layer: NativeConvLayer,
    batch: number,
    x: Float32Array,
    filter: Float32Array,
    dy: Float32Array,
    dx: Float32Array | null,
    dw: Float32Array,
    db: Float32Array,
  ): void;
  /** y[m, n] = relu?(x[m, k] w[k, n] + b); sizes = [m, k, n]. */
  denseForward(
    x: Float32Array,
    w: Float32Array,
    b: Float32Array,
    y: Float32Array,
    sizes: Int32Array,
    relu: boolean,
  ): void;
  /**
   * dx = dz w^T (unless null), then dw = alpha x^T dz + beta dw and db = alpha
   * sum_rows(dz) + beta db; dw = w, db = b, alpha = -lr, beta = 1 is the SGD step.
   */
  denseBackward(
    x: Float32Array,
    dz: Float32Array,
    w: Float32Array,
    dx: Float32Array | null,
    dw: Float32Array,
    db: Float32Array,
    sizes: Int32Array,
    alpha: number,
    beta: number,
  ): void;
  /** dy = 0 where y (a ReLU's output) is 0, in place. */
  reluBackward(y: Float32Array, dy: Float32Array): void;
  /** sizes as maxPoolGrad's; argmax = index in x of each window's first maximum. */
  maxPoolForward(x: Float32Array, y: Float32Array, argmax: Int32Array, sizes: Int32Array): void;
  maxPoolBackward(dy: Float32Array, argmax: Int32Array, dx: Float32Array): void;
  /** out = [mean loss, correct]; dlogits = gradient of the mean loss; sizes = [batch, classes]. */
  softmaxCrossEntropy(
    logits: Float32Array,
    labels: Uint8Array,
    dlogits: Float32Array,
    sizes: Int32Array,
    out: Float64Array,
  ): void;
  /** w = w + (-learningRate) g. */
  sgdUpdate(w: Float32Array, g: Float32Array, learningRate: number): void;
  /** The library convolutions run on, e.g. 'oneDNN 2.6.3' or 'im2col + OpenBLAS'. */
  convEngine(): string;
}

interface ConvStep {
  kind: 'conv';
  name: string;
  /** inHeight, inWidth, inChannels, ... as convLayerCreate takes them. */
  sizes: Int32Array;
  relu: boolean;
  inSize: number;
  outSize: number;
  weights: [LayerVariable, LayerVariable];
}

interface PoolStep {
  kind: 'maxPool';
  name: string;
  /** Per example: batch is written into sizes[0] before each call. */
  sizes: Int32Array;
  inSize: number;
  outSize: number;
}

interface DenseStep {
  kind: 'dense';
  name: string;
  inSize: number;
  outSize: number;
  activation: 'relu' | 'linear' | 'softmax';
  weights: [LayerVariable, LayerVariable];
}

type PlanStep = ConvStep | PoolStep | DenseStep;

/** A Sequential model as the native loop runs it (Flatten needs no step: NHWC is row-major). */
export interface NativePlan {
  steps: PlanStep[];
  featureSize: number;
  numClasses: number;
}

export type NativePlanResult = { ok: true; plan: NativePlan } | { ok: false; reason: string };

/** The keys of tfjs layer configs read here (getConfig() returns them loosely typed). */
interface LayerConfig {
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

function pair(value: unknown): [number, number] | undefined {
  if (typeof value === 'number') return [value, value];
  if (Array.isArray(value) && value.length === 2 && value.every((v) => typeof v === 'number')) {
    return [value[0] as number, value[1] as number];
  }
  return undefined;
}

function product(shape: readonly (number | null)[]): number {
  return shape.reduce<number>((total, dimension) => total * (dimension ?? Number.NaN), 1);
}

/** The reason a layer's configuration keeps it out of the native loop, if any. */
function unsupportedOptions(config: LayerConfig): string | undefined {
  for (const key of [
    'kernelRegularizer',
    'biasRegularizer',
    'activityRegularizer',
    'kernelConstraint',
    'biasConstraint',
  ]) {
    if (config[key] !== undefined && config[key] !== null) return `${key} is set`;
  }
  if (config.useBias === false) return 'it has no bias';
  if (config.dataFormat !== undefined && config.dataFormat !== 'channelsLast') {
    return `dataFormat is ${String(config.dataFormat)}`;
  }
  return undefined;
}

function weightsOf(
  layer: LayersModel['layers'][number],
): [LayerVariable, LayerVariable] | undefined {
  const weights = layer.trainableWeights;
  if (!layer.trainable || weights.length !== 2 || layer.nonTrainableWeights.length > 0) {
    return undefined;
  }
  return [weights[0] as LayerVariable, weights[1] as LayerVariable];
}

/** How the native loop would train `model`, or why it cannot. */
export function planNativeTraining(model: LayersModel): NativePlanResult {
  if (model.getClassName() !== 'Sequential') {
    return { ok: false, reason: `'${model.name}' is not a Sequential model` };
  }
  const steps: PlanStep[] = [];
  const layers = model.layers;
  for (const [index, layer] of layers.entries()) {
    const className = layer.getClassName();
    const config = layer.getConfig() as LayerConfig;
    const fail = (why: string): NativePlanResult => ({
      ok: false,
      reason: `layer '${layer.name}' (${className}): ${why}`,
    });
    const input = layer.input;
    if (Array.isArray(input)) return fail('it has several inputs');
    const inShape = input.shape.slice(1);
    const outShape = (layer.outputShape as (number | null)[]).slice(1);
    if (inShape.some((d) => d === null) || outShape.some((d) => d === null)) {
      return fail('its shape is not fixed');
    }
    const inSize = product(inShape);
    const outSize = product(outShape);
    const unsupported = unsupportedOptions(config);
    if (unsupported !== undefined && className !== 'Flatten') return fail(unsupported);
    const last = index === layers.length - 1;

    switch (className) {
      case 'InputLayer':
      case 'Flatten':
        continue;
      case 'Conv2D': {
        const weights = weightsOf(layer);
        const strides = pair(config.strides);
        const kernelSize = pair(config.kernelSize);
        const dilation = pair(config.dilationRate) ?? [1, 1];
        const activation = config.activation;
        if (weights === undefined)
          return fail('it is frozen or has other weights than kernel and bias');
        if (strides === undefined || kernelSize === undefined) return fail('unexpected config');
        if (dilation[0] !== 1 || dilation[1] !== 1) return fail('dilation is not 1');
        if (activation !== 'relu' && activation !== 'linear') {
          return fail(`activation ${String(activation)}`);
        }
        const [inHeight = 0, inWidth = 0, inChannels = 0] = inShape as number[];
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
        steps.push({
          kind: 'conv',
          name: layer.name,
          sizes: Int32Array.of(
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
          ),
          relu: activation === 'relu',
          inSize,
          outSize,
          weights,
        });
        continue;
      }
      case 'MaxPooling2D': {
        const poolSize = pair(config.poolSize);
        const strides = pair(config.strides) ?? poolSize;
        if (poolSize === undefined || strides === undefined) return fail('unexpected config');
        const [inHeight = 0, inWidth = 0, channels = 0] = inShape as number[];
        const info = tf.backend_util.computePool2DInfo(
          [1, inHeight, inWidth, channels],
          poolSize,
          strides,
          1,
          config.padding as 'same' | 'valid',
        );
        steps.push({
          kind: 'maxPool',
          name: layer.name,
          sizes: Int32Array.of(
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
          ),
          inSize,
          outSize,
        });
        continue;
      }
      case 'Dense': {
        const weights = weightsOf(layer);
        const activation = config.activation;
        if (weights === undefined)
          return fail('it is frozen or has other weights than kernel and bias');
        if (inShape.length !== 1) return fail('its input is not flat');
        if (last ? activation !== 'softmax' : activation !== 'relu' && activation !== 'linear') {
          return fail(
            `activation ${String(activation)}${last ? ' (the last layer must be softmax)' : ''}`,
          );
        }
        steps.push({
          kind: 'dense',
          name: layer.name,
          inSize,
          outSize,
          activation: activation as DenseStep['activation'],
          weights,
        });
        continue;
      }
      default:
        return fail('not supported by the native loop');
    }
  }
  const lastStep = steps[steps.length - 1];
  if (lastStep?.kind !== 'dense' || lastStep.activation !== 'softmax') {
    return { ok: false, reason: `'${model.name}' does not end in a softmax Dense layer` };
  }
  const inputShape = (model.inputs[0]?.shape ?? []).slice(1) as (number | null)[];
  return {
    ok: true,
    plan: { steps, featureSize: product(inputShape), numClasses: lastStep.outSize },
  };
}

/**
 * Buffers every layer has: its output for a whole batch (the next layer's input) and the
 * gradient with respect to its input (none for the first layer: nothing needs it).
 */
interface Buffers {
  output: Float32Array;
  inputGradient: Float32Array | null;
}

/** The loop's copy of a layer's weights, trained in place. */
interface Weights {
  kernel: Float32Array;
  bias: Float32Array;
}

// `kind` repeats step.kind at the top, where TypeScript narrows the union on it.
type ConvState = Buffers &
  Weights & {
    kind: 'conv';
    step: ConvStep;
    conv: NativeConvLayer;
    kernelGradient: Float32Array;
    biasGradient: Float32Array;
  };
type PoolState = Buffers & { kind: 'maxPool'; step: PoolStep; argmax: Int32Array };
type DenseState = Buffers & Weights & { kind: 'dense'; step: DenseStep };
type LayerState = ConvState | PoolState | DenseState;

/** A copy the loop owns of a layer's kernel and bias (dataSync may hand out the backend's own array). */
function copyWeights([kernel, bias]: [LayerVariable, LayerVariable]): Weights {
  return {
    kernel: (kernel.read().dataSync() as Float32Array).slice(),
    bias: (bias.read().dataSync() as Float32Array).slice(),
  };
}

/**
 * FedProx's proximal term for the native loop: μ, and the anchor (the round's global model)
 * of each trainable variable, as train.ts checked it.
 */
export interface NativeProximal {
  mu: number;
  anchors: ReadonlyMap<LayerVariable, Float32Array>;
}

/** A layer's part of the proximal term: its anchors and a buffer for μ (w - anchor). */
interface LayerProximal {
  kernel: Float32Array;
  bias: Float32Array;
  kernelTerm: Float32Array;
  biasTerm: Float32Array;
}

/** term = μ (w - anchor), from the weights before the layer's step. */
function proximalTerm(mu: number, w: Float32Array, anchor: Float32Array, term: Float32Array) {
  for (let i = 0; i < w.length; i++) term[i] = mu * ((w[i] as number) - (anchor[i] as number));
}

/**
 * One round of native SGD on one model: copies the model's weights in on create, trains
 * with step(), and writes them back with finish(). Buffers are sized for maxBatch once.
 * With `proximal` (FedProx) every step adds μ (w - anchor) to each weight's gradient, as the
 * tfjs loop does.
 */
export class NativeTrainer {
  private readonly layers: LayerState[];
  private readonly lossOut = new Float64Array(2);
  private readonly logitGradient: Float32Array;
  private readonly denseSizes = new Int32Array(3);
  private readonly lossSizes = new Int32Array(2);
  private readonly mu: number;
  /** Per layer with weights, where the proximal term applies (empty without it). */
  private readonly proximal = new Map<LayerState, LayerProximal>();

  constructor(
    private readonly addon: NativeTrainingAddon,
    private readonly plan: NativePlan,
    maxBatch: number,
    engine: 'auto' | 'im2col' = 'auto',
    proximal?: NativeProximal,
    /** SCAFFOLD's c − c_i per trainable variable, as train.ts checked it (see correctStep). */
    private readonly correction?: ReadonlyMap<LayerVariable, Float32Array>,
  ) {
    this.mu = proximal?.mu ?? 0;
    this.layers = plan.steps.map((step, index): LayerState => {
      const buffers: Buffers = {
        output: new Float32Array(maxBatch * step.outSize),
        inputGradient: index === 0 ? null : new Float32Array(maxBatch * step.inSize),
      };
      if (step.kind === 'maxPool') {
        return {
          kind: 'maxPool',
          step,
          ...buffers,
          argmax: new Int32Array(maxBatch * step.outSize),
        };
      }
      const weights = copyWeights(step.weights);
      if (step.kind === 'dense') return { kind: 'dense', step, ...buffers, ...weights };
      return {
        kind: 'conv',
        step,
        ...buffers,
        ...weights,
        conv: addon.convLayerCreate(step.sizes, step.relu, engine),
        kernelGradient: new Float32Array(weights.kernel.length),
        biasGradient: new Float32Array(weights.bias.length),
      };
    });
    this.logitGradient = new Float32Array(maxBatch * plan.numClasses);
    if (proximal !== undefined && proximal.mu > 0) {
      for (const layer of this.layers) {
        if (layer.kind === 'maxPool') continue;
        const [kernelVariable, biasVariable] = layer.step.weights;
        const kernel = proximal.anchors.get(kernelVariable);
        const bias = proximal.anchors.get(biasVariable);
        if (kernel?.length !== layer.kernel.length || bias?.length !== layer.bias.length) {
          throw new Error(
            `native loop: no proximal anchor of the size of layer '${layer.step.name}'`,
          );
        }
        this.proximal.set(layer, {
          kernel,
          bias,
          kernelTerm: new Float32Array(kernel.length),
          biasTerm: new Float32Array(bias.length),
        });
      }
    }
  }

  /**
   * One SGD step on `size` examples: features row-major (size x featureSize), labels
   * class indices. The batch's mean loss and its correct predictions (before the step).
   */
  step(
    features: Float32Array,
    labels: Uint8Array,
    size: number,
    learningRate: number,
  ): { loss: number; correct: number } {
    const batchFeatures = features.subarray(0, size * this.plan.featureSize);
    let input = batchFeatures;
    for (const layer of this.layers) {
      const output = layer.output.subarray(0, size * layer.step.outSize);
      this.forward(layer, size, input, output);
      input = output;
    }

    this.lossSizes.set([size, this.plan.numClasses]);
    let outputGradient = this.logitGradient.subarray(0, size * this.plan.numClasses);
    this.addon.softmaxCrossEntropy(input, labels, outputGradient, this.lossSizes, this.lossOut);

    for (let index = this.layers.length - 1; index >= 0; index--) {
      const layer = this.layers[index] as LayerState;
      const { inSize } = layer.step;
      const layerInput =
        index === 0
          ? batchFeatures
          : (this.layers[index - 1] as LayerState).output.subarray(0, size * inSize);
      const inputGradient = layer.inputGradient?.subarray(0, size * inSize) ?? null;
      this.backward(layer, size, layerInput, outputGradient, inputGradient, learningRate);
      if (inputGradient === null) break;
      outputGradient = inputGradient;
    }
    return { loss: this.lossOut[0] ?? Number.NaN, correct: this.lossOut[1] ?? 0 };
  }

  private forward(
    layer: LayerState,
    size: number,
    input: Float32Array,
    output: Float32Array,
  ): void {
    const { addon } = this;
    switch (layer.kind) {
      case 'conv': {
        addon.convLayerForward(layer.conv, size, input, layer.kernel, layer.bias, output);
        return;
      }
      case 'maxPool': {
        layer.step.sizes[0] = size;
        addon.maxPoolForward(
          input,
          output,
          layer.argmax.subarray(0, output.length),
          layer.step.sizes,
        );
        return;
      }
      case 'dense': {
        this.denseSizes.set([size, layer.step.inSize, layer.step.outSize]);
        addon.denseForward(
          input,
          layer.kernel,
          layer.bias,
          output,
          this.denseSizes,
          layer.step.activation === 'relu',
        );
        return;
      }
    }
  }

  /**
   * The layer's part of the backward pass and its SGD step. outputGradient (the gradient
   * of its output) is overwritten; inputGradient (null for the first layer) receives the
   * gradient of its input, computed with the weights before the step.
   */
  private backward(
    layer: LayerState,
    size: number,
    input: Float32Array,
    outputGradient: Float32Array,
    inputGradient: Float32Array | null,
    learningRate: number,
  ): void {
    const { addon } = this;
    const output = layer.output.subarray(0, size * layer.step.outSize);
    switch (layer.kind) {
      case 'conv': {
        if (layer.step.relu) addon.reluBackward(output, outputGradient);
        addon.convLayerBackward(
          layer.conv,
          size,
          input,
          layer.kernel,
          outputGradient,
          inputGradient,
          layer.kernelGradient,
          layer.biasGradient,
        );
        const proximal = this.proximal.get(layer);
        if (proximal !== undefined) {
          // The gradients are buffers here: add μ (w - anchor) before the step.
          proximalTerm(this.mu, layer.kernel, proximal.kernel, proximal.kernelTerm);
          proximalTerm(this.mu, layer.bias, proximal.bias, proximal.biasTerm);
          addon.sgdUpdate(layer.kernelGradient, proximal.kernelTerm, -1);
          addon.sgdUpdate(layer.biasGradient, proximal.biasTerm, -1);
        }
        addon.sgdUpdate(layer.kernel, layer.kernelGradient, learningRate);
        addon.sgdUpdate(layer.bias, layer.biasGradient, learningRate);
        this.correctStep(layer, learningRate);
        return;
      }
      case 'maxPool': {
        if (inputGradient === null) return;
        addon.maxPoolBackward(
          outputGradient,
          layer.argmax.subarray(0, output.length),
          inputGradient,
        );
        return;
      }
      case 'dense': {
        if (layer.step.activation === 'relu') addon.reluBackward(output, outputGradient);
        this.denseSizes.set([size, layer.step.inSize, layer.step.outSize]);
        // The data gradient goes straight into the weights (below), so μ (w - anchor) is taken
        // from the weights before it and stepped after: w - lr g - lr μ (w - anchor).
        const proximal = this.proximal.get(layer);
        if (proximal !== undefined) {
          proximalTerm(this.mu, layer.kernel, proximal.kernel, proximal.kernelTerm);
          proximalTerm(this.mu, layer.bias, proximal.bias, proximal.biasTerm);
        }
        // The gradient is accumulated into the weights themselves: the SGD step.
        addon.denseBackward(
          input,
          outputGradient,
          layer.kernel,
          inputGradient,
          layer.kernel,
          layer.bias,
          this.denseSizes,
          -learningRate,
          1,
        );
        if (proximal !== undefined) {
          addon.sgdUpdate(layer.kernel, proximal.kernelTerm, learningRate);
          addon.sgdUpdate(layer.bias, proximal.biasTerm, learningRate);
        }
        this.correctStep(layer, learningRate);
        return;
      }
    }
  }

  /**
   * SCAFFOLD: w ← w − lr (c − c_i) after the layer's data step, so the step is
   * w − lr (g − c_i + c). The correction does not depend on w, so taking it after the data
   * step is the same step (up to float rounding) as adding it to the gradient first.
   */
  private correctStep(layer: ConvState | DenseState, learningRate: number): void {
    if (this.correction === undefined) return;
    const [kernelVariable, biasVariable] = layer.step.weights;
    const kernel = this.correction.get(kernelVariable);
    const bias = this.correction.get(biasVariable);
    if (kernel !== undefined) this.addon.sgdUpdate(layer.kernel, kernel, learningRate);
    if (bias !== undefined) this.addon.sgdUpdate(layer.bias, bias, learningRate);
  }

  /** Writes the trained weights into the model's variables. */
  finish(): void {
    for (const layer of this.layers) {
      if (layer.kind === 'maxPool') continue;
      const { kernel, bias } = layer;
      const [kernelVariable, biasVariable] = layer.step.weights;
      for (const [variable, values] of [
        [kernelVariable, kernel],
        [biasVariable, bias],
      ] as const) {
        const tensor = tf.tensor(values, variable.shape as number[], 'float32');
        variable.write(tensor);
        tensor.dispose();
      }
    }
  }
}
