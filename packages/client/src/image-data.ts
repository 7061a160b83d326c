import {
  type DecodedImage,
  imageFeatures,
  labelSummary,
  type TabularStatistics,
} from '@tessera/data';
import { TesseraError } from '@tessera/protocol';
import { type TaskDefinition, taskSha256 } from '@tessera/tasks';
import {
  describeTask,
  type SplitOptions,
  selectExamples,
  splitRows,
  type TaskData,
  type TaskDataCheck,
  type TaskDataSplit,
} from './task-data.js';
import { RoundFailure } from './trainer.js';

// A client's images for image tasks, one sub-folder (class) per label. Pure and browser-safe:
// the host lists the images and decodes them (Node: the file system, pngjs and jpeg-js); what
// an image becomes for a task (channels, size, scale: @tessera/data's imageFeatures) and which
// label its folder is, is decided here, the same in every host.

/** One picked image: the class (its folder's name), a name for messages, and its pixels. */
export interface LabelledImage {
  className: string;
  /** The image's path (or name) as the user knows it. */
  name: string;
  decode(): DecodedImage | Promise<DecodedImage>;
}

/** A set of labelled images, listed in a stable order (the hold-out split depends on it). */
export interface ImageSource {
  /** The folder, for messages. */
  name: string;
  list(): readonly LabelledImage[] | Promise<readonly LabelledImage[]>;
}

/**
 * Images for any image task: listed once to count them (the hello's hint), then decoded and
 * made into the task's examples when a round names the task (kept for the latest sha256; a
 * refusal is not kept, so fixed files are read again at the next round). Refusals are
 * RoundFailure DATA_SCHEMA_MISMATCH naming the image or folder at fault.
 */
export class ImageSetTaskData implements TaskData {
  private cached: { sha256: string; split: Promise<TaskDataSplit> } | undefined;
  readonly numExamples: number;
  readonly numHoldout: number;

  constructor(
    private readonly source: ImageSource,
    private readonly split: SplitOptions,
    count: number,
  ) {
    const { train, holdout } = splitRows(count, split);
    this.numExamples = train.length;
    this.numHoldout = holdout.length;
  }

  /** The folder, for messages. */
  get name(): string {
    return this.source.name;
  }

  static async open(source: ImageSource, split: SplitOptions): Promise<ImageSetTaskData> {
    return new ImageSetTaskData(source, split, (await source.list()).length);
  }

  examples(task: TaskDefinition): Promise<TaskDataSplit> {
    const sha256 = taskSha256(task);
    if (this.cached?.sha256 === sha256) return this.cached.split;
    const split = this.load(task);
    this.cached = { sha256, split };
    split.catch(() => {
      if (this.cached?.split === split) this.cached = undefined;
    });
    return split;
  }

  statistics(task: TaskDefinition): Promise<TabularStatistics> {
    return Promise.reject(
      new RoundFailure(
        'TASK_NOT_SUPPORTED',
        `task '${task.name}': statistics are summaries of tabular columns; this client holds images (${this.source.name})`,
      ),
    );
  }

  private async load(task: TaskDefinition): Promise<TaskDataSplit> {
    const { input, output } = task;
    const where = this.source.name;
    if (input.kind !== 'image') {
      throw new RoundFailure(
        'DATA_SCHEMA_MISMATCH',
        `${where}: a folder of images; task '${task.name}' reads ${input.kind} data (a file: --data FILE)`,
      );
    }
    if (output.kind === 'regression') {
      throw new RoundFailure(
        'DATA_SCHEMA_MISMATCH',
        `${where}: class folders give class labels; task '${task.name}' is a regression`,
      );
    }
    const images = await this.source.list();
    const classIndex = new Map(output.classes.map((name, i) => [name, i]));
    const unknown = [...new Set(images.map((image) => image.className))].filter(
      (name) => !classIndex.has(name),
    );
    if (unknown.length > 0) {
      throw new RoundFailure(
        'DATA_SCHEMA_MISMATCH',
        `${where}: folder${unknown.length === 1 ? '' : 's'} ${unknown.map((name) => `'${name}'`).join(', ')} ${unknown.length === 1 ? 'is not a class' : 'are not classes'} of task '${task.name}' (${output.classes.map((name) => `'${name}'`).join(', ')})`,
      );
    }
    const { train, holdout } = splitRows(images.length, this.split);
    if (train.length === 0) {
      throw new RoundFailure(
        'DATA_SCHEMA_MISMATCH',
        `${where}: ${images.length} image(s), and a hold-out fraction of ${this.split.holdoutFraction} keeps every one of them out of training`,
      );
    }
    const featureSize = input.height * input.width * input.channels;
    const used = train.length + holdout.length;
    const x = new Float32Array(used * featureSize);
    const y = new Float32Array(used);
    for (let row = 0; row < used; row++) {
      const image = images[row] as LabelledImage;
      let decoded: DecodedImage;
      try {
        decoded = await image.decode();
      } catch (cause) {
        throw new RoundFailure(
          'DATA_SCHEMA_MISMATCH',
          `${image.name}: not an image this client can decode (${cause instanceof Error ? cause.message : String(cause)})`,
        );
      }
      x.set(imageFeatures(decoded, input), row * featureSize);
      y[row] = classIndex.get(image.className) as number;
    }
    const all = { x, y, count: used, featureSize };
    return {
      train: selectExamples(all, train),
      holdout: holdout.length > 0 ? selectExamples(all, holdout) : null,
    };
  }
}

/**
 * What a client says of its images before it joins (`tessera-client --check --data DIR`, the web
 * page's check): it decodes every image for the task, as a round would, and says the counts and
 * labels seen, or the first problem (the image or folder at fault). Counts only, never pixels.
 */
export async function checkImageTaskData(
  task: TaskDefinition,
  data: ImageSetTaskData,
): Promise<TaskDataCheck> {
  const lines = [describeTask(task)];
  try {
    const { train, holdout } = await data.examples(task);
    const labels = Float64Array.from([...train.y, ...(holdout?.y ?? [])]);
    lines.push(
      `${data.name}: ${train.count} training, ${holdout?.count ?? 0} held-out images; ${labelSummary(labels, task.output)}`,
      'the data fits the task',
    );
    return { ok: true, lines };
  } catch (error) {
    if (!(error instanceof RoundFailure || error instanceof TesseraError)) throw error;
    lines.push(error.message);
    return { ok: false, lines };
  }
}
