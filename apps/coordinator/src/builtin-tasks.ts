import type { Database } from '@tessera/db';
import { MODEL_NAMES, modelSpec } from '@tessera/ml';
import { BUILTIN_TASK_FOR_MODEL, builtinTask, taskSha256 } from '@tessera/tasks';

/**
 * Stores the built-in MNIST tasks as tasks like any other (content-addressed, versioned), so
 * that GET /api/tasks lists them and runs can name them. Idempotent, and safe when several
 * coordinators start at once (TaskRepository.ensureBuiltin). The parameter count is the zoo
 * model's: the built-in topologies are those models (packages/tasks checks they agree).
 */
export async function storeBuiltinTasks(db: Database): Promise<void> {
  for (const model of MODEL_NAMES) {
    const name = BUILTIN_TASK_FOR_MODEL[model];
    if (name === undefined) continue;
    const task = builtinTask(name);
    await db.tasks.ensureBuiltin({
      name,
      sha256: taskSha256(task),
      definition: task as unknown as Record<string, unknown>,
      paramCount: modelSpec(model).paramCount,
    });
  }
}
