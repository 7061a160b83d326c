export { CenteredClipping, NormBoundedFedAvg } from './clipping.js';
export {
  type AdaptiveClipping,
  DpFedAvg,
  type DpFedAvgOptions,
  type GaussianNoise,
  type PrivacyStatus,
  type RoundPrivacy,
  vectorNoiseMultiplier,
} from './dp.js';
export { EXACT_SUM_FORMAT_VERSION, ExactWeightedSum } from './exact-sum.js';
export { FedAvg, weightedEvaluation } from './fedavg.js';
export { FedAvgM, type FedAvgMOptions } from './fedavgm.js';
export { FedAdagrad, FedAdam, type FedOptOptions, FedYogi } from './fedopt.js';
export { FedProx, type FedProxOptions } from './fedprox.js';
export { Bulyan, Krum } from './krum.js';
export { checkExactUpdate, checkPartial, PartialRound, type RoundPartial } from './partial.js';
export {
  createStrategy,
  isLinearStrategy,
  minUpdatesFor,
  parseStrategyOptions,
  recordedArithmetic,
  runRulesFor,
  STRATEGY_NAMES,
  STRATEGY_OPTIONS,
  type StrategyDependencies,
} from './registry.js';
export { FedMedian, TrimmedMean } from './robust.js';
export {
  SCAFFOLD_MAX_PARAMETERS,
  SCAFFOLD_OPTION,
  Scaffold,
  type ScaffoldOptions,
} from './scaffold.js';
export {
  decodeStrategyState,
  encodeStrategyState,
  STATE_FORMAT_VERSION,
  type StrategyState,
} from './state.js';
export type {
  AggregateResult,
  ClientTrainSettings,
  EvaluationReply,
  EvaluationResult,
  RoundAggregator,
  Strategy,
  TrainUpdate,
} from './strategy.js';
export {
  AGGREGATION_ARITHMETICS,
  type AggregationArithmetic,
  createModelSum,
  type MetricMeans,
  type ModelSum,
  WeightedMetrics,
  WeightedSum,
} from './weighted.js';
