import * as tf from '@tensorflow/tfjs-core';
import type { TaskLoss } from '@tessera/tasks';

/** Keras' clip for the log of softmax outputs: keeps log(0) out of the loss and gradient. */
const PROBABILITY_EPSILON = 1e-7;

/** Mean categorical cross-entropy of softmax outputs against one-hot targets. */
export function crossEntropy(probabilities: tf.Tensor, oneHot: tf.Tensor): tf.Scalar {
  const clipped = tf.clipByValue(probabilities, PROBABILITY_EPSILON, 1 - PROBABILITY_EPSILON);
  return tf.neg(tf.mean(tf.sum(tf.mul(oneHot, tf.log(clipped)), -1))) as tf.Scalar;
}

export function countCorrect(probabilities: tf.Tensor, oneHot: tf.Tensor): tf.Scalar {
  return tf.sum(tf.cast(tf.equal(tf.argMax(probabilities, -1), tf.argMax(oneHot, -1)), 'float32'));
}

/**
 * Mean binary cross-entropy of sigmoid outputs (the positive class's probability, [n, 1])
 * against 0/1 targets, clipped as Keras clips it.
 */
export function binaryCrossEntropy(probabilities: tf.Tensor, targets: tf.Tensor): tf.Scalar {
  const p = tf.clipByValue(probabilities, PROBABILITY_EPSILON, 1 - PROBABILITY_EPSILON);
  const perExample = tf.add(
    tf.mul(targets, tf.log(p)),
    tf.mul(tf.sub(1, targets), tf.log(tf.sub(1, p))),
  );
  return tf.neg(tf.mean(perExample)) as tf.Scalar;
}

/** Mean over examples of the squared error (one output unit: the mean of (y' - y)^2). */
export function meanSquaredError(predictions: tf.Tensor, targets: tf.Tensor): tf.Scalar {
  return tf.mean(tf.squaredDifference(predictions, targets)) as tf.Scalar;
}

/** A task's loss on the model's outputs: the batch mean, what SGD minimises. */
export function lossFunction(
  loss: TaskLoss,
): (outputs: tf.Tensor, targets: tf.Tensor) => tf.Scalar {
  switch (loss) {
    case 'softmax-cross-entropy':
      return crossEntropy;
    case 'sigmoid-binary-cross-entropy':
      return binaryCrossEntropy;
    case 'mean-squared-error':
      return meanSquaredError;
  }
}

/**
 * A batch's additive statistics besides the loss, as one tensor: classification [correct],
 * regression [sum |y' - y|, sum (y' - y)^2]. Binary outputs count as correct when the
 * probability is on the true class's side of 1/2.
 */
export function batchStatistics(
  loss: TaskLoss,
  outputs: tf.Tensor,
  targets: tf.Tensor,
): tf.Tensor1D {
  switch (loss) {
    case 'softmax-cross-entropy':
      return tf.reshape(countCorrect(outputs, targets), [1]);
    case 'sigmoid-binary-cross-entropy': {
      const predicted = tf.cast(tf.greaterEqual(outputs, 0.5), 'float32');
      return tf.reshape(tf.sum(tf.cast(tf.equal(predicted, targets), 'float32')), [1]);
    }
    case 'mean-squared-error': {
      const error = tf.sub(outputs, targets);
      return tf.stack([tf.sum(tf.abs(error)), tf.sum(tf.square(error))]) as tf.Tensor1D;
    }
  }
}
