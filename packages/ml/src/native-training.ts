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
  convLayerEngine(layer: NativeConvLayer, batch: number): string;
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

interface StepState {
  step: PlanStep;
  /** This layer's output for a whole batch (the next layer's input). */
  output: Float32Array;
  /** The gradient with respect to this layer's input (none for the first layer). */
  inputGradient: Float32Array | null;
  kernel?: Float32Array;
  bias?: Float32Array;
  kernelGradient?: Float32Array;
  biasGradient?: Float32Array;
  conv?: NativeConvLayer;
  argmax?: Int32Array;
}

/**
 * One round of native SGD on one model: copies the model's weights in on create, trains
 * with step(), and writes them back with finish(). Buffers are sized for maxBatch once.
 */
export class NativeTrainer {
  private readonly states: StepState[];
  private readonly lossOut = new Float64Array(2);
  private readonly logitGradient: Float32Array;
  private readonly denseSizes = new Int32Array(3);
  private readonly lossSizes = new Int32Array(2);

  constructor(
    private readonly addon: NativeTrainingAddon,
    private readonly plan: NativePlan,
    maxBatch: number,
    engine: 'auto' | 'im2col' = 'auto',
  ) {
    this.states = plan.steps.map((step, index) => {
      const state: StepState = {
        step,
        output: new Float32Array(maxBatch * step.outSize),
        inputGradient: index === 0 ? null : new Float32Array(maxBatch * step.inSize),
      };
      if (step.kind === 'maxPool') state.argmax = new Int32Array(maxBatch * step.outSize);
      if (step.kind !== 'maxPool') {
        const [kernel, bias] = step.weights;
        // slice: a copy the loop owns (dataSync may hand out the backend's own array).
        state.kernel = (kernel.read().dataSync() as Float32Array).slice();
        state.bias = (bias.read().dataSync() as Float32Array).slice();
      }
      if (step.kind === 'conv') {
        state.conv = addon.convLayerCreate(step.sizes, step.relu, engine);
        state.kernelGradient = new Float32Array(state.kernel?.length ?? 0);
        state.biasGradient = new Float32Array(state.bias?.length ?? 0);
      }
      return state;
    });
    this.logitGradient = new Float32Array(maxBatch * plan.numClasses);
  }

  /** What runs the convolutions, e.g. 'oneDNN brgconv:avx512_core' ('' without any). */
  convolutionEngine(batch: number): string {
    const conv = this.states.find((state) => state.conv !== undefined)?.conv;
    return conv === undefined ? '' : this.addon.convLayerEngine(conv, batch);
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
    const { addon, states } = this;
    let input = features.subarray(0, size * this.plan.featureSize);
    for (const state of states) {
      const { step } = state;
      const output = state.output.subarray(0, size * step.outSize);
      if (step.kind === 'conv') {
        addon.convLayerForward(
          state.conv as NativeConvLayer,
          size,
          input,
          state.kernel as Float32Array,
          state.bias as Float32Array,
          output,
        );
      } else if (step.kind === 'maxPool') {
        step.sizes[0] = size;
        addon.maxPoolForward(
          input,
          output,
          (state.argmax as Int32Array).subarray(0, output.length),
          step.sizes,
        );
      } else {
        this.denseSizes.set([size, step.inSize, step.outSize]);
        addon.denseForward(
          input,
          state.kernel as Float32Array,
          state.bias as Float32Array,
          output,
          this.denseSizes,
          step.activation === 'relu',
        );
      }
      input = output;
    }

    this.lossSizes.set([size, this.plan.numClasses]);
    let outputGradient = this.logitGradient.subarray(0, size * this.plan.numClasses);
    addon.softmaxCrossEntropy(input, labels, outputGradient, this.lossSizes, this.lossOut);
    const loss = this.lossOut[0] ?? Number.NaN;
    const correct = this.lossOut[1] ?? 0;

    for (let index = states.length - 1; index >= 0; index--) {
      const state = states[index] as StepState;
      const { step } = state;
      const layerInput =
        index === 0
          ? features.subarray(0, size * this.plan.featureSize)
          : (states[index - 1] as StepState).output.subarray(0, size * step.inSize);
      const inputGradient = state.inputGradient?.subarray(0, size * step.inSize) ?? null;
      const output = state.output.subarray(0, size * step.outSize);
      if (step.kind === 'conv') {
        if (step.relu) addon.reluBackward(output, outputGradient);
        const kernel = state.kernel as Float32Array;
        const bias = state.bias as Float32Array;
        const kernelGradient = state.kernelGradient as Float32Array;
        const biasGradient = state.biasGradient as Float32Array;
        addon.convLayerBackward(
          state.conv as NativeConvLayer,
          size,
          layerInput,
          kernel,
          outputGradient,
          inputGradient,
          kernelGradient,
          biasGradient,
        );
        addon.sgdUpdate(kernel, kernelGradient, learningRate);
        addon.sgdUpdate(bias, biasGradient, learningRate);
      } else if (step.kind === 'maxPool') {
        if (inputGradient !== null) {
          addon.maxPoolBackward(
            outputGradient,
            (state.argmax as Int32Array).subarray(0, output.length),
            inputGradient,
          );
        }
      } else {
        if (step.activation === 'relu') addon.reluBackward(output, outputGradient);
        const kernel = state.kernel as Float32Array;
        const bias = state.bias as Float32Array;
        this.denseSizes.set([size, step.inSize, step.outSize]);
        // The gradient is accumulated into the weights themselves: the SGD step.
        addon.denseBackward(
          layerInput,
          outputGradient,
          kernel,
          inputGradient,
          kernel,
          bias,
          this.denseSizes,
          -learningRate,
          1,
        );
      }
      if (inputGradient === null) break;
      outputGradient = inputGradient;
    }
    return { loss, correct };
  }

  /** Writes the trained weights into the model's variables. */
  finish(): void {
    for (const state of this.states) {
      if (state.step.kind === 'maxPool') continue;
      const [kernel, bias] = state.step.weights;
      for (const [variable, values] of [
        [kernel, state.kernel],
        [bias, state.bias],
      ] as const) {
        const tensor = tf.tensor(values as Float32Array, variable.shape as number[], 'float32');
        variable.write(tensor);
        tensor.dispose();
      }
    }
  }
}
