export {
  modelWithWeights,
  predictProbabilities,
  type TfjsArtifacts,
  type TfjsModelJson,
  toTfjsArtifacts,
} from './artifacts.js';
export {
  BACKEND_PREFERENCES,
  type BackendInfo,
  type BackendName,
  type BackendPreference,
  currentBackend,
  type InitBackendOptions,
  initBackend,
} from './backend.js';
export { CPU_WRAPPED_KERNEL_NAMES, registerCpuTrainingKernels } from './cpu-kernels.js';
export { closeTrainingWorkers } from './data-parallel.js';
export {
  type CreateModelOptions,
  createModel,
  isModelName,
  MODEL_NAMES,
  type ModelName,
  type ModelSpec,
  modelSpec,
} from './models.js';
export {
  createModelEvaluator,
  DEFAULT_EVALUATION_BATCH,
  type EngineEvaluationResult,
  type EvaluationEngine,
  loadNativeEvaluationAddon,
  type ModelEvaluator,
  type ModelEvaluatorOptions,
  type NativeEvaluationAddon,
  NativeEvaluator,
  type NativeEvaluatorOptions,
} from './native-evaluation.js';
export {
  type DenseEngine,
  type NativePlan,
  type NativePlanResult,
  type NativeStepResult,
  NativeTrainer,
  type NativeTrainerOptions,
  type NativeTrainingAddon,
  planNativeTraining,
  setNativeDenseEngine,
} from './native-training.js';
export {
  type BuildTaskModelOptions,
  buildTaskModel,
  type CheckTaskModelOptions,
  checkTaskModel,
  DEFAULT_MAX_TASK_PARAMS,
  type TaskModelSummary,
  taskModelWithWeights,
} from './task-model.js';
export {
  AUTO_PARALLEL_MIN_BATCH,
  type EvaluationResult,
  evaluateModel,
  type LabelArray,
  MNIST_OBJECTIVE,
  type TrainingData,
  type TrainingLoop,
  type TrainingObjective,
  type TrainOptions,
  type TrainProgress,
  type TrainResult,
  taskObjective,
  trainLocal,
} from './train.js';
// Side effect too: registers the Transformer layer classes, so task topologies can name them.
export {
  TokenAndPositionEmbedding,
  type TokenAndPositionEmbeddingArgs,
  TRANSFORMER_LAYER_CLASSES,
  TransformerBlock,
  type TransformerBlockArgs,
} from './transformer-layers.js';
export {
  registerWasmTrainingKernels,
  WASM_EXTRA_KERNEL_NAMES,
  WASM_WRAPPED_KERNEL_NAMES,
} from './wasm-kernels.js';
export { getFlatWeights, initialWeights, readFlatWeights, setFlatWeights } from './weights.js';
export { zooTopology } from './zoo-topology.js';
