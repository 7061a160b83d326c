/**
 * Node options for a worker thread that runs built code: a parent's export conditions are
 * dropped (tests resolve workspace packages to their TypeScript sources, which plain Node
 * cannot load in a worker). Used by central evaluation and predict.
 */
export function builtWorkerExecArgv(): string[] {
  return process.execArgv.filter(
    (arg, index, all) =>
      !arg.startsWith('--conditions') &&
      !arg.startsWith('-C') &&
      !(all[index - 1] === '--conditions' || all[index - 1] === '-C'),
  );
}
