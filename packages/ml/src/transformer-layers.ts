/**
 * The Transformer's layers that tfjs-layers lacks, as layer classes a task's topology can name
 * (registered with tf.serialization at import, so modelFromJSON builds them):
 * - `TokenAndPositionEmbedding`: token ids [batch, length] -> a learned vector per token plus
 *   a learned vector per position, [batch, length, embedDim];
 * - `TransformerBlock`: multi-head self-attention, residual, LayerNormalization, feed-forward
 *   (ReLU), residual, LayerNormalization (the post-norm block of Vaswani et al. 2017, as in
 *   Keras' text-classification-with-Transformer example), dropout after the attention and
 *   after the feed-forward when training.
 * Both are written with tfjs-core ops only, so tfjs differentiates them and every backend
 * that has those ops (cpu, wasm with @tessera/ml's extra kernels, webgl, webgpu) trains them.
 *
 * Weights are created in a fixed order (see each build), so a flat weight vector means the
 * same thing on every client. Each random weight has its own initialiser in the config, so
 * buildTaskModel's seeding (it seeds every random initialiser it finds in the JSON) gives
 * each weight its own seed: one initialiser shared by Wq, Wk and Wv would start them equal.
 * Padding (id 0) is not masked: a padded position is a token like any other, as in the Keras
 * example; the model learns what padding looks like.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

type LayerArgs = NonNullable<ConstructorParameters<typeof tfl.layers.Layer>[0]>;
type Initializer = ReturnType<typeof tfl.initializers.zeros>;
/** An initialiser as a config holds it: `{className, config}` (camelCase, as tfjs reads JSON). */
type InitializerConfig = { className: string; config: tf.serialization.ConfigDict };
type Kwargs = { [key: string]: unknown };

const layerError = (layer: string, message: string) => new Error(`${layer}: ${message}`);

/**
 * An initialiser from its config, through tfjs's class map (every initialiser tfjs-layers
 * registers: GlorotUniform, RandomUniform, VarianceScaling, ...), or `fallback` when absent.
 */
function initializerFrom(
  layer: string,
  value: InitializerConfig | Initializer | undefined,
  fallback: () => Initializer,
): Initializer {
  if (value === undefined || value === null) return fallback();
  if (value instanceof tf.serialization.Serializable) return value as Initializer;
  const entry = tf.serialization.SerializationMap.getMap().classNameMap[value.className];
  if (entry === undefined) throw layerError(layer, `unknown initializer '${value.className}'`);
  const [cls, fromConfig] = entry;
  return fromConfig(cls, { ...(value.config ?? {}) }) as Initializer;
}

function initializerConfig(initializer: Initializer): InitializerConfig {
  return { className: initializer.getClassName(), config: initializer.getConfig() };
}

function positiveInteger(layer: string, field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw layerError(layer, `${field} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

function rate(layer: string, field: string, value: unknown): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number' || !(value >= 0 && value < 1)) {
    throw layerError(layer, `${field} must be in [0, 1), got ${String(value)}`);
  }
  return value;
}

function single(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
  if (!Array.isArray(inputs)) return inputs;
  if (inputs.length !== 1) throw new Error(`expected one input tensor, got ${inputs.length}`);
  return inputs[0] as tf.Tensor;
}

/** tfjs's uniform(-0.05, 0.05), what tf.layers.embedding starts from. */
const embeddingDefault = () => tfl.initializers.randomUniform({ minval: -0.05, maxval: 0.05 });
const kernelDefault = () => tfl.initializers.glorotUniform({});

export interface TokenAndPositionEmbeddingArgs extends LayerArgs {
  /** Token ids are 0..vocabularySize-1 (a text task's: its vocabulary's length + 2). */
  vocabularySize: number;
  /** Tokens per example (a text task's maxLength). */
  sequenceLength: number;
  embedDim: number;
  tokenInitializer?: InitializerConfig | Initializer;
  positionInitializer?: InitializerConfig | Initializer;
}

/** Token ids [batch, length] -> token embedding + position embedding, [batch, length, embedDim]. */
export class TokenAndPositionEmbedding extends tfl.layers.Layer {
  static className = 'TokenAndPositionEmbedding';
  readonly vocabularySize: number;
  readonly sequenceLength: number;
  readonly embedDim: number;
  private readonly tokenInitializer: Initializer;
  private readonly positionInitializer: Initializer;
  private tokenEmbeddings?: tfl.LayerVariable;
  private positionEmbeddings?: tfl.LayerVariable;

  constructor(args: TokenAndPositionEmbeddingArgs) {
    super(args);
    const where = TokenAndPositionEmbedding.className;
    this.vocabularySize = positiveInteger(where, 'vocabularySize', args.vocabularySize);
    this.sequenceLength = positiveInteger(where, 'sequenceLength', args.sequenceLength);
    this.embedDim = positiveInteger(where, 'embedDim', args.embedDim);
    this.tokenInitializer = initializerFrom(where, args.tokenInitializer, embeddingDefault);
    this.positionInitializer = initializerFrom(where, args.positionInitializer, embeddingDefault);
  }

  override build(inputShape: tfl.Shape | tfl.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tfl.Shape;
    if (shape.length !== 2 || shape[1] !== this.sequenceLength) {
      throw layerError(
        this.name,
        `takes token ids of shape [batch, ${this.sequenceLength}], got [${shape.join(', ')}]`,
      );
    }
    // The order of the flat weight vector: token embeddings, then position embeddings.
    this.tokenEmbeddings = this.addWeight(
      'token_embeddings',
      [this.vocabularySize, this.embedDim],
      'float32',
      this.tokenInitializer,
    );
    this.positionEmbeddings = this.addWeight(
      'position_embeddings',
      [this.sequenceLength, this.embedDim],
      'float32',
      this.positionInitializer,
    );
    this.built = true;
  }

  override computeOutputShape(inputShape: tfl.Shape | tfl.Shape[]): tfl.Shape {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tfl.Shape;
    return [shape[0] ?? null, this.sequenceLength, this.embedDim];
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const ids = tf.cast(single(inputs), 'int32');
      const tokens = tf.gather(this.tokenEmbeddings?.read() as tf.Tensor, ids);
      // [length, embedDim] broadcasts over the batch.
      return tf.add(tokens, this.positionEmbeddings?.read() as tf.Tensor);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      vocabularySize: this.vocabularySize,
      sequenceLength: this.sequenceLength,
      embedDim: this.embedDim,
      tokenInitializer: initializerConfig(this.tokenInitializer),
      positionInitializer: initializerConfig(this.positionInitializer),
      ...super.getConfig(),
    };
  }
}

export interface TransformerBlockArgs extends LayerArgs {
  /** Width of each token's vector in and out. */
  embedDim: number;
  /** Attention heads; embedDim must divide by it (each head sees embedDim / numHeads). */
  numHeads: number;
  /** Width of the feed-forward network's hidden layer. */
  feedForwardDim: number;
  /** Dropout after the attention and after the feed-forward, when training. Default 0. */
  dropoutRate?: number;
  /**
   * LayerNormalization's epsilon. Default 1e-3, tfjs-layers' and Keras' LayerNormalization
   * default (and a number JSON writes as 0.001 in every language, so a task's hash can be
   * recomputed with Python's json.dumps as well as with JCS).
   */
  layerNormEpsilon?: number;
  queryInitializer?: InitializerConfig | Initializer;
  keyInitializer?: InitializerConfig | Initializer;
  valueInitializer?: InitializerConfig | Initializer;
  attentionOutputInitializer?: InitializerConfig | Initializer;
  feedForwardInitializer?: InitializerConfig | Initializer;
  feedForwardOutputInitializer?: InitializerConfig | Initializer;
}

/** The kernels with a random initialiser each, in weight order. */
const BLOCK_KERNELS = [
  'query',
  'key',
  'value',
  'attentionOutput',
  'feedForward',
  'feedForwardOutput',
] as const;
type BlockKernel = (typeof BLOCK_KERNELS)[number];

/**
 * [batch, length, embedDim] -> the same shape: x1 = LayerNorm(x + Attention(x)),
 * out = LayerNorm(x1 + FeedForward(x1)), Attention = multi-head scaled dot-product
 * self-attention with an output projection, FeedForward = Dense(feedForwardDim, relu) then
 * Dense(embedDim).
 */
export class TransformerBlock extends tfl.layers.Layer {
  static className = 'TransformerBlock';
  readonly embedDim: number;
  readonly numHeads: number;
  readonly feedForwardDim: number;
  readonly dropoutRate: number;
  readonly layerNormEpsilon: number;
  private readonly initializers: Record<BlockKernel, Initializer>;
  private readonly variables = new Map<string, tfl.LayerVariable>();

  constructor(args: TransformerBlockArgs) {
    super(args);
    const where = TransformerBlock.className;
    this.embedDim = positiveInteger(where, 'embedDim', args.embedDim);
    this.numHeads = positiveInteger(where, 'numHeads', args.numHeads);
    if (this.embedDim % this.numHeads !== 0) {
      throw layerError(
        where,
        `embedDim ${this.embedDim} does not divide into ${this.numHeads} heads`,
      );
    }
    this.feedForwardDim = positiveInteger(where, 'feedForwardDim', args.feedForwardDim);
    this.dropoutRate = rate(where, 'dropoutRate', args.dropoutRate);
    const epsilon = args.layerNormEpsilon ?? 1e-3;
    if (!(epsilon > 0 && Number.isFinite(epsilon))) {
      throw layerError(where, `layerNormEpsilon must be positive, got ${String(epsilon)}`);
    }
    this.layerNormEpsilon = epsilon;
    this.initializers = Object.fromEntries(
      BLOCK_KERNELS.map((kernel) => [
        kernel,
        initializerFrom(where, args[`${kernel}Initializer`], kernelDefault),
      ]),
    ) as Record<BlockKernel, Initializer>;
  }

  override build(inputShape: tfl.Shape | tfl.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tfl.Shape;
    if (shape.length !== 3 || shape[2] !== this.embedDim) {
      throw layerError(
        this.name,
        `takes [batch, length, ${this.embedDim}], got [${shape.join(', ')}]`,
      );
    }
    const d = this.embedDim;
    const zeros = tfl.initializers.zeros();
    const ones = tfl.initializers.ones();
    const add = (name: string, weightShape: number[], initializer: Initializer) => {
      this.variables.set(name, this.addWeight(name, weightShape, 'float32', initializer));
    };
    // The order of the flat weight vector: the forward pass's, kernel before bias.
    add('query_kernel', [d, d], this.initializers.query);
    add('query_bias', [d], zeros);
    add('key_kernel', [d, d], this.initializers.key);
    add('key_bias', [d], zeros);
    add('value_kernel', [d, d], this.initializers.value);
    add('value_bias', [d], zeros);
    add('attention_output_kernel', [d, d], this.initializers.attentionOutput);
    add('attention_output_bias', [d], zeros);
    add('attention_norm_gamma', [d], ones);
    add('attention_norm_beta', [d], zeros);
    add('feed_forward_kernel', [d, this.feedForwardDim], this.initializers.feedForward);
    add('feed_forward_bias', [this.feedForwardDim], zeros);
    add(
      'feed_forward_output_kernel',
      [this.feedForwardDim, d],
      this.initializers.feedForwardOutput,
    );
    add('feed_forward_output_bias', [d], zeros);
    add('feed_forward_norm_gamma', [d], ones);
    add('feed_forward_norm_beta', [d], zeros);
    this.built = true;
  }

  override computeOutputShape(inputShape: tfl.Shape | tfl.Shape[]): tfl.Shape {
    return (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tfl.Shape;
  }

  private weight(name: string): tf.Tensor {
    const variable = this.variables.get(name);
    if (variable === undefined) throw layerError(this.name, `used before it was built`);
    return variable.read();
  }

  /** x [rows, in] · W + b. */
  private dense(x: tf.Tensor, prefix: string): tf.Tensor {
    return tf.add(
      tf.matMul(x as tf.Tensor2D, this.weight(`${prefix}_kernel`) as tf.Tensor2D),
      this.weight(`${prefix}_bias`),
    );
  }

  /** LayerNormalization over the last axis, then the learned scale and shift. */
  private layerNorm(x: tf.Tensor, prefix: string): tf.Tensor {
    const { mean, variance } = tf.moments(x, -1, true);
    const normalized = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, this.layerNormEpsilon)));
    return tf.add(
      tf.mul(normalized, this.weight(`${prefix}_gamma`)),
      this.weight(`${prefix}_beta`),
    );
  }

  private dropout(x: tf.Tensor, training: boolean): tf.Tensor {
    return training && this.dropoutRate > 0 ? tf.dropout(x, this.dropoutRate) : x;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = single(inputs);
      const [batch = 0, length = 0] = x.shape;
      const d = this.embedDim;
      const heads = this.numHeads;
      const headDim = d / heads;
      const training = kwargs['training'] === true;
      // Every token's row at once: [batch * length, d].
      const rows = tf.reshape(x, [batch * length, d]);
      // [batch * length, d] -> [batch * heads, length, headDim].
      const split = (projected: tf.Tensor) =>
        tf.reshape(
          tf.transpose(tf.reshape(projected, [batch, length, heads, headDim]), [0, 2, 1, 3]),
          [batch * heads, length, headDim],
        );
      const query = split(this.dense(rows, 'query'));
      const key = split(this.dense(rows, 'key'));
      const value = split(this.dense(rows, 'value'));
      // Scaled dot-product attention: softmax(Q Kᵀ / sqrt(headDim)) V, per head.
      const scores = tf.mul(
        tf.matMul(query as tf.Tensor3D, key as tf.Tensor3D, false, true),
        1 / Math.sqrt(headDim),
      );
      const attended = tf.matMul(tf.softmax(scores) as tf.Tensor3D, value as tf.Tensor3D);
      const merged = tf.reshape(
        tf.transpose(tf.reshape(attended, [batch, heads, length, headDim]), [0, 2, 1, 3]),
        [batch * length, d],
      );
      const attention = this.dropout(this.dense(merged, 'attention_output'), training);
      const afterAttention = this.layerNorm(tf.add(rows, attention), 'attention_norm');
      const hidden = tf.relu(this.dense(afterAttention, 'feed_forward'));
      const feedForward = this.dropout(this.dense(hidden, 'feed_forward_output'), training);
      const out = this.layerNorm(tf.add(afterAttention, feedForward), 'feed_forward_norm');
      return tf.reshape(out, [batch, length, d]);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    const initializers: tf.serialization.ConfigDict = {};
    for (const kernel of BLOCK_KERNELS) {
      initializers[`${kernel}Initializer`] = initializerConfig(this.initializers[kernel]);
    }
    return {
      embedDim: this.embedDim,
      numHeads: this.numHeads,
      feedForwardDim: this.feedForwardDim,
      dropoutRate: this.dropoutRate,
      layerNormEpsilon: this.layerNormEpsilon,
      ...initializers,
      ...super.getConfig(),
    };
  }
}

// At import: a topology naming these classes builds wherever @tessera/ml is loaded (its
// entry imports this module for the side effect, in Node and in the browser bundle).
tf.serialization.registerClass(TokenAndPositionEmbedding);
tf.serialization.registerClass(TransformerBlock);

/** The layer classes this module registers, by the class_name a topology gives them. */
export const TRANSFORMER_LAYER_CLASSES = [
  TokenAndPositionEmbedding.className,
  TransformerBlock.className,
] as const;
