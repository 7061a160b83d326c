// The browser-safe part of @tessera/data: everything here is pure computation on memory, with
// no Node built-ins. Bundlers pick it through the "browser" export condition; the Node entry
// (index.ts) re-exports it and adds the file loaders.
export { type CsvOptions, parseCsvExamples } from './csv.js';
export { type Examples, toExamples } from './examples.js';
export {
  centreOfMass,
  DIGIT_BOX,
  drawingToMnist,
  type Grayscale,
  inkBounds,
  MNIST_SIDE,
  rgbaToGrayscale,
} from './mnist-digit.js';
export { type MnistSplit, type MnistSplitName, parseMnistIdx } from './mnist-idx.js';
export {
  type DirichletOptions,
  formatPartitionScheme,
  indicesSortedByLabel,
  type PartitionScheme,
  parsePartitionScheme,
  partition,
  partitionDirichlet,
  partitionIid,
  partitionShards,
  type ShardsOptions,
  splitHoldout,
} from './partition.js';
export { createRng, type Rng } from './rng.js';
export { type InputSchema, MNIST_INPUT } from './schema.js';
