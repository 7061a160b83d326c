import * as tfl from '@tensorflow/tfjs-layers';
import { ErrorCode, type JsonValue } from '@tessera/protocol';
import { builtinTask, parseTaskDefinition, sha256Hex, type TaskDefinition } from '@tessera/tasks';
import { describe, expect, it } from 'vitest';
import { toTfjsArtifacts } from './artifacts.js';
import { buildTaskModel, checkTaskModel } from './task-model.js';
import { getFlatWeights } from './weights.js';

type JsonObject = { [key: string]: JsonValue };

/** Dense(16, relu) - Dense(3, softmax) on `width` features, built with tfjs and written by toJSON. */
function tabularTopology(
  width = 6,
  units = 3,
  activation: 'softmax' | 'sigmoid' | 'linear' = 'softmax',
): JsonObject {
  const model = tfl.sequential({
    layers: [
      tfl.layers.dense({ inputShape: [width], units: 16, activation: 'relu' }),
      tfl.layers.dense({ units, activation }),
    ],
  });
  const topology = model.toJSON(null, false) as JsonObject;
  model.dispose();
  return topology;
}

/** 3 numeric columns and a categorical one with 3 categories (6 features), 3 classes. */
function tabularTask(topology: JsonObject = tabularTopology()): TaskDefinition {
  return parseTaskDefinition({
    schemaVersion: 1,
    name: 'flowers',
    input: {
      kind: 'tabular',
      label: 'species',
      columns: [
        { name: 'length', type: 'numeric', standardize: 'federated' },
        { name: 'width', type: 'numeric' },
        { name: 'height', type: 'numeric', standardize: { mean: 1, std: 2 } },
        { name: 'soil', type: 'categorical', categories: ['clay', 'sand', 'loam'] },
      ],
    },
    output: { kind: 'multiclass', classes: ['a', 'b', 'c'] },
    loss: 'softmax-cross-entropy',
    metrics: ['accuracy'],
    model: { topology },
  });
}

/** The same net as Keras 2.x `model.to_json()` writes it (InputLayer, GlorotUniform, snake_case). */
const KERAS2_TOPOLOGY: JsonObject = {
  class_name: 'Sequential',
  config: {
    name: 'sequential',
    layers: [
      {
        class_name: 'InputLayer',
        config: {
          batch_input_shape: [null, 6],
          dtype: 'float32',
          sparse: false,
          ragged: false,
          name: 'input_1',
        },
      },
      {
        class_name: 'Dense',
        config: {
          name: 'dense',
          trainable: true,
          dtype: 'float32',
          units: 16,
          activation: 'relu',
          use_bias: true,
          kernel_initializer: { class_name: 'GlorotUniform', config: { seed: null } },
          bias_initializer: { class_name: 'Zeros', config: {} },
          kernel_regularizer: null,
          bias_regularizer: null,
          activity_regularizer: null,
          kernel_constraint: null,
          bias_constraint: null,
        },
      },
      {
        class_name: 'Dense',
        config: {
          name: 'dense_1',
          trainable: true,
          dtype: 'float32',
          units: 3,
          activation: 'softmax',
          use_bias: true,
          kernel_initializer: 'glorot_uniform',
          bias_initializer: 'zeros',
        },
      },
    ],
  },
  keras_version: '2.15.0',
  backend: 'tensorflow',
};

const LIMITS = { maxParams: 1_000_000 };

async function refusal(
  promise: Promise<unknown>,
): Promise<{ code: string; message: string; data: Record<string, unknown> }> {
  try {
    await promise;
  } catch (error) {
    return error as { code: string; message: string; data: Record<string, unknown> };
  }
  throw new Error('expected a refusal');
}

describe('checkTaskModel', () => {
  it('accepts the tabular task and counts its parameters', async () => {
    expect(await checkTaskModel(tabularTask(), LIMITS)).toEqual({
      paramCount: 6 * 16 + 16 + 16 * 3 + 3,
      inputShape: [6],
      outputUnits: 3,
    });
  });

  it('accepts the built-ins as image tasks, flat or 28x28x1', async () => {
    expect(await checkTaskModel(builtinTask('mnist-2nn'), { maxParams: 2_000_000 })).toEqual({
      paramCount: 199_210,
      inputShape: [784],
      outputUnits: 10,
    });
    expect((await checkTaskModel(builtinTask('mnist-small-cnn'), LIMITS)).inputShape).toEqual([
      28, 28, 1,
    ]);
  });

  it("reads Keras 2's to_json and a tfjs model.json's modelTopology (wrapped in model_config)", async () => {
    const expected = { paramCount: 163, inputShape: [6], outputUnits: 3 };
    expect(await checkTaskModel(tabularTask(KERAS2_TOPOLOGY), LIMITS)).toEqual(expected);
    const wrapped = {
      keras_version: '2.15.0',
      backend: 'tensorflow',
      model_config: KERAS2_TOPOLOGY,
    };
    expect(await checkTaskModel(tabularTask(wrapped), LIMITS)).toEqual(expected);
  });

  it('refuses an unknown layer class, naming it and its place', async () => {
    const topology = structuredClone(KERAS2_TOPOLOGY);
    ((topology['config'] as JsonObject)['layers'] as JsonObject[])[1] = {
      class_name: 'Transformerish',
      config: {},
    };
    const error = await refusal(checkTaskModel(tabularTask(topology), LIMITS));
    expect(error).toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
      data: { field: 'model.topology.config.layers.1.class_name', layerClass: 'Transformerish' },
    });
    expect(error.message).toMatch(/unknown layer class 'Transformerish'/);
  });

  it('refuses a malformed topology with the field', async () => {
    const noLayers = { class_name: 'Sequential', config: { name: 'x' } };
    expect(await refusal(checkTaskModel(tabularTask(noLayers), LIMITS))).toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
      data: { field: 'model.topology.config' },
      message: expect.stringMatching(/list of layers/),
    });
    const badUnits = structuredClone(KERAS2_TOPOLOGY);
    (((badUnits['config'] as JsonObject)['layers'] as JsonObject[])[1]?.['config'] as JsonObject)[
      'units'
    ] = 'many';
    expect(await refusal(checkTaskModel(tabularTask(badUnits), LIMITS))).toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
      data: { field: 'model.topology' },
      message: expect.stringMatching(/tfjs-layers cannot build it/),
    });
  });

  it('refuses an input shape that does not fit the input schema', async () => {
    const error = await refusal(checkTaskModel(tabularTask(tabularTopology(5)), LIMITS));
    expect(error).toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
      data: { field: 'model.topology', expected: '[6]', got: '[5]' },
    });
    const image = {
      ...builtinTask('mnist-cnn'),
      input: {
        kind: 'image',
        height: 32,
        width: 32,
        channels: 3,
        valueRange: { min: 0, max: 255 },
      },
    };
    expect(
      (await refusal(checkTaskModel(parseTaskDefinition(image), { maxParams: 2e6 }))).message,
    ).toMatch(/shape \[28, 28, 1\]; the image input gives \[32, 32, 3\] or \[3072\]/);
  });

  it('checks a tabular model whose categories are still to be collected against the least width', async () => {
    const pending = structuredClone(tabularTask(tabularTopology(4)));
    if (pending.input.kind !== 'tabular') throw new Error('tabular');
    const soil = pending.input.columns[3];
    if (soil?.type === 'categorical') delete soil.categories;
    // 3 numeric + at least 1 category: a 4-wide model may fit, a 3-wide one never can.
    expect((await checkTaskModel(pending, LIMITS)).inputShape).toEqual([4]);
    pending.model.topology = tabularTopology(3);
    expect((await refusal(checkTaskModel(pending, LIMITS))).message).toMatch(
      /gives \[width >= 4\]/,
    );
  });

  it('refuses a wrong output size or an activation that does not fit the loss', async () => {
    expect(await refusal(checkTaskModel(tabularTask(tabularTopology(6, 4)), LIMITS))).toMatchObject(
      {
        data: { field: 'model.topology', expected: 3, got: '[4]' },
        message: expect.stringMatching(/output has shape \[4\]; a multiclass output needs \[3\]/),
      },
    );
    expect(
      await refusal(checkTaskModel(tabularTask(tabularTopology(6, 3, 'sigmoid')), LIMITS)),
    ).toMatchObject({
      data: { field: 'model.topology', activation: 'sigmoid' },
      message: expect.stringMatching(/activation is sigmoid; softmax-cross-entropy needs softmax/),
    });
    const binary = parseTaskDefinition({
      ...tabularTask(tabularTopology(6, 1, 'linear')),
      output: { kind: 'binary', classes: ['no', 'yes'] },
      loss: 'sigmoid-binary-cross-entropy',
    });
    expect((await refusal(checkTaskModel(binary, LIMITS))).message).toMatch(
      /activation is linear; sigmoid-binary-cross-entropy needs sigmoid/,
    );
    const regression = parseTaskDefinition({
      ...tabularTask(tabularTopology(6, 1, 'softmax')),
      output: { kind: 'regression' },
      loss: 'mean-squared-error',
      metrics: ['rmse'],
    });
    expect((await refusal(checkTaskModel(regression, LIMITS))).message).toMatch(
      /needs values, not softmax/,
    );
  });

  it('refuses a model over the parameter limit', async () => {
    expect(await refusal(checkTaskModel(tabularTask(), { maxParams: 162 }))).toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
      data: { field: 'model.topology', paramCount: 163, maxParams: 162 },
    });
    expect(await checkTaskModel(tabularTask(), { maxParams: 163 })).toMatchObject({
      paramCount: 163,
    });
  });

  it('refuses declared weights of the wrong byte length', async () => {
    const task = {
      ...tabularTask(),
      model: {
        topology: tabularTopology(),
        weights: { sha256: '0'.repeat(64), byteLength: 160 * 4 },
      },
    };
    expect(await refusal(checkTaskModel(parseTaskDefinition(task), LIMITS))).toMatchObject({
      data: { field: 'model.weights.byteLength', expected: 163 * 4, got: 640 },
    });
  });
});

describe('buildTaskModel', () => {
  it('is seeded: the same seed the same weights, another seed others, whatever the key order', async () => {
    const task = tabularTask(KERAS2_TOPOLOGY);
    const weightsFor = async (t: TaskDefinition, seed: number) => {
      const model = await buildTaskModel(t, { seed });
      const weights = getFlatWeights(model);
      model.dispose();
      return weights;
    };
    const first = await weightsFor(task, 5);
    expect(await weightsFor(task, 5)).toEqual(first);
    expect(await weightsFor(task, 6)).not.toEqual(first);
    const reordered = { ...task, model: { topology: reverseKeys(KERAS2_TOPOLOGY) as JsonObject } };
    expect(await weightsFor(reordered, 5)).toEqual(first);
    // The two kernels (written as an object and as a string) start differently.
    const model = await buildTaskModel(task, { seed: 5 });
    const [kernel1, , kernel2] = model.getWeights();
    expect(Array.from(kernel1?.dataSync().subarray(0, 48) ?? [])).not.toEqual(
      Array.from(kernel2?.dataSync() ?? []),
    );
    model.dispose();
    expect(await refusal(buildTaskModel(task, { seed: 0.5 }))).toMatchObject({
      data: { field: 'seed' },
    });
  });

  it("loads initial weights in tfjs's weights.bin order, checked against the declared sha256", async () => {
    // BatchNormalization has non-trainable weights: the order must be model.save's.
    const source = tfl.sequential({
      layers: [
        tfl.layers.dense({ inputShape: [6], units: 4, activation: 'relu' }),
        tfl.layers.batchNormalization(),
        tfl.layers.dense({ units: 3, activation: 'softmax' }),
      ],
    });
    const { weightsBin, modelJson } = await toTfjsArtifacts(source);
    const weights = new Float32Array(weightsBin.slice().buffer);
    const task = parseTaskDefinition({
      ...tabularTask(modelJson.modelTopology as JsonObject),
      model: {
        topology: modelJson.modelTopology,
        weights: { sha256: sha256Hex(weightsBin), byteLength: weightsBin.byteLength },
      },
    });
    const built = await buildTaskModel(task, { seed: 1, weights });
    expect(getFlatWeights(built)).toEqual(getFlatWeights(source));
    built.dispose();
    const tampered = weights.slice();
    tampered[0] = (tampered[0] ?? 0) + 1;
    expect(await refusal(buildTaskModel(task, { seed: 1, weights: tampered }))).toMatchObject({
      data: { field: 'model.weights.sha256' },
    });
    expect(
      await refusal(buildTaskModel(task, { seed: 1, weights: weights.subarray(1) })),
    ).toMatchObject({
      data: { field: 'model.weights.byteLength' },
    });
    const undeclared = { ...task, model: { topology: task.model.topology } };
    expect(
      await refusal(buildTaskModel(undeclared, { seed: 1, weights: weights.subarray(1) })),
    ).toMatchObject({
      code: ErrorCode.WEIGHTS_LENGTH_MISMATCH,
    });
    source.dispose();
  });
});

function reverseKeys(value: JsonValue): JsonValue {
  if (Array.isArray(value)) return value.map(reverseKeys);
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(
    Object.entries(value)
      .reverse()
      .map(([k, v]) => [k, reverseKeys(v)]),
  );
}
