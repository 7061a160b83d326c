import type { LayersModel, LayerVariable } from '@tensorflow/tfjs-layers';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { TaskLoss } from '@tessera/tasks';
import type { DenseEngine, NativeTrainingAddon } from './native-addon.js';
import {
  BASE_PLANNERS,
  type ForwardContext,
  type LayerConfig,
  type NativeLayer,
  type NativeWeight,
  type PlanStep,
  UNSUPPORTED_OPTIONS,
  writeWeights,
} from './native-layers.js';
import { TRANSFORMER_PLANNERS } from './native-transformer.js';
import { installedOpenblasAddon } from './openblas-kernels.js';

/** Every layer the loop plans, by the class name getClassName() returns. */
const LAYER_PLANNERS = { ...BASE_PLANNERS, ...TRANSFORMER_PLANNERS };

export type { DenseEngine, NativeConvLayer, NativeTrainingAddon } from './native-addon.js';

/**
 * Which library the native loop's dense products run on from now on, in this process: 'auto'
 * (oneDNN's sgemm where the addon is built with it, else OpenBLAS's) or 'openblas'. For
 * benchmarks that time both in one run, and for a CPU where oneDNN misbehaves. Returns what runs
 * them now (the addon's detail, e.g. 'oneDNN sgemm (avx512_core JIT)'). Needs the openblas
 * backend initialised (initBackend), which installs the addon.
 */
export function setNativeDenseEngine(engine: DenseEngine): string {
  const addon = installedOpenblasAddon() as unknown as NativeTrainingAddon | undefined;
  if (addon === undefined) {
    throw new TesseraError(
      ErrorCode.UNAVAILABLE,
      'the native loop is not installed: initialise the openblas backend first',
    );
  }
  addon.setDenseEngine(engine);
  return addon.denseEngine();
}

/**
 * The native training loop: for a Sequential model made of the layers native-layers.ts
 * plans, one SGD step is a few calls into @tessera/ml-native per layer (oneDNN
 * convolutions, oneDNN or OpenBLAS products, loops in C++) on buffers allocated once per round, in
 * place of the few hundred tfjs operations, tape entries and tensor allocations of
 * `optimizer.minimize`. It computes what the tfjs loop computes (the task's loss with
 * Keras' clip, plain SGD, FedProx's proximal term) up to float rounding;
 * native-training.test.ts and native-layers.test.ts check it against tfjs.
 *
 * Supported layers: Dense (ReLU or linear, with bias; on the last axis of a sequence too),
 * Conv2D (channels last, dilation 1, ReLU or linear, with bias), MaxPooling2D,
 * AveragePooling2D ('valid'), GlobalAveragePooling1D/2D, Flatten, Dropout (seeded masks),
 * LayerNormalization and BatchNormalization (last axis, centred and scaled), Embedding.
 * The last layer is a Dense whose activation the loss takes its output through: softmax
 * (softmax cross-entropy), sigmoid (binary cross-entropy) or linear (mean squared error).
 * A model with anything else (a regulariser, a constraint, a frozen layer) trains in the
 * tfjs loop, and planNativeTraining says which layer stops it and why.
 */

/** A Sequential model as the native loop runs it. */
export interface NativePlan {
  steps: PlanStep[];
  featureSize: number;
  /** Output units: classes for softmax cross-entropy, 1 otherwise. */
  numClasses: number;
  loss: TaskLoss;
}

export type NativePlanResult = { ok: true; plan: NativePlan } | { ok: false; reason: string };

/** The activation of the last Dense layer each loss takes (and the loop folds into it). */
const LAST_ACTIVATION = {
  'softmax-cross-entropy': 'softmax',
  'sigmoid-binary-cross-entropy': 'sigmoid',
  'mean-squared-error': 'linear',
} as const satisfies Record<TaskLoss, string>;

function product(shape: readonly (number | null)[]): number {
  return shape.reduce<number>((total, dimension) => total * (dimension ?? Number.NaN), 1);
}

/** How the native loop would train `model` for `loss`, or which layer stops it and why. */
export function planNativeTraining(
  model: LayersModel,
  loss: TaskLoss = 'softmax-cross-entropy',
): NativePlanResult {
  if (model.getClassName() !== 'Sequential') {
    return { ok: false, reason: `'${model.name}' is not a Sequential model` };
  }
  const lastActivation = LAST_ACTIVATION[loss];
  const steps: PlanStep[] = [];
  const layers = model.layers;
  for (const [index, layer] of layers.entries()) {
    const className = layer.getClassName();
    const config = layer.getConfig() as LayerConfig;
    const fail = (why: string): NativePlanResult => ({
      ok: false,
      reason: `layer '${layer.name}' (${className}): ${why}`,
    });
    const planner = LAYER_PLANNERS[className];
    if (planner === undefined) return fail('not supported by the native loop');
    const input = layer.input;
    if (Array.isArray(input)) return fail('it has several inputs');
    const inShape = input.shape.slice(1);
    const outShape = (layer.outputShape as (number | null)[]).slice(1);
    if (inShape.some((d) => d === null) || outShape.some((d) => d === null)) {
      return fail('its shape is not fixed');
    }
    const option = UNSUPPORTED_OPTIONS.find(
      (key) => config[key] !== undefined && config[key] !== null,
    );
    if (option !== undefined) return fail(`${option} is set`);
    const last = index === layers.length - 1;
    const planned = planner({
      layer,
      config,
      inShape: inShape as number[],
      outShape: outShape as number[],
      inSize: product(inShape),
      outSize: product(outShape),
      last,
      lastActivation,
    });
    if (typeof planned === 'string') return fail(planned);
    if (planned !== null) steps.push(planned);
    if (last && planned?.className !== 'Dense') {
      return fail(
        `the last layer must be a Dense layer with activation ${lastActivation} (${loss})`,
      );
    }
  }
  const lastStep = steps[steps.length - 1];
  if (lastStep === undefined) return { ok: false, reason: `'${model.name}' has no layers` };
  if (loss !== 'softmax-cross-entropy' && lastStep.outSize !== 1) {
    return {
      ok: false,
      reason: `${loss} needs one output unit, '${model.name}' has ${lastStep.outSize}`,
    };
  }
  const inputShape = (model.inputs[0]?.shape ?? []).slice(1) as (number | null)[];
  return {
    ok: true,
    plan: { steps, featureSize: product(inputShape), numClasses: lastStep.outSize, loss },
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

export interface NativeTrainerOptions {
  /** 'im2col' forces the OpenBLAS convolution where oneDNN is built in (tests). */
  engine?: 'auto' | 'im2col';
  /** FedProx: every step adds μ (w - anchor) to each weight's gradient, as the tfjs loop does. */
  proximal?: NativeProximal;
  /** The round's seed: dropout masks are drawn from it, the layer and the step. */
  seed?: number;
  /** SCAFFOLD's c − c_i per trainable variable, as train.ts checked it (see sgdStep). */
  correction?: ReadonlyMap<LayerVariable, Float32Array>;
}

/** A weight and where the SGD step reads its anchor (FedProx) and correction (SCAFFOLD), if anywhere. */
interface SteppedWeight {
  weight: NativeWeight;
  anchor: Float32Array | null;
  correction: Float32Array | null;
}

/** A batch as step() trained it: its mean loss, its statistics as batchStatistics orders them. */
export interface NativeStepResult {
  loss: number;
  /** classification [correct], regression [sum |e|, sum e^2] (losses.ts' batchStatistics). */
  statistics: number[];
  /** Binary cross-entropy: P(positive) per example, valid until the next step. */
  probabilities?: Float32Array;
}

/**
 * The loop's one SGD step on one weight, after the backward pass: the data gradient plus
 * FedProx's μ (w - anchor) where an anchor is set, then w -= learningRate * gradient. Every
 * weight of every layer goes through here and nowhere else. SCAFFOLD's correction c − c_i
 * (constant over the round, independent of w) is then stepped too, w -= learningRate (c − c_i):
 * the step w − lr (g − c_i + c) up to float rounding.
 */
function sgdStep(
  addon: NativeTrainingAddon,
  stepped: SteppedWeight,
  learningRate: number,
  mu: number,
): void {
  addon.sgdStep(stepped.weight.values, stepped.weight.gradient, stepped.anchor, learningRate, mu);
  correctionStep(addon, stepped, learningRate);
}

/** SCAFFOLD's part of the step, w -= learningRate (c − c_i), where a correction is set. */
function correctionStep(
  addon: NativeTrainingAddon,
  { weight, correction }: SteppedWeight,
  learningRate: number,
): void {
  if (correction !== null) addon.sgdUpdate(weight.values, correction, learningRate);
}

/**
 * One round of native SGD on one model: copies the model's weights in on create, trains
 * with step(), and writes them back with finish(). Buffers are sized for maxBatch once.
 */
export class NativeTrainer {
  private readonly layers: NativeLayer[];
  /** Per layer: its output for a batch, and the gradient of its input (null for the first). */
  private readonly outputs: Float32Array[];
  private readonly inputGradients: (Float32Array | null)[];
  /**
   * Per layer, its weights as the step treats them, and whether its backward pass takes the
   * data-gradient part of the step itself (backwardAndStep: plain SGD, never with FedProx's term).
   */
  private readonly stepping: Array<{ weights: SteppedWeight[]; inBackward: boolean }> = [];
  private readonly lossOut = new Float64Array(3);
  private readonly lossSizes = new Int32Array(2);
  private readonly outputGradient: Float32Array;
  private readonly probabilities: Float32Array;
  private readonly mu: number;
  private readonly context: ForwardContext;

  constructor(
    private readonly addon: NativeTrainingAddon,
    private readonly plan: NativePlan,
    maxBatch: number,
    options: NativeTrainerOptions = {},
  ) {
    const { engine = 'auto', proximal } = options;
    this.context = { seed: options.seed ?? 0, step: 0 };
    this.layers = plan.steps.map((step, index) => step.create({ addon, maxBatch, engine, index }));
    this.outputs = plan.steps.map((step) => new Float32Array(maxBatch * step.outSize));
    this.inputGradients = plan.steps.map((step, index) =>
      index === 0 ? null : new Float32Array(maxBatch * step.inSize),
    );
    this.outputGradient = new Float32Array(maxBatch * plan.numClasses);
    this.probabilities = new Float32Array(
      plan.loss === 'sigmoid-binary-cross-entropy' ? maxBatch : 0,
    );
    this.mu = proximal !== undefined && proximal.mu > 0 ? proximal.mu : 0;
    for (const [index, layer] of this.layers.entries()) {
      const stepped: SteppedWeight[] = [];
      this.stepping.push({
        weights: stepped,
        inBackward: this.mu === 0 && layer.backwardAndStep !== undefined,
      });
      for (const weight of layer.weights) {
        let anchor: Float32Array | null = null;
        if (this.mu > 0) {
          anchor = proximal?.anchors.get(weight.variable) ?? null;
          if (anchor?.length !== weight.values.length) {
            throw new Error(
              `native loop: no proximal anchor of the size of layer '${plan.steps[index]?.name}'`,
            );
          }
        }
        const correction = options.correction?.get(weight.variable) ?? null;
        if (options.correction !== undefined && correction?.length !== weight.values.length) {
          throw new Error(
            `native loop: no SCAFFOLD correction of the size of layer '${plan.steps[index]?.name}'`,
          );
        }
        stepped.push({ weight, anchor, correction });
      }
    }
  }

  /**
   * One SGD step on `size` examples: features row-major (size x featureSize); labels class
   * indices (softmax cross-entropy) or targets (0/1 or values, one per example). The batch's
   * mean loss and statistics, from the weights before the step.
   */
  step(
    features: Float32Array,
    labels: Int32Array | Float32Array,
    size: number,
    learningRate: number,
  ): NativeStepResult {
    const { plan, layers, outputs } = this;
    const batchFeatures = features.subarray(0, size * plan.featureSize);
    let input = batchFeatures;
    for (const [index, layer] of layers.entries()) {
      const output = (outputs[index] as Float32Array).subarray(
        0,
        size * (plan.steps[index] as PlanStep).outSize,
      );
      layer.forward(size, input, output, this.context);
      input = output;
    }
    this.context.step++;

    let outputGradient = this.outputGradient.subarray(0, size * plan.numClasses);
    const result = this.loss(input, labels, outputGradient, size);

    for (let index = layers.length - 1; index >= 0; index--) {
      const step = plan.steps[index] as PlanStep;
      const layerInput =
        index === 0
          ? batchFeatures
          : (outputs[index - 1] as Float32Array).subarray(0, size * step.inSize);
      const output = (outputs[index] as Float32Array).subarray(0, size * step.outSize);
      const inputGradient = this.inputGradients[index]?.subarray(0, size * step.inSize) ?? null;
      const layer = layers[index] as NativeLayer;
      if (this.stepping[index]?.inBackward && layer.backwardAndStep !== undefined) {
        layer.backwardAndStep(
          size,
          layerInput,
          output,
          outputGradient,
          inputGradient,
          learningRate,
        );
      } else layer.backward(size, layerInput, output, outputGradient, inputGradient);
      if (inputGradient === null) break;
      outputGradient = inputGradient;
    }
    for (const { weights, inBackward } of this.stepping) {
      for (const weight of weights) {
        if (inBackward) correctionStep(this.addon, weight, learningRate);
        else sgdStep(this.addon, weight, learningRate, this.mu);
      }
    }
    return result;
  }

  /** The loss on the last layer's pre-activation outputs, its gradient into outputGradient. */
  private loss(
    logits: Float32Array,
    labels: Int32Array | Float32Array,
    outputGradient: Float32Array,
    size: number,
  ): NativeStepResult {
    const { addon, lossOut } = this;
    switch (this.plan.loss) {
      case 'softmax-cross-entropy': {
        if (!(labels instanceof Int32Array))
          throw new Error('native loop: class labels must be an Int32Array');
        this.lossSizes.set([size, this.plan.numClasses]);
        addon.softmaxCrossEntropy(
          logits,
          labels.subarray(0, size),
          outputGradient,
          this.lossSizes,
          lossOut.subarray(0, 2),
        );
        return { loss: lossOut[0] as number, statistics: [lossOut[1] as number] };
      }
      case 'sigmoid-binary-cross-entropy': {
        if (!(labels instanceof Float32Array))
          throw new Error('native loop: binary targets must be a Float32Array');
        const probabilities = this.probabilities.subarray(0, size);
        addon.sigmoidCrossEntropy(
          logits,
          labels.subarray(0, size),
          probabilities,
          outputGradient,
          lossOut.subarray(0, 2),
        );
        return { loss: lossOut[0] as number, statistics: [lossOut[1] as number], probabilities };
      }
      case 'mean-squared-error': {
        if (!(labels instanceof Float32Array))
          throw new Error('native loop: regression targets must be a Float32Array');
        addon.meanSquaredError(logits, labels.subarray(0, size), outputGradient, lossOut);
        return {
          loss: lossOut[0] as number,
          statistics: [lossOut[1] as number, lossOut[2] as number],
        };
      }
    }
  }

  /** Writes the trained weights (and moving statistics) into the model's variables. */
  finish(): void {
    for (const layer of this.layers) {
      writeWeights(layer.weights);
      layer.finish?.();
    }
  }
}
