export { createApi, type CreateRunRequest, createRunSchema } from './api.js';
export { Coordinator, type CoordinatorOptions } from './coordinator.js';
export { type CentralEvaluator, type EngineDeps, RunEngine, type RoundSummary } from './engine.js';
export { createLogger, type Logger, type LogLevel, parseLogLevel } from './logger.js';
export { type ClientSession, ClientRegistry, type ClientTask } from './registry.js';
export { RoundState } from './round-state.js';
export { sampleSize, selectClients, type SamplingPolicy } from './sampling.js';
export type { Transport } from './transport.js';
