import type { Database } from '@tessera/db';
import { MODEL_NAMES, modelSpec } from '@tessera/ml';
import {
  BUILTIN_DATASET_TASK_PARAM_COUNTS,
  BUILTIN_TASK_FOR_MODEL,
  BUILTIN_TASKS,
  taskSha256,
} from '@tessera/tasks';

/** Each built-in task's parameter count: the zoo model's, or the generator's for the others. */
function builtinParamCounts(): Map<string, number> {
  const counts = new Map(Object.entries(BUILTIN_DATASET_TASK_PARAM_COUNTS));
  for (const model of MODEL_NAMES) {
    const name = BUILTIN_TASK_FOR_MODEL[model];
    if (name !== undefined) counts.set(name, modelSpec(model).paramCount);
  }
  return counts;
}

/**
 * Stores the built-in tasks (the MNIST ones, penguins, spam) as tasks like any other
 * (content-addressed, versioned), so that GET /api/tasks lists them and runs can name them.
 * Idempotent, and safe when several coordinators start at once (TaskRepository.ensureBuiltin).
 * The MNIST tasks' parameter counts are the zoo models' (packages/ml checks the topologies are
 * those models); the others' are the generator's (packages/ml checks them too).
 */
export async function storeBuiltinTasks(db: Database): Promise<void> {
  const paramCounts = builtinParamCounts();
  for (const task of BUILTIN_TASKS) {
    const paramCount = paramCounts.get(task.name);
    if (paramCount === undefined)
      throw new Error(`built-in task '${task.name}' has no parameter count`);
    await db.tasks.ensureBuiltin({
      name: task.name,
      sha256: taskSha256(task),
      definition: task as unknown as Record<string, unknown>,
      paramCount,
    });
  }
}
