/**
 * What a model takes as one example, so that local data can be checked before anything is
 * trained on it (and before a client joins a federation with data that cannot fit).
 */
export interface InputSchema {
  /** Numbers per example. */
  featureSize: number;
  /** Labels are integers in 0..numClasses-1. */
  numClasses: number;
  /** Inclusive bounds of every feature as the model expects it, after any scaling. */
  featureRange: { min: number; max: number };
  /** The features in people's words, for messages: '28x28 pixels'. */
  featureDescription: string;
}

/**
 * The input of every model of the zoo (@tessera/ml's ModelSpec: 784 features, 10 classes):
 * a 28x28 grayscale image, row by row, pixels in [0, 1] (MNIST's 0..255 divided by 255).
 */
export const MNIST_INPUT = {
  featureSize: 784,
  numClasses: 10,
  featureRange: { min: 0, max: 1 },
  featureDescription: '28x28 pixels',
} as const satisfies InputSchema;
