export { type CsvOptions, loadCsvExamples, parseCsvExamples } from './csv.js';
export { type Examples, toExamples } from './examples.js';
export { loadMnist, type MnistSplit, type MnistSplitName, parseMnistIdx } from './mnist.js';
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
