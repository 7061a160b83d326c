import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import * as tfl from '@tensorflow/tfjs-layers';
import { ErrorCode, type JsonValue, TesseraError } from '@tessera/protocol';
import { parseTaskDefinition, type TaskDefinition } from '@tessera/tasks';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildTaskModel, checkTaskModel } from './task-model.js';
import { TokenAndPositionEmbedding, TransformerBlock } from './transformer-layers.js';
import { getFlatWeights } from './weights.js';

type JsonObject = { [key: string]: JsonValue };

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const VOCABULARY = ['free', 'money', 'meeting', 'today', 'click', 'here'];
const LENGTH = 5;

/** Embedding + one block + average pooling + sigmoid, small enough to check by hand. */
function textClassifier(
  options: { embedDim?: number; numHeads?: number; dropoutRate?: number } = {},
) {
  const { embedDim = 8, numHeads = 2, dropoutRate = 0 } = options;
  return tfl.sequential({
    layers: [
      new TokenAndPositionEmbedding({
        batchInputShape: [null, LENGTH],
        vocabularySize: VOCABULARY.length + 2,
        sequenceLength: LENGTH,
        embedDim,
      }),
      new TransformerBlock({ embedDim, numHeads, feedForwardDim: 12, dropoutRate }),
      tfl.layers.globalAveragePooling1d({}),
      tfl.layers.dense({ units: 1, activation: 'sigmoid' }),
    ],
  });
}

function textTask(topology: JsonObject): TaskDefinition {
  return parseTaskDefinition({
    schemaVersion: 1,
    name: 'tiny-spam',
    input: {
      kind: 'text',
      maxLength: LENGTH,
      tokenizer: { kind: 'word', lowercase: true, vocabulary: VOCABULARY },
    },
    output: { kind: 'binary', classes: ['ham', 'spam'] },
    loss: 'sigmoid-binary-cross-entropy',
    metrics: ['accuracy', 'auc'],
    model: { topology },
  });
}

function topologyOf(model: tfl.LayersModel): JsonObject {
  return model.toJSON(null, false) as JsonObject;
}

/** The config of the topology's index-th layer (its JSON, to read or to change). */
function layerConfig(topology: JsonObject, index: number): JsonObject {
  const layer = ((topology['config'] as JsonObject)['layers'] as JsonObject[])[index];
  if (layer === undefined) throw new Error(`no layer ${index}`);
  return layer['config'] as JsonObject;
}

const ids = () =>
  tf.tensor2d(
    [
      [2, 3, 4, 0, 0],
      [7, 6, 1, 5, 2],
    ],
    [2, LENGTH],
  );

describe('TokenAndPositionEmbedding and TransformerBlock', () => {
  it('map [batch, length] ids to [batch, length, embedDim] and keep the shape through the block', () => {
    const model = textClassifier();
    try {
      const embedding = model.layers[0] as TokenAndPositionEmbedding;
      const block = model.layers[1] as TransformerBlock;
      const input = ids();
      const embedded = embedding.apply(input) as tf.Tensor;
      const blocked = block.apply(embedded) as tf.Tensor;
      expect(embedded.shape).toEqual([2, LENGTH, 8]);
      expect(blocked.shape).toEqual([2, LENGTH, 8]);
      // Post-norm block: every token's output row has mean 0 and variance v / (v + epsilon),
      // just under 1 (gamma 1, beta 0, epsilon 1e-3).
      const { mean, variance } = tf.moments(blocked, -1);
      for (const value of mean.dataSync()) expect(Math.abs(value)).toBeLessThan(1e-5);
      for (const value of variance.dataSync()) {
        expect(value).toBeLessThan(1);
        expect(value).toBeGreaterThan(0.99);
      }
      // 8 ids x 8 + 5 positions x 8; 4 (8x8 + 8) attention + 2 x (8 + 8) norms + 8x12 + 12 + 12x8 + 8.
      expect(embedding.countParams()).toBe(8 * 8 + 5 * 8);
      expect(block.countParams()).toBe(4 * (64 + 8) + 2 * 16 + 96 + 12 + 96 + 8);
      tf.dispose([input, embedded, blocked, mean, variance]);
    } finally {
      model.dispose();
    }
  });

  it('adds the token embedding and the position embedding, per position', () => {
    const model = textClassifier();
    try {
      const embedding = model.layers[0] as TokenAndPositionEmbedding;
      const [tokens, positions] = embedding.getWeights().map((w) => w.arraySync() as number[][]);
      const out = (embedding.apply(ids()) as tf.Tensor).arraySync() as number[][][];
      const row = [7, 6, 1, 5, 2];
      row.forEach((id, position) => {
        const expected = (tokens as number[][])[id]?.map(
          (value, k) => value + ((positions as number[][])[position]?.[k] ?? Number.NaN),
        );
        expect(out[1]?.[position]).toEqual(expected?.map((v) => expect.closeTo(v, 6)));
      });
    } finally {
      model.dispose();
    }
  });

  it('creates its weights in a fixed order, kernel before bias', () => {
    const model = textClassifier();
    try {
      const names = model.weights.map((w) => w.originalName.split('/').slice(1).join('/'));
      expect(names).toEqual([
        'token_embeddings',
        'position_embeddings',
        'query_kernel',
        'query_bias',
        'key_kernel',
        'key_bias',
        'value_kernel',
        'value_bias',
        'attention_output_kernel',
        'attention_output_bias',
        'attention_norm_gamma',
        'attention_norm_beta',
        'feed_forward_kernel',
        'feed_forward_bias',
        'feed_forward_output_kernel',
        'feed_forward_output_bias',
        'feed_forward_norm_gamma',
        'feed_forward_norm_beta',
        'kernel',
        'bias',
      ]);
    } finally {
      model.dispose();
    }
  });

  it("has the gradients of finite differences (the block's weights and its input)", () => {
    // Seeded, so the check is the same every run (a step across a ReLU's kink would spoil
    // the finite difference of that entry).
    const seeded = (seed: number) => tfl.initializers.glorotUniform({ seed });
    const block = new TransformerBlock({
      embedDim: 4,
      numHeads: 2,
      feedForwardDim: 6,
      queryInitializer: seeded(1),
      keyInitializer: seeded(2),
      valueInitializer: seeded(3),
      attentionOutputInitializer: seeded(4),
      feedForwardInitializer: seeded(5),
      feedForwardOutputInitializer: seeded(6),
    });
    const x = tf.randomNormal([2, 3, 4], 0, 1, 'float32', 11);
    block.apply(x);
    // A fixed random projection of the output, so every output element counts differently.
    const projection = tf.randomNormal([2, 3, 4], 0, 1, 'float32', 12);
    const lossOf = (input: tf.Tensor) =>
      tf.sum(tf.mul(block.apply(input) as tf.Tensor, projection)) as tf.Scalar;
    const { grads } = tf.variableGrads(() => lossOf(x));
    const inputGradient = tf.grad((input: tf.Tensor) => lossOf(input))(x);
    const h = 1e-3;
    const numeric = (perturb: (delta: number) => void): number => {
      perturb(h);
      const up = lossOf(x).dataSync()[0] as number;
      perturb(-2 * h);
      const down = lossOf(x).dataSync()[0] as number;
      perturb(h);
      return (up - down) / (2 * h);
    };
    let checked = 0;
    for (const variable of block.trainableWeights) {
      const tensor = variable.read();
      const values = tensor.dataSync().slice();
      const analytic = grads[(tensor as tf.Variable).name]?.dataSync();
      expect(analytic, variable.name).toBeDefined();
      // A few entries of each weight, spread across it.
      for (const index of [0, Math.floor(values.length / 2), values.length - 1]) {
        const estimate = numeric((delta) => {
          values[index] = (values[index] as number) + delta;
          variable.write(tf.tensor(values, tensor.shape));
        });
        const exact = analytic?.[index] as number;
        expect(Math.abs(exact - estimate), `${variable.name}[${index}]`).toBeLessThan(
          2e-2 * Math.max(1, Math.abs(exact)),
        );
        checked++;
      }
    }
    const xValues = x.dataSync();
    const inputExact = inputGradient.dataSync();
    for (const index of [0, 7, 23]) {
      const bumped = (delta: number) => {
        const copy = xValues.slice();
        copy[index] = (copy[index] as number) + delta;
        const input = tf.tensor(copy, x.shape);
        const value = lossOf(input).dataSync()[0] as number;
        input.dispose();
        return value;
      };
      const estimate = (bumped(h) - bumped(-h)) / (2 * h);
      expect(Math.abs((inputExact[index] as number) - estimate)).toBeLessThan(
        2e-2 * Math.max(1, Math.abs(inputExact[index] as number)),
      );
    }
    expect(checked).toBe(16 * 3);
    block.dispose();
  });

  it('round-trips through toJSON and modelFromJSON with the same outputs', async () => {
    const model = textClassifier({ dropoutRate: 0.1 });
    try {
      const json = topologyOf(model);
      const layers = (json['config'] as JsonObject)['layers'] as JsonObject[];
      expect(layers.map((layer) => layer['class_name'])).toEqual([
        'TokenAndPositionEmbedding',
        'TransformerBlock',
        'GlobalAveragePooling1D',
        'Dense',
      ]);
      // Python-style keys, initialisers as {class_name, config} (Glorot is written as the
      // VarianceScaling it is, as tfjs writes it for Dense): what a task stores.
      expect(layerConfig(json, 1)['query_initializer']).toEqual({
        class_name: 'VarianceScaling',
        config: { scale: 1, mode: 'fan_avg', distribution: 'uniform', seed: null },
      });
      const rebuilt = await tfl.models.modelFromJSON(
        json as unknown as Parameters<typeof tfl.models.modelFromJSON>[0],
      );
      rebuilt.setWeights(model.getWeights());
      const input = ids();
      const expected = (model.predict(input) as tf.Tensor).dataSync();
      const got = (rebuilt.predict(input) as tf.Tensor).dataSync();
      expect(Array.from(got)).toEqual(Array.from(expected));
      expect(topologyOf(rebuilt)['config']).toEqual({
        ...(json['config'] as JsonObject),
        name: rebuilt.name,
      });
      rebuilt.dispose();
    } finally {
      model.dispose();
    }
  });

  it('drops out only when training', () => {
    const model = textClassifier({ dropoutRate: 0.5 });
    try {
      const block = model.layers[1] as TransformerBlock;
      const embedded = (model.layers[0] as TokenAndPositionEmbedding).apply(ids()) as tf.Tensor;
      const inference = block.apply(embedded, { training: false }) as tf.Tensor;
      const again = block.apply(embedded) as tf.Tensor;
      const trained = block.apply(embedded, { training: true }) as tf.Tensor;
      expect(Array.from(again.dataSync())).toEqual(Array.from(inference.dataSync()));
      const difference = tf.max(tf.abs(tf.sub(trained, inference))).dataSync()[0] as number;
      expect(difference).toBeGreaterThan(1e-3);
    } finally {
      model.dispose();
    }
  });
});

describe('a Transformer task through buildTaskModel', () => {
  it('seeds every random weight: the same seed the same weights, another seed others', async () => {
    const source = textClassifier();
    const task = textTask(topologyOf(source));
    source.dispose();
    const build = (seed: number) => buildTaskModel(task, { seed });
    const [a, b, c] = await Promise.all([build(5), build(5), build(6)]);
    try {
      expect(Array.from(getFlatWeights(a))).toEqual(Array.from(getFlatWeights(b)));
      expect(Array.from(getFlatWeights(a))).not.toEqual(Array.from(getFlatWeights(c)));
      // Each kernel its own seed: the query, key and value projections do not start equal.
      const [query, , key, , value] = (a.layers[1] as TransformerBlock)
        .getWeights()
        .map((w) => Array.from(w.dataSync()));
      expect(query).not.toEqual(key);
      expect(key).not.toEqual(value);
      const [tokens, positions] = (a.layers[0] as TokenAndPositionEmbedding)
        .getWeights()
        .map((w) => Array.from(w.dataSync()));
      expect(tokens?.slice(0, 40)).not.toEqual(positions);
    } finally {
      for (const model of [a, b, c]) model.dispose();
    }
  });

  it('passes checkTaskModel as a text task and counts its parameters', async () => {
    const source = textClassifier();
    const task = textTask(topologyOf(source));
    const expected = source.countParams();
    source.dispose();
    const summary = await checkTaskModel(task, { maxParams: 1_000_000 });
    expect(summary).toEqual({ paramCount: expected, inputShape: [LENGTH], outputUnits: 1 });
  });

  it('refuses a block whose heads do not divide its width, with the field', async () => {
    const source = textClassifier();
    const topology = topologyOf(source);
    source.dispose();
    layerConfig(topology, 1)['num_heads'] = 3;
    const error = await buildTaskModel(textTask(topology), { seed: 0 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TesseraError);
    expect((error as TesseraError).code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect((error as TesseraError).data).toMatchObject({ field: 'model.topology' });
    expect((error as TesseraError).message).toMatch(/does not divide into 3 heads/);
  });

  it('refuses an embedding for another sequence length than the input', async () => {
    const source = textClassifier();
    const topology = topologyOf(source);
    source.dispose();
    layerConfig(topology, 0)['sequence_length'] = LENGTH + 1;
    const error = await buildTaskModel(textTask(topology), { seed: 0 }).catch((e: unknown) => e);
    expect((error as TesseraError).code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect((error as TesseraError).message).toMatch(/takes token ids of shape \[batch, 6\]/);
  });
});
