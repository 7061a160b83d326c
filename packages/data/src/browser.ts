// The browser-safe part of @tessera/data: everything here is pure computation on memory, with
// no Node built-ins. Bundlers pick it through the "browser" export condition; the Node entry
// (index.ts) re-exports it and adds the file loaders.
export { checkData, type DataCheck, labelSummary } from './check.js';
export { type CsvOptions, parseCsvExamples } from './csv.js';
export {
  type DelimitedOptions,
  type DelimitedTable,
  detectDelimiter,
  parseDelimited,
} from './delimited.js';
export { type Examples, toExamples } from './examples.js';
export { convertChannels, type DecodedImage, imageFeatures, resizeBilinear } from './image.js';
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
export { type DataProblem, formatProblem } from './row-problems.js';
export { type InputSchema, MNIST_INPUT } from './schema.js';
export {
  type CategoricalColumnStatistics,
  type ColumnStatistics,
  columnsNeedingStatistics,
  combineStatistics,
  MAX_CATEGORIES,
  MAX_CATEGORY_LENGTH,
  type NumericColumnStatistics,
  type PreprocessingConstants,
  parseTabularStatistics,
  preprocessingConstants,
  type StatisticsOptions,
  type TabularStatistics,
  tabularStatistics,
  withPreprocessing,
} from './statistics.js';
export {
  checkTabularSchema,
  isResolved,
  readTabular,
  selectRows,
  type TabularData,
  tabularExamples,
  tabularFeatureSize,
} from './tabular.js';
export type {
  CategoricalColumn,
  ImageSchema,
  NumericColumn,
  TabularColumn,
  TabularSchema,
  TaskExamples,
  TaskInput,
  TaskOutput,
  TextSchema,
  TokenizerSpec,
} from './task-schema.js';
export {
  type JsonLinesOptions,
  parseJsonLines,
  readTextTable,
  selectTexts,
  type TextData,
  type TextTableOptions,
  textExamples,
} from './text.js';
export {
  buildVocabulary,
  createTokenizer,
  FIRST_VOCABULARY_ID,
  PAD_ID,
  type Tokenizer,
  tokens,
  UNKNOWN_ID,
  type VocabularyOptions,
} from './tokenizer.js';
