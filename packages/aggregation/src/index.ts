export { FedAvg, weightedEvaluation } from './fedavg.js';
export { createStrategy, STRATEGY_NAMES } from './registry.js';
export type {
  AggregateResult,
  EvaluationReply,
  EvaluationResult,
  RoundAggregator,
  Strategy,
  TrainUpdate,
} from './strategy.js';
export { WeightedMetrics, WeightedSum } from './weighted.js';
