/**
 * Any task's model: built from the task's layers topology, seeded like the zoo, and checked
 * against the task (input schema, output, loss, size) before any run can use it.
 */
import * as tf from '@tensorflow/tfjs-core';
// Registers 'cpu', so a task's model can be built and checked before, or without, initBackend.
import '@tensorflow/tfjs-backend-cpu';
import * as tfl from '@tensorflow/tfjs-layers';
import { ErrorCode, type JsonValue, TesseraError } from '@tessera/protocol';
import {
  featureWidth,
  minimumFeatureWidth,
  outputUnits,
  sha256Hex,
  type TaskDefinition,
} from '@tessera/tasks';
// Registers TokenAndPositionEmbedding and TransformerBlock: topologies may name them.
import './transformer-layers.js';
import { setFlatWeights } from './weights.js';

type JsonObject = { [key: string]: JsonValue };

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function refusal(field: string, message: string, data: Record<string, unknown> = {}) {
  return new TesseraError(ErrorCode.INVALID_ARGUMENT, `task: ${field}: ${message}`, {
    field,
    ...data,
  });
}

/**
 * The `{class_name, config}` model inside a topology and the field path it is at: a tfjs
 * model.json's `modelTopology` (and Keras' saved form) wraps it in `model_config`.
 */
function modelConfigOf(topology: JsonObject): { model: JsonObject; path: string } {
  const wrapped = topology['model_config'];
  if (isObject(wrapped)) return { model: wrapped, path: 'model.topology.model_config' };
  return { model: topology, path: 'model.topology' };
}

/**
 * Initialisers that draw random numbers, by their name lowercased without underscores (JSON
 * writes them as class names, `GlorotUniform`, or as strings, `glorot_uniform`).
 */
const RANDOM_INITIALIZERS: Readonly<Record<string, string>> = {
  glorotuniform: 'GlorotUniform',
  glorotnormal: 'GlorotNormal',
  heuniform: 'HeUniform',
  henormal: 'HeNormal',
  lecununiform: 'LeCunUniform',
  lecunnormal: 'LeCunNormal',
  randomuniform: 'RandomUniform',
  randomnormal: 'RandomNormal',
  truncatednormal: 'TruncatedNormal',
  orthogonal: 'Orthogonal',
  variancescaling: 'VarianceScaling',
};

function randomInitializer(name: unknown): string | undefined {
  return typeof name === 'string'
    ? RANDOM_INITIALIZERS[name.replaceAll('_', '').toLowerCase()]
    : undefined;
}

/** createModel's stride: seed * 16 + layer keeps (seed, initialiser) pairs of <= 16 apart. */
const SEED_STRIDE = 16;
const MAX_SEED = 2 ** 48;

/**
 * A copy of `value` with the seed of every random initialiser set: the k-th one met, walking
 * the JSON depth-first (arrays in order, object keys sorted, so the JSON's key order does
 * not matter), gets `seed * stride + k`. For the zoo's models (one random initialiser, the
 * kernel's, per layer) that is createModel's seeding exactly; models with more than 16 random
 * initialisers get a larger power-of-two stride. A seed in the topology is overwritten: the
 * run's seed decides.
 */
function seededTopology(topology: JsonObject, seed: number): JsonObject {
  if (!Number.isSafeInteger(seed) || Math.abs(seed) > MAX_SEED) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `buildTaskModel: seed must be an integer with |seed| <= 2^48, got ${String(seed)}`,
      { field: 'seed' },
    );
  }
  const seeded: { [key: string]: JsonValue }[] = [];
  const walk = (value: JsonValue, key: string): JsonValue => {
    if (Array.isArray(value)) return value.map((item) => walk(item, key));
    if (typeof value === 'string' && /initializer$/i.test(key)) {
      const className = randomInitializer(value);
      if (className === undefined) return value;
      const config: JsonObject = {};
      seeded.push(config);
      return { class_name: className, config };
    }
    if (!isObject(value)) return value;
    const copy: JsonObject = {};
    for (const member of Object.keys(value).sort()) {
      copy[member] = walk(value[member] as JsonValue, member);
    }
    if (randomInitializer(copy['class_name']) !== undefined) {
      const config = isObject(copy['config']) ? copy['config'] : {};
      copy['config'] = config;
      seeded.push(config);
    }
    return copy;
  };
  const copy = walk(topology, '') as JsonObject;
  let stride = SEED_STRIDE;
  while (stride < seeded.length) stride *= 2;
  if (!Number.isSafeInteger(Math.abs(seed) * stride + stride)) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `buildTaskModel: seed ${seed} is too large for a model with ${seeded.length} random initialisers`,
      { field: 'seed' },
    );
  }
  seeded.forEach((config, index) => {
    config['seed'] = seed * stride + index;
  });
  return copy;
}

/** Every registered class tfjs-layers can deserialize (layers, initialisers, ...). */
function knownClassNames(): Set<string> {
  return new Set(Object.keys(tf.serialization.SerializationMap.getMap().classNameMap));
}

/** Refuses a layer whose class tfjs-layers does not have, naming it and its place. */
function checkLayerClasses(model: JsonObject, path: string): void {
  if (typeof model['class_name'] !== 'string') {
    throw refusal(path, 'must be a layers topology: an object with class_name and config');
  }
  const config = model['config'];
  // Keras before 2.2.3 wrote a Sequential's config as the list of its layers.
  const layers = Array.isArray(config) ? config : isObject(config) ? config['layers'] : undefined;
  const layersPath = Array.isArray(config) ? `${path}.config` : `${path}.config.layers`;
  if (!Array.isArray(layers)) {
    throw refusal(`${path}.config`, 'must hold the list of layers (config.layers)');
  }
  const known = knownClassNames();
  layers.forEach((layer, index) => {
    const className = isObject(layer) ? layer['class_name'] : undefined;
    if (typeof className !== 'string') {
      throw refusal(`${layersPath}.${index}`, 'a layer must have a class_name');
    }
    if (!known.has(className)) {
      throw refusal(
        `${layersPath}.${index}.class_name`,
        `unknown layer class '${className}': tfjs-layers has no such layer`,
        { layerClass: className },
      );
    }
    // A nested model (a Sequential inside a Functional model) has layers of its own.
    if (isObject(layer) && (className === 'Sequential' || className === 'Model')) {
      checkLayerClasses(layer, `${layersPath}.${index}`);
    }
  });
}

export interface BuildTaskModelOptions {
  /** Seeds the random initialisers: the same seed gives the same initial weights. */
  seed: number;
  /**
   * Initial weights, float32 in the order tfjs's `model.save` writes them (model.weights:
   * trainable, then non-trainable): what a tfjs weights.bin holds. Where the task declares
   * its weights (model.weights), these are checked against its byte length and sha256.
   */
  weights?: Float32Array;
}

/**
 * The task's model, built from its topology (tfjs `model.toJSON()`, Keras 2 `to_json()`, or a
 * tfjs model.json's `modelTopology`), its initialisers seeded (see seededTopology), then the
 * given weights loaded. The caller owns the model and disposes it. INVALID_ARGUMENT with the
 * field for a topology tfjs-layers cannot build.
 */
export async function buildTaskModel(
  task: TaskDefinition,
  options: BuildTaskModelOptions,
): Promise<tfl.LayersModel> {
  const { model: config, path } = modelConfigOf(task.model.topology);
  checkLayerClasses(config, path);
  const seeded = seededTopology(config, options.seed);
  let model: tfl.LayersModel;
  try {
    model = await tfl.models.modelFromJSON(
      seeded as unknown as Parameters<typeof tfl.models.modelFromJSON>[0],
    );
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw refusal(path, `tfjs-layers cannot build it: ${message}`);
  }
  try {
    if (options.weights !== undefined) loadInitialWeights(task, model, options.weights);
    return model;
  } catch (error) {
    model.dispose();
    throw error;
  }
}

/**
 * The task's model holding a checkpoint's weights (serving, central evaluation): built with
 * seed 0, since the weights replace what the initialisers drew; disposed if they do not fit.
 */
export async function taskModelWithWeights(
  task: TaskDefinition,
  weights: Float32Array,
): Promise<tfl.LayersModel> {
  const model = await buildTaskModel(task, { seed: 0 });
  try {
    setFlatWeights(model, weights);
    return model;
  } catch (error) {
    model.dispose();
    throw error;
  }
}

function loadInitialWeights(task: TaskDefinition, model: tfl.LayersModel, weights: Float32Array) {
  const declared = task.model.weights;
  if (declared !== undefined) {
    const bytes = new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength);
    if (bytes.byteLength !== declared.byteLength) {
      throw refusal(
        'model.weights.byteLength',
        `the task declares ${declared.byteLength} bytes of weights, got ${bytes.byteLength}`,
        { expected: declared.byteLength, got: bytes.byteLength },
      );
    }
    if (sha256Hex(bytes) !== declared.sha256) {
      throw refusal('model.weights.sha256', 'the weights given do not have the declared sha256');
    }
  }
  setFlatWeights(model, weights);
}

export interface CheckTaskModelOptions {
  /** The most parameters (weights, trainable or not) a task's model may have. */
  maxParams: number;
}

/** The coordinator's default for CheckTaskModelOptions.maxParams (`--max-task-params`). */
export const DEFAULT_MAX_TASK_PARAMS = 50_000_000;

export interface TaskModelSummary {
  /** Every weight, trainable or not: the length of the flat weight vector. */
  paramCount: number;
  /** One example as the model takes it (without the batch dimension). */
  inputShape: number[];
  outputUnits: number;
}

/** The activation that makes the model's output, where it can be told. */
function outputActivation(model: tfl.LayersModel): string | undefined {
  const layer = model.outputs[0]?.sourceLayer;
  if (layer === undefined) return undefined;
  const className = layer.getClassName();
  if (className === 'Softmax') return 'softmax';
  const activation = (layer.getConfig() as { activation?: unknown }).activation;
  return typeof activation === 'string' ? activation : undefined;
}

/** The output activations each loss is computed on (the losses take probabilities). */
function activationFits(loss: TaskDefinition['loss'], activation: string | undefined): boolean {
  switch (loss) {
    case 'softmax-cross-entropy':
      return activation === 'softmax';
    case 'sigmoid-binary-cross-entropy':
      return activation === 'sigmoid';
    case 'mean-squared-error':
      // Any value-valued output (linear, or bounded: sigmoid, tanh, relu); softmax sums to 1.
      return activation !== 'softmax';
  }
}

function inputShapes(task: TaskDefinition): { accepted: number[][]; minimumWidth?: number } {
  const { input } = task;
  switch (input.kind) {
    case 'tabular': {
      const width = featureWidth(input);
      return width === undefined
        ? { accepted: [], minimumWidth: minimumFeatureWidth(input) }
        : { accepted: [[width]] };
    }
    case 'image': {
      const { height, width, channels } = input;
      return { accepted: [[height, width, channels], [height * width * channels]] };
    }
    case 'text':
      return { accepted: [[input.maxLength]] };
  }
}

function shapeText(shape: readonly (number | null)[]): string {
  return `[${shape.map((dimension) => dimension ?? 'null').join(', ')}]`;
}

/**
 * Builds the task's model and checks it fits the task: one input of a shape the input schema
 * gives (tabular [width]; image [h, w, c] or [h*w*c]; text [maxLength]), one output of
 * outputUnits(task.output) units with the activation the loss needs (softmax, sigmoid, not
 * softmax for MSE), at most maxParams parameters, declared weights of 4 bytes per parameter.
 * A tabular task whose categories the statistics round has yet to collect is checked against
 * the least width it can have; the round's categories must then make the model's width.
 * Each refusal is INVALID_ARGUMENT with the task field at fault.
 */
export async function checkTaskModel(
  task: TaskDefinition,
  options: CheckTaskModelOptions,
): Promise<TaskModelSummary> {
  const model = await buildTaskModel(task, { seed: 0 });
  try {
    const field = modelConfigOf(task.model.topology).path;
    if (model.inputs.length !== 1 || model.outputs.length !== 1) {
      throw refusal(
        field,
        `the model must have one input and one output, it has ${model.inputs.length} and ${model.outputs.length}`,
      );
    }
    const inputShape = (model.inputs[0]?.shape ?? []).slice(1);
    const { accepted, minimumWidth } = inputShapes(task);
    const fits =
      inputShape.every((dimension) => typeof dimension === 'number') &&
      (minimumWidth !== undefined
        ? inputShape.length === 1 && (inputShape[0] as number) >= minimumWidth
        : accepted.some(
            (shape) =>
              shape.length === inputShape.length && shape.every((d, i) => d === inputShape[i]),
          ));
    if (!fits) {
      const expected =
        minimumWidth !== undefined
          ? `[width >= ${minimumWidth}]`
          : accepted.map(shapeText).join(' or ');
      throw refusal(
        field,
        `the model takes examples of shape ${shapeText(inputShape)}; the ${task.input.kind} input gives ${expected}`,
        { expected, got: shapeText(inputShape) },
      );
    }
    const outputShape = (model.outputs[0]?.shape ?? []).slice(1);
    const units = outputUnits(task.output);
    if (outputShape.length !== 1 || outputShape[0] !== units) {
      throw refusal(
        field,
        `the model's output has shape ${shapeText(outputShape)}; a ${task.output.kind} output needs [${units}]`,
        { expected: units, got: shapeText(outputShape) },
      );
    }
    const activation = outputActivation(model);
    if (!activationFits(task.loss, activation)) {
      throw refusal(
        field,
        `the output layer's activation is ${activation ?? 'unknown'}; ${task.loss} needs ${
          task.loss === 'mean-squared-error' ? 'values, not softmax' : task.loss.split('-')[0]
        }`,
        { activation: activation ?? null },
      );
    }
    const paramCount = model.countParams();
    if (paramCount > options.maxParams) {
      throw refusal(
        field,
        `the model has ${paramCount} parameters, more than the ${options.maxParams} allowed`,
        { paramCount, maxParams: options.maxParams },
      );
    }
    const declared = task.model.weights;
    if (declared !== undefined && declared.byteLength !== paramCount * 4) {
      throw refusal(
        'model.weights.byteLength',
        `${declared.byteLength} bytes of weights for ${paramCount} parameters (float32: ${paramCount * 4} bytes)`,
        { expected: paramCount * 4, got: declared.byteLength },
      );
    }
    return { paramCount, inputShape: inputShape as number[], outputUnits: units };
  } finally {
    model.dispose();
  }
}
