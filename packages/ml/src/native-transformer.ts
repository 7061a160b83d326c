import type { LayerVariable } from '@tensorflow/tfjs-layers';
import {
  dropoutStream,
  type ForwardContext,
  type NativeWeight,
  namedWeights,
  type PlanInput,
  type Planned,
  trainable,
} from './native-layers.js';

/**
 * The native loop's planners for the text task's custom layers (transformer-layers.ts):
 * TokenAndPositionEmbedding and TransformerBlock, computing what their tfjs `call`s compute
 * (the block: Q, K, V projections, per-head softmax(Q Kᵀ / sqrt(headDim)) V, output
 * projection, dropout, residual, LayerNorm, feed-forward ReLU, dropout, residual,
 * LayerNorm) with the addon's kernels; the products are OpenBLAS SGEMMs.
 */

function planTokenAndPositionEmbedding(input: PlanInput): Planned {
  const { layer, config, inSize, outSize } = input;
  const variables = namedWeights(layer, ['token_embeddings', 'position_embeddings']);
  if (typeof variables === 'string') return variables;
  const [tokenVariable, positionVariable] = variables as [LayerVariable, LayerVariable];
  const vocabulary = config['vocabularySize'] as number;
  const length = config['sequenceLength'] as number;
  const dim = config['embedDim'] as number;
  return {
    name: layer.name,
    className: 'TokenAndPositionEmbedding',
    inSize,
    outSize,
    create({ addon }) {
      const tokens = trainable(tokenVariable);
      const positions = trainable(positionVariable);
      const sizes = new Int32Array(4);
      return {
        weights: [tokens, positions],
        forward(size, ids, y) {
          sizes.set([size, length, vocabulary, dim]);
          addon.tokenPositionEmbeddingForward(ids, tokens.values, positions.values, y, sizes);
        },
        backward(size, ids, _y, dy, dx) {
          sizes.set([size, length, vocabulary, dim]);
          addon.tokenPositionEmbeddingBackward(ids, dy, tokens.gradient, positions.gradient, sizes);
          // Token ids are not differentiable (the layer casts them to int32).
          dx?.fill(0);
        },
      };
    },
  };
}

/** The block's weights, in its build order (transformer-layers.ts). */
const BLOCK_WEIGHTS = [
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
] as const;

type BlockWeight = (typeof BLOCK_WEIGHTS)[number];

function planTransformerBlock(input: PlanInput): Planned {
  const { layer, config, inShape, inSize } = input;
  const variables = namedWeights(layer, BLOCK_WEIGHTS);
  if (typeof variables === 'string') return variables;
  const d = config['embedDim'] as number;
  const heads = config['numHeads'] as number;
  const ff = config['feedForwardDim'] as number;
  const rate = (config['dropoutRate'] as number | undefined) ?? 0;
  const epsilon = config['layerNormEpsilon'] as number;
  const length = inShape[0] ?? 0;
  const headDim = d / heads;
  // As the layer scales the scores: by 1 / sqrt(headDim), a float32 scalar.
  const scale = 1 / Math.sqrt(headDim);
  return {
    name: layer.name,
    className: 'TransformerBlock',
    inSize,
    outSize: inSize,
    create({ addon, maxBatch, index }) {
      const w = Object.fromEntries(
        BLOCK_WEIGHTS.map((name, i) => [name, trainable(variables[i] as LayerVariable)]),
      ) as Record<BlockWeight, NativeWeight>;
      const rowsMax = maxBatch * length;
      const buffer = (width: number) => new Float32Array(rowsMax * width);
      const q = buffer(d);
      const k = buffer(d);
      const v = buffer(d);
      const probabilities = new Float32Array(maxBatch * heads * length * length);
      const merged = buffer(d);
      const attentionProjected = buffer(d);
      const attentionDropped = buffer(d);
      const attentionMask = new Uint8Array(rate > 0 ? rowsMax * d : 0);
      const sum1 = buffer(d);
      const normalized1 = buffer(d);
      const afterAttention = buffer(d);
      const inverseStd1 = new Float32Array(rowsMax);
      const hidden = buffer(ff);
      const feedForwardOut = buffer(d);
      const feedForwardDropped = buffer(d);
      const feedForwardMask = new Uint8Array(rate > 0 ? rowsMax * d : 0);
      const sum2 = buffer(d);
      const normalized2 = buffer(d);
      const inverseStd2 = new Float32Array(rowsMax);
      // Backward.
      const dSum2 = buffer(d);
      const dFeedForward = buffer(d);
      const dHidden = buffer(ff);
      const dAfterAttention = buffer(d);
      const dAfterAttentionFf = buffer(d);
      const dSum1 = buffer(d);
      const dAttention = buffer(d);
      const dMerged = buffer(d);
      const dq = buffer(d);
      const dk = buffer(d);
      const dv = buffer(d);
      const dxPart = buffer(d);

      const denseSizes = new Int32Array(3);
      const normSizes = new Int32Array(2);
      const attentionSizes = new Int32Array(4);
      let rows = 0;
      const view = <T extends Float32Array | Uint8Array>(array: T, width: number): T =>
        array.subarray(0, rows * width) as T;
      const dense = (
        x: Float32Array,
        kernel: NativeWeight,
        bias: NativeWeight,
        y: Float32Array,
        relu = false,
      ) => {
        denseSizes.set([rows, kernel.values.length / bias.values.length, bias.values.length]);
        addon.denseForward(x, kernel.values, bias.values, y, denseSizes, relu);
      };
      const denseBack = (
        x: Float32Array,
        dz: Float32Array,
        kernel: NativeWeight,
        bias: NativeWeight,
        dx: Float32Array | null,
      ) => {
        denseSizes.set([rows, kernel.values.length / bias.values.length, bias.values.length]);
        addon.denseBackward(
          x,
          dz,
          kernel.values,
          dx,
          kernel.gradient,
          bias.gradient,
          denseSizes,
          1,
          0,
        );
      };

      /** x after dropout number `sub` of the block (x itself at rate 0). */
      const dropout = (
        sub: 1 | 2,
        x: Float32Array,
        out: Float32Array,
        mask: Uint8Array,
        { seed, step, inference }: ForwardContext,
      ): Float32Array => {
        // At inference (as at rate 0) dropout is the identity.
        if (rate === 0 || inference === true) return x;
        const stream = dropoutStream(index, sub);
        addon.dropoutForward(x, view(out, d), view(mask, d), rate, seed, stream, step);
        return view(out, d);
      };
      const dropoutBack = (dy: Float32Array, mask: Uint8Array, out: Float32Array) => {
        if (rate === 0) return dy;
        addon.dropoutBackward(dy, view(mask, d), view(out, d), rate);
        return view(out, d);
      };

      return {
        weights: BLOCK_WEIGHTS.map((name) => w[name]),
        forward(size, x, y, context) {
          rows = size * length;
          normSizes.set([rows, d]);
          attentionSizes.set([size, length, heads, headDim]);
          dense(x, w.query_kernel, w.query_bias, view(q, d));
          dense(x, w.key_kernel, w.key_bias, view(k, d));
          dense(x, w.value_kernel, w.value_bias, view(v, d));
          addon.attentionForward(
            view(q, d),
            view(k, d),
            view(v, d),
            probabilities.subarray(0, size * heads * length * length),
            view(merged, d),
            attentionSizes,
            scale,
          );
          dense(
            view(merged, d),
            w.attention_output_kernel,
            w.attention_output_bias,
            view(attentionProjected, d),
          );
          const attention = dropout(
            1,
            view(attentionProjected, d),
            attentionDropped,
            attentionMask,
            context,
          );
          addon.addInto(x, attention, view(sum1, d));
          addon.layerNormForward(
            view(sum1, d),
            w.attention_norm_gamma.values,
            w.attention_norm_beta.values,
            view(afterAttention, d),
            view(normalized1, d),
            inverseStd1.subarray(0, rows),
            normSizes,
            epsilon,
          );
          dense(
            view(afterAttention, d),
            w.feed_forward_kernel,
            w.feed_forward_bias,
            view(hidden, ff),
            true,
          );
          dense(
            view(hidden, ff),
            w.feed_forward_output_kernel,
            w.feed_forward_output_bias,
            view(feedForwardOut, d),
          );
          const feedForward = dropout(
            2,
            view(feedForwardOut, d),
            feedForwardDropped,
            feedForwardMask,
            context,
          );
          addon.addInto(view(afterAttention, d), feedForward, view(sum2, d));
          addon.layerNormForward(
            view(sum2, d),
            w.feed_forward_norm_gamma.values,
            w.feed_forward_norm_beta.values,
            y,
            view(normalized2, d),
            inverseStd2.subarray(0, rows),
            normSizes,
            epsilon,
          );
        },
        backward(size, x, _y, dy, dx) {
          rows = size * length;
          normSizes.set([rows, d]);
          attentionSizes.set([size, length, heads, headDim]);
          addon.layerNormBackward(
            dy,
            view(normalized2, d),
            inverseStd2.subarray(0, rows),
            w.feed_forward_norm_gamma.values,
            view(dSum2, d),
            w.feed_forward_norm_gamma.gradient,
            w.feed_forward_norm_beta.gradient,
            normSizes,
          );
          // sum2 = afterAttention + dropout(feedForward): both receive dSum2.
          const dFf = dropoutBack(view(dSum2, d), feedForwardMask, dFeedForward);
          denseBack(
            view(hidden, ff),
            dFf,
            w.feed_forward_output_kernel,
            w.feed_forward_output_bias,
            view(dHidden, ff),
          );
          addon.reluBackward(view(hidden, ff), view(dHidden, ff));
          denseBack(
            view(afterAttention, d),
            view(dHidden, ff),
            w.feed_forward_kernel,
            w.feed_forward_bias,
            view(dAfterAttentionFf, d),
          );
          addon.addInto(view(dSum2, d), view(dAfterAttentionFf, d), view(dAfterAttention, d));
          addon.layerNormBackward(
            view(dAfterAttention, d),
            view(normalized1, d),
            inverseStd1.subarray(0, rows),
            w.attention_norm_gamma.values,
            view(dSum1, d),
            w.attention_norm_gamma.gradient,
            w.attention_norm_beta.gradient,
            normSizes,
          );
          // sum1 = x + dropout(attention): both receive dSum1.
          const dAttn = dropoutBack(view(dSum1, d), attentionMask, dAttention);
          denseBack(
            view(merged, d),
            dAttn,
            w.attention_output_kernel,
            w.attention_output_bias,
            view(dMerged, d),
          );
          addon.attentionBackward(
            view(q, d),
            view(k, d),
            view(v, d),
            probabilities.subarray(0, size * heads * length * length),
            view(dMerged, d),
            view(dq, d),
            view(dk, d),
            view(dv, d),
            attentionSizes,
            scale,
          );
          // dx = dSum1 + the three projections' input gradients.
          const part = dx === null ? null : view(dxPart, d);
          if (dx !== null) dx.set(view(dSum1, d));
          for (const [gradient, kernel, bias] of [
            [dq, w.query_kernel, w.query_bias],
            [dk, w.key_kernel, w.key_bias],
            [dv, w.value_kernel, w.value_bias],
          ] as const) {
            denseBack(x, view(gradient, d), kernel, bias, part);
            if (dx !== null && part !== null) addon.addInto(dx, part, dx);
          }
        },
      };
    },
  };
}

/** The planners of transformer-layers.ts' classes, by class name. */
export const TRANSFORMER_PLANNERS: Readonly<Record<string, (input: PlanInput) => Planned>> = {
  TokenAndPositionEmbedding: planTokenAndPositionEmbedding,
  TransformerBlock: planTransformerBlock,
};
