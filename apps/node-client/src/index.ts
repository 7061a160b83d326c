export {
  type ClientObserver,
  type ClientOptions,
  TesseraClient,
  type TrainingProgress,
} from './client.js';
export { type DataOptions, type LocalData, loadLocalData } from './data-source.js';
