// The connection and round loop without tfjs: for a page that holds the socket while a Web
// Worker trains (it passes its own LocalTrainer). Node hosts use the package's main entry.
export {
  type ClientIdentity,
  type ClientObserver,
  type CoreClientOptions,
  failureReason,
  MAX_FAILURE_REASON_LENGTH,
  TesseraClient,
  type TrainingProgress,
} from './client.js';
export {
  type ControlVariateStep,
  type ControlVariateStore,
  controlCorrection,
  MemoryControlVariates,
  type StagedControl,
  scaffoldControlStep,
} from './control-variates.js';
export {
  checkImageTaskData,
  ImageSetTaskData,
  type ImageSource,
  type LabelledImage,
} from './image-data.js';
export {
  type OpenSecAggSession,
  SecAggParticipation,
  type SecAggSend,
  type SecAggSession,
} from './secure-aggregation.js';
export {
  type LocalTrainingSetting,
  type LocalTrainingSettings,
  readStrategySettings,
  TFJS_TRAINER_SETTINGS,
  UNSUPPORTED_STRATEGY_SETTING,
} from './strategy-settings.js';
export {
  assertResolved,
  checkTaskData,
  countDataRows,
  type DataFile,
  describeTask,
  encodeRows,
  FileTaskData,
  isJsonLinesFile,
  readTaskRows,
  type SplitOptions,
  selectExamples,
  splitRows,
  type TaskData,
  type TaskDataCheck,
  type TaskDataSplit,
  type TaskRows,
} from './task-data.js';
export type {
  EvaluateOutcome,
  EvaluateRequest,
  LocalTrainer,
  TrainerProgress,
  TrainOutcome,
  TrainRequest,
} from './trainer.js';
export { RoundFailure } from './trainer.js';
