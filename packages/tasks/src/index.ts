export {
  BUILTIN_DATASET_TASK_PARAM_COUNTS,
  BUILTIN_MNIST_TASKS,
  BUILTIN_TASK_FOR_MODEL,
  BUILTIN_TASKS,
  builtinTask,
} from './builtin.js';
export { canonicalJson } from './canonical-json.js';
export {
  featureWidth,
  minimumFeatureWidth,
  outputUnits,
  type StatisticsNeeds,
  taskNeedsStatistics,
} from './geometry.js';
export { taskSha256 } from './hash.js';
export {
  AUC_BINS,
  addMetricSums,
  aucBinTies,
  emptyMetricSums,
  exactAuc,
  histogramAuc,
  type MetricSums,
  type MetricValues,
  metricValues,
  type ScoreHistogram,
  scoreBin,
} from './metrics.js';
export {
  type ImageInput,
  LOSS_FOR_OUTPUT,
  METRIC_OUTPUTS,
  parseTaskDefinition,
  TASK_LOSSES,
  TASK_METRICS,
  TASK_NAME_PATTERN,
  TASK_SCHEMA_VERSION,
  type TabularColumn,
  type TabularInput,
  type TaskDefinition,
  type TaskInput,
  type TaskLoss,
  type TaskMetric,
  type TaskModel,
  type TaskOutput,
  type TextInput,
  taskDefinitionSchema,
  taskInputSchema,
  taskModelSchema,
  taskOutputSchema,
} from './schema.js';
export { sha256Hex, sha256HexOfText } from './sha256.js';
