import { checkTaskData } from '@tessera/client';
import { readTextFile } from '@tessera/data';
import { TesseraError } from '@tessera/protocol';
import { parseTaskDefinition, type TaskDefinition } from '@tessera/tasks';
import type { CheckSettings } from './options.js';

/**
 * `tessera-client --check`: reads the task's JSON definition and the data file, and says
 * whether the data fits the task as a round would read it (the same code: checkTaskData), in
 * plain lines. Nothing is sent anywhere. `ok` false: the lines end with what to fix.
 */
export function runCheck(settings: CheckSettings['check']): { ok: boolean; lines: string[] } {
  let task: TaskDefinition;
  try {
    task = parseTaskDefinition(JSON.parse(readTextFile(settings.taskFile)));
  } catch (error) {
    const field =
      error instanceof TesseraError ? (error.data as { field?: unknown })?.field : undefined;
    const why = error instanceof Error ? error.message : String(error);
    return {
      ok: false,
      lines: [
        `--task-file ${settings.taskFile}: not a task definition: ${why}${typeof field === 'string' && !why.includes(field) ? ` (field ${field})` : ''}`,
      ],
    };
  }
  let text: string;
  try {
    text = readTextFile(settings.data.data);
  } catch (error) {
    return { ok: false, lines: [`--data ${(error as Error).message}`] };
  }
  const { data } = settings;
  return checkTaskData(
    task,
    { name: data.data, text },
    {
      holdoutFraction: data.holdoutFraction,
      partitionSeed: data.partitionSeed,
      ...(data.maxExamples === undefined ? {} : { maxExamples: data.maxExamples }),
    },
  );
}
