export { FedAvg, weightedEvaluation } from './fedavg.js';
export { FedAvgM, type FedAvgMOptions } from './fedavgm.js';
export {
  createStrategy,
  parseStrategyOptions,
  STRATEGY_NAMES,
  STRATEGY_OPTIONS,
} from './registry.js';
export { FedMedian, TrimmedMean } from './robust.js';
export type {
  AggregateResult,
  EvaluationReply,
  EvaluationResult,
  RoundAggregator,
  Strategy,
  TrainUpdate,
} from './strategy.js';
export { WeightedMetrics, WeightedSum } from './weighted.js';
