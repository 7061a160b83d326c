export {
  BACKEND_PREFERENCES,
  type BackendInfo,
  type BackendName,
  type BackendPreference,
  currentBackend,
  type InitBackendOptions,
  initBackend,
} from './backend.js';
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
  type EvaluationResult,
  evaluateModel,
  type TrainingData,
  type TrainOptions,
  type TrainProgress,
  type TrainResult,
  trainLocal,
} from './train.js';
export {
  registerWasmTrainingKernels,
  WASM_EXTRA_KERNEL_NAMES,
  WASM_WRAPPED_KERNEL_NAMES,
} from './wasm-kernels.js';
export { getFlatWeights, initialWeights, setFlatWeights } from './weights.js';
