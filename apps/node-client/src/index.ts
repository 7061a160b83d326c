export {
  type ClientIdentity,
  type ClientObserver,
  type ClientOptions,
  NODE_CLIENT_IDENTITY,
  TesseraClient,
  TfjsTrainer,
  type TrainingProgress,
} from './client.js';
export { type DataOptions, type LocalData, loadLocalData } from './data-source.js';
