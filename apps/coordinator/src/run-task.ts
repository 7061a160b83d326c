import { ErrorCode, TesseraError } from '@tessera/protocol';
import { parseTaskDefinition, taskNeedsStatistics } from '@tessera/tasks';

/**
 * Refuses, at run creation, a task this coordinator cannot train yet: one whose preprocessing
 * waits for constants that only a federated statistics round would compute. Nothing is stored.
 */
export function refuseUntrainableTask(task: { definition: unknown }): void {
  const needs = taskNeedsStatistics(parseTaskDefinition(task.definition));
  if (needs === null) return;
  const columns = [...needs.standardize, ...needs.categories].join(', ');
  throw new TesseraError(
    ErrorCode.INVALID_ARGUMENT,
    `task: needs a federated statistics round, not available yet: give the constants in the task (columns ${columns})`,
    { field: 'task', columns: [...needs.standardize, ...needs.categories] },
  );
}
