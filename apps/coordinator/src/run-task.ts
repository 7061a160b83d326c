import { ErrorCode, TesseraError, WIRE_LIMITS } from '@tessera/protocol';
import { parseTaskDefinition, taskNeedsStatistics } from '@tessera/tasks';

/**
 * Refuses, at run creation, a task this coordinator cannot train: one that leaves more
 * columns to the federated statistics round than one `statistics` reply may summarise
 * (WIRE_LIMITS.maxStatisticsColumns), since no client could answer it. Nothing is stored.
 * Any other task that needs statistics gets its statistics round before round 1.
 */
export function refuseUntrainableTask(task: { definition: unknown }): void {
  const needs = taskNeedsStatistics(parseTaskDefinition(task.definition));
  if (needs === null) return;
  const columns = needs.standardize.length + needs.categories.length;
  if (columns <= WIRE_LIMITS.maxStatisticsColumns) return;
  throw new TesseraError(
    ErrorCode.INVALID_ARGUMENT,
    `task: ${columns} columns are left to the federated statistics round, more than the ${WIRE_LIMITS.maxStatisticsColumns} one statistics reply may carry: give the constants of some in the task`,
    { field: 'task', columns },
  );
}
