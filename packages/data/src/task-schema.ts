/**
 * The parts of a task's declaration that the data loaders read: what one example is (the
 * input) and what is predicted (the output): @tessera/tasks' types, imported as types only,
 * so nothing of that package is bundled with the loaders.
 */

import type {
  ImageInput,
  TabularColumn,
  TabularInput,
  TaskInput,
  TaskOutput,
  TextInput,
} from '@tessera/tasks';

export type { TabularColumn, TaskInput, TaskOutput };
export type NumericColumn = Extract<TabularColumn, { type: 'numeric' }>;
export type CategoricalColumn = Extract<TabularColumn, { type: 'categorical' }>;
/** Rows of named columns; `label` names the column that holds the target. */
export type TabularSchema = TabularInput;
export type ImageSchema = ImageInput;
export type TextSchema = TextInput;
/** Token ids: 0 padding, 1 unknown, 2 + i for vocabulary[i]. */
export type TokenizerSpec = TextInput['tokenizer'];

/**
 * Examples of any task, ready for a model: `y` holds the class index (multiclass, binary) or
 * the target value (regression) as a float, which is what a tfjs label tensor takes.
 */
export interface TaskExamples {
  /** count * featureSize values, row-major. */
  x: Float32Array;
  y: Float32Array;
  count: number;
  featureSize: number;
}
