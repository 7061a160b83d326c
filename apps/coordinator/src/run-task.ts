import type { Database, RunRecord } from '@tessera/db';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { parseTaskDefinition, type TaskDefinition, taskNeedsStatistics } from '@tessera/tasks';

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

/** A stored task, parsed: its content address and its definition. */
export interface RunTask {
  /** sha256 of the definition (content-addressed: a cache key that never goes stale). */
  sha256: string;
  definition: TaskDefinition;
}

// Parsing a definition (a text task's vocabulary can be large) is done once per content.
const parsedTasks = new Map<string, TaskDefinition>();
const PARSED_TASKS_KEPT = 32;

/**
 * The task definition this run trains: what predict, the model download and central
 * evaluation build the model from and encode inputs with. Today the stored version the run's
 * config names (by sha256); the one place to change when a run trains a resolved task (its
 * preprocessing constants filled in by a federated statistics round).
 */
export async function runTaskDefinition(
  db: Database,
  run: Pick<RunRecord, 'config'>,
): Promise<RunTask> {
  const { sha256 } = run.config.task;
  let definition = parsedTasks.get(sha256);
  if (definition === undefined) {
    definition = parseTaskDefinition((await db.tasks.get(sha256)).definition);
    if (parsedTasks.size >= PARSED_TASKS_KEPT) {
      parsedTasks.delete(parsedTasks.keys().next().value as string);
    }
    parsedTasks.set(sha256, definition);
  }
  return { sha256, definition };
}
