// The Node entry: the browser-safe part (browser.ts) plus the loaders that read files.
export * from './browser.js';
export { loadCsvExamples } from './csv-file.js';
export { loadMnist } from './mnist.js';
