import { checkImageTaskData, checkTaskData, describeTask } from '@tessera/client';
import { readTextFile } from '@tessera/data';
import { TesseraError } from '@tessera/protocol';
import { parseTaskDefinition, type TaskDefinition } from '@tessera/tasks';
import { isFolder, splitOptions } from './data-source.js';
import { openImageFolder } from './image-folder.js';
import type { CheckSettings } from './options.js';

/**
 * `tessera-client --check`: reads the task's JSON definition and the data file, and says
 * whether the data fits the task as a round would read it (the same code: checkTaskData), in
 * plain lines. Nothing is sent anywhere. `ok` false: the lines end with what to fix.
 */
export async function runCheck(
  settings: CheckSettings['check'],
): Promise<{ ok: boolean; lines: string[] }> {
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
  if (isFolder(settings.data.data)) return checkImageFolder(task, settings.data);
  let text: string;
  try {
    text = readTextFile(settings.data.data);
  } catch (error) {
    return { ok: false, lines: [`--data ${(error as Error).message}`] };
  }
  return checkTaskData(task, { name: settings.data.data, text }, splitOptions(settings.data));
}

/** --check of a folder of images: decodes every image for the task, as a round would. */
async function checkImageFolder(
  task: TaskDefinition,
  data: CheckSettings['check']['data'],
): Promise<{ ok: boolean; lines: string[] }> {
  let images: Awaited<ReturnType<typeof openImageFolder>>;
  try {
    images = await openImageFolder(data.data, splitOptions(data));
  } catch (error) {
    if (!(error instanceof TesseraError)) throw error;
    return { ok: false, lines: [describeTask(task), error.message] };
  }
  return checkImageTaskData(task, images);
}
