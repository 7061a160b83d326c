// The Node entry: the browser-safe part (browser.ts) plus the loaders that read files.
export * from './browser.js';
export { loadCsvExamples } from './csv-file.js';
export {
  type DatasetSplit,
  emailText,
  loadPenguins,
  loadSpamAssassin,
  PENGUINS_INPUT,
  PENGUINS_OUTPUT,
  penguinsCsv,
  SPAM_ASSASSIN_OUTPUT,
  type SplitOptions,
} from './datasets.js';
export { loadMnist } from './mnist.js';
export { loadTabularFile, loadTextFile, readTextFile } from './task-files.js';
