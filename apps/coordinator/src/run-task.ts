import type { Database, RunRecord } from '@tessera/db';
import { ErrorCode, TesseraError, WIRE_LIMITS } from '@tessera/protocol';
import { parseTaskDefinition, type TaskDefinition, taskNeedsStatistics } from '@tessera/tasks';

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
 * evaluation build the model from and encode inputs with. The resolved task (its
 * preprocessing constants filled in by the run's federated statistics round) where the run
 * has one, else the stored version the run's config names.
 */
export async function runTaskDefinition(
  db: Database,
  run: Pick<RunRecord, 'config' | 'resolvedTask'>,
): Promise<RunTask> {
  const sha256 = run.resolvedTask?.sha256 ?? run.config.task.sha256;
  let definition = parsedTasks.get(sha256);
  if (definition === undefined) {
    definition = parseTaskDefinition(await db.tasks.definition(sha256));
    if (parsedTasks.size >= PARSED_TASKS_KEPT) {
      parsedTasks.delete(parsedTasks.keys().next().value as string);
    }
    parsedTasks.set(sha256, definition);
  }
  return { sha256, definition };
}
