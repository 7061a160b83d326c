export { type DatabaseFlags, openFromFlags } from './database.js';
export { type ExportFormat, type ExportOptions, exportRun } from './export-command.js';
export {
  counterfactualCommand,
  REPLAY_EXIT,
  replayExitCode,
  verifyCommand,
} from './replay-command.js';
export { formatPhaseSummary, formatRoundLine, formatTiming } from './round-report.js';
export {
  CLIENT_NICENESS,
  type RoundTiming,
  type SimulationOptions,
  type SimulationResult,
  simulate,
} from './simulate.js';
