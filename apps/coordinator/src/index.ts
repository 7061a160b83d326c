export { createApi } from './api.js';
export { MnistCentralEvaluator } from './central-eval.js';
export { Coordinator, type CoordinatorOptions } from './coordinator.js';
export { type CentralEvaluator, type EngineDeps, type RoundSummary, RunEngine } from './engine.js';
export { createLogger, type Logger, type LogLevel, parseLogLevel } from './logger.js';
export {
  type ClientRegistry,
  type ClientSession,
  type ClientTask,
  LocalClientRegistry,
} from './registry.js';
export { RoundState } from './round-state.js';
export {
  type CreateRunRequest,
  checkRunConfig,
  createRunSchema,
  RUN_CONFIG_CHOICES,
} from './run-config.js';
export { type SamplingPolicy, sampleSize, selectClients } from './sampling.js';
export type { Transport } from './transport.js';
