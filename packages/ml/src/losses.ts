import * as tf from '@tensorflow/tfjs-core';

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
