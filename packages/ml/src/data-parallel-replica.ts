import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { countCorrect, crossEntropy } from './losses.js';

/** What one participant reports for its shard of a batch. */
export interface ShardResult {
  /** This shard's share of the batch's mean loss (its loss sum / batch size). */
  loss: number;
  correct: number;
}

/**
 * One participant of data-parallel training (the calling thread or a worker): a model
 * replica, and its slot in the shared gradient buffer. Every participant computes the
 * gradient of its shard's share of the batch loss (sum over the shard / batch size, so
 * the shares add up to the gradient of the batch mean), writes it to its slot, and then
 * every participant adds the slots up in the same order and takes the same SGD step, so
 * the replicas stay identical without sending weights around.
 */
export class Replica {
  readonly paramCount: number;
  private readonly variables: tf.Variable[];
  private readonly sum: Float32Array;
  private readonly participants: number;

  constructor(
    readonly model: LayersModel,
    /**
     * Float32 gradients shared between all participants: 2 x participants x paramCount,
     * two banks used by turns (by step parity), so that a participant may write the
     * next step's gradient while a slower one still adds up the last step's.
     */
    private readonly gradients: Float32Array,
    private readonly slot: number,
  ) {
    this.variables = model.trainableWeights.map((weight) => weight.read() as tf.Variable);
    this.paramCount = this.variables.reduce((total, variable) => total + variable.size, 0);
    this.sum = new Float32Array(this.paramCount);
    this.participants = gradients.length / (2 * this.paramCount);
  }

  private slotOffset(parity: number, slot: number): number {
    return ((parity % 2) * this.participants + slot) * this.paramCount;
  }

  /** Gradient of this shard's share of the batch loss, written to this replica's slot. */
  computeShard(
    features: Float32Array,
    oneHot: Float32Array,
    size: number,
    batchSize: number,
    parity: number,
  ): ShardResult {
    const exampleShape = this.model.inputs[0]?.shape.slice(1) as number[];
    const numClasses = oneHot.length / size;
    const share = size / batchSize;
    let correct = 0;
    const loss = tf.tidy(() => {
      const xs = tf.tensor(features, [size, ...exampleShape]);
      const ys = tf.tensor2d(oneHot, [size, numClasses]);
      const { value, grads } = tf.variableGrads(() => {
        const probabilities = this.model.apply(xs, { training: true }) as tf.Tensor;
        correct = countCorrect(probabilities, ys).dataSync()[0] ?? 0;
        return tf.mul(crossEntropy(probabilities, ys), share) as tf.Scalar;
      }, this.variables);
      let offset = this.slotOffset(parity, this.slot);
      for (const variable of this.variables) {
        const gradient = grads[variable.name];
        if (gradient === undefined) throw new Error(`no gradient for ${variable.name}`);
        this.gradients.set(gradient.dataSync() as Float32Array, offset);
        offset += variable.size;
      }
      return value.dataSync()[0] ?? Number.NaN;
    });
    return { loss, correct };
  }

  /** One SGD step with the sum of the first `slots` gradients (identical everywhere). */
  applySum(slots: number, learningRate: number, parity: number): void {
    const { sum, gradients, paramCount } = this;
    const first = this.slotOffset(parity, 0);
    sum.set(gradients.subarray(first, first + paramCount));
    for (let slot = 1; slot < slots; slot++) {
      const base = this.slotOffset(parity, slot);
      for (let i = 0; i < paramCount; i++)
        sum[i] = (sum[i] as number) + (gradients[base + i] as number);
    }
    let offset = 0;
    tf.tidy(() => {
      const rate = tf.scalar(learningRate);
      for (const variable of this.variables) {
        // A copy: the cpu backend would keep a view of `sum`, which the next step overwrites.
        const step = tf.tensor(sum.slice(offset, offset + variable.size), variable.shape);
        variable.assign(tf.sub(variable, tf.mul(step, rate)));
        offset += variable.size;
      }
    });
  }
}
