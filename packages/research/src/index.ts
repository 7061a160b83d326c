/**
 * @tessera/research: what researchers do with recorded runs. Export (CSV / JSON Lines with
 * documented columns), replay (recompute every checkpoint from the kept updates and check its
 * sha256), counterfactual replay under another strategy, and comparison tables and charts.
 */
export { comparisonChartSvg, niceTicks } from './chart.js';
export { comparisonTable, type Series, testSeries } from './compare.js';
export {
  type RunExport,
  readRoundsTable,
  readRunExport,
  readUpdatesTable,
} from './export.js';
export type { RunRecords } from './records.js';
export {
  type CounterfactualOptions,
  counterfactualReplay,
  type RoundCheck,
  type VerifyReport,
  verifyRun,
} from './replay.js';
export {
  type Cell,
  parseCsv,
  ROUND_COLUMNS,
  type Row,
  roundsTable,
  type Table,
  toCsv,
  toJsonLines,
  UPDATE_COLUMNS,
  updatesTable,
} from './tables.js';
