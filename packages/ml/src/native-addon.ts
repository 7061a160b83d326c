/** The part of @tessera/ml-native's addon the native training loop calls (training.cc, layers.cc). */

declare const nativeConvLayerBrand: unique symbol;
/** A convolution layer made by the addon (its oneDNN primitives live in C++). */
export type NativeConvLayer = { readonly [nativeConvLayerBrand]: true };

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
    labels: Int32Array,
    dlogits: Float32Array,
    sizes: Int32Array,
    out: Float64Array,
  ): void;
  /** w = w + (-learningRate) g. */
  sgdUpdate(w: Float32Array, g: Float32Array, learningRate: number): void;
  /**
   * The loop's SGD step on one weight (layers.cc): with an anchor (FedProx) g += mu (w -
   * anchor) first, then w += (-learningRate) g.
   */
  sgdStep(
    w: Float32Array,
    g: Float32Array,
    anchor: Float32Array | null,
    learningRate: number,
    mu: number,
  ): void;
  /**
   * probabilities = sigmoid(logits); out = [mean clipped binary cross-entropy, correct];
   * dlogits = the gradient of the mean loss (0 where Keras' clip holds p).
   */
  sigmoidCrossEntropy(
    logits: Float32Array,
    targets: Float32Array,
    probabilities: Float32Array,
    dlogits: Float32Array,
    out: Float64Array,
  ): void;
  /** out = [mean squared error, sum |e|, sum e^2]; dpredictions = 2 e / n. */
  meanSquaredError(
    predictions: Float32Array,
    targets: Float32Array,
    dpredictions: Float32Array,
    out: Float64Array,
  ): void;
  /**
   * y = x / (1 - rate) where kept, 0 where dropped; mask = 1 where kept. The mask is a
   * function of (seed, layer, step) alone (layers.cc says how it is drawn).
   */
  dropoutForward(
    x: Float32Array,
    y: Float32Array,
    mask: Uint8Array,
    rate: number,
    seed: number,
    layer: number,
    step: number,
  ): void;
  dropoutBackward(dy: Float32Array, mask: Uint8Array, dx: Float32Array, rate: number): void;
  /** sizes = [batch, positions, channels]: y[b, c] = mean over p of x[b, p, c]. */
  globalAveragePoolForward(x: Float32Array, y: Float32Array, sizes: Int32Array): void;
  globalAveragePoolBackward(dy: Float32Array, dx: Float32Array, sizes: Int32Array): void;
  /** sizes as maxPoolForward's. */
  averagePoolForward(x: Float32Array, y: Float32Array, sizes: Int32Array): void;
  averagePoolBackward(dy: Float32Array, dx: Float32Array, sizes: Int32Array): void;
  /** sizes = [rows, cols]; normalized and inverseStd are kept for the backward pass. */
  layerNormForward(
    x: Float32Array,
    gamma: Float32Array,
    beta: Float32Array,
    y: Float32Array,
    normalized: Float32Array,
    inverseStd: Float32Array,
    sizes: Int32Array,
    epsilon: number,
  ): void;
  layerNormBackward(
    dy: Float32Array,
    normalized: Float32Array,
    inverseStd: Float32Array,
    gamma: Float32Array,
    dx: Float32Array | null,
    dgamma: Float32Array,
    dbeta: Float32Array,
    sizes: Int32Array,
  ): void;
  /** Training mode; sizes = [rows, channels]; moves movingMean and movingVariance as Keras does. */
  batchNormForward(
    x: Float32Array,
    gamma: Float32Array,
    beta: Float32Array,
    movingMean: Float32Array,
    movingVariance: Float32Array,
    y: Float32Array,
    normalized: Float32Array,
    inverseStd: Float32Array,
    sizes: Int32Array,
    epsilon: number,
    momentum: number,
  ): void;
  batchNormBackward(
    dy: Float32Array,
    normalized: Float32Array,
    inverseStd: Float32Array,
    gamma: Float32Array,
    dx: Float32Array | null,
    dgamma: Float32Array,
    dbeta: Float32Array,
    sizes: Int32Array,
  ): void;
  /** sizes = [tokens, vocabulary, dim]; ids are integers 0..vocabulary-1 held as floats. */
  embeddingForward(
    ids: Float32Array,
    table: Float32Array,
    y: Float32Array,
    sizes: Int32Array,
  ): void;
  /** dtable = 0, then dtable[ids[t]] += dy[t]. */
  embeddingBackward(
    ids: Float32Array,
    dy: Float32Array,
    dtable: Float32Array,
    sizes: Int32Array,
  ): void;
  /** out = a + b (a residual connection); out may be a or b. */
  addInto(a: Float32Array, b: Float32Array, out: Float32Array): void;
  /** sizes = [batch, length, vocabulary, dim]: y[b, t] = tokens[ids[b, t]] + positions[t]. */
  tokenPositionEmbeddingForward(
    ids: Float32Array,
    tokens: Float32Array,
    positions: Float32Array,
    y: Float32Array,
    sizes: Int32Array,
  ): void;
  tokenPositionEmbeddingBackward(
    ids: Float32Array,
    dy: Float32Array,
    dtokens: Float32Array,
    dpositions: Float32Array,
    sizes: Int32Array,
  ): void;
  /**
   * Multi-head self-attention on [batch * length, heads * headDim] projections; sizes =
   * [batch, length, heads, headDim]; probabilities [batch, heads, length, length] kept.
   */
  attentionForward(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    probabilities: Float32Array,
    out: Float32Array,
    sizes: Int32Array,
    scale: number,
  ): void;
  attentionBackward(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    probabilities: Float32Array,
    dout: Float32Array,
    dq: Float32Array,
    dk: Float32Array,
    dv: Float32Array,
    sizes: Int32Array,
    scale: number,
  ): void;
  /** The library convolutions run on, e.g. 'oneDNN 2.6.3' or 'im2col + OpenBLAS'. */
  convEngine(): string;
  /**
   * What runs the dense products and with which kernels, e.g. 'oneDNN sgemm (avx512_core JIT)'
   * or 'OpenBLAS sgemm (Haswell kernels)'.
   */
  denseEngine(): string;
  /**
   * The dense products' library from now on, process-wide: 'auto' (oneDNN where built, else
   * OpenBLAS) or 'openblas' (benchmarks side by side; a CPU where oneDNN misbehaves).
   */
  setDenseEngine(engine: DenseEngine): void;
}

/** Which library runs the native loop's dense products (NativeTrainingAddon.setDenseEngine). */
export type DenseEngine = 'auto' | 'openblas';
