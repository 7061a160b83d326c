/**
 * The parts of a task's declaration that the data loaders read: what one example is (the
 * input) and what is predicted (the output). Structurally the same as @tessera/tasks' schema,
 * which this package does not import: @tessera/data stays a leaf that browsers bundle alone.
 */

/** A numeric column: one feature, used as written or standardised as `(x - mean) / std`. */
export interface NumericColumn {
  name: string;
  type: 'numeric';
  /**
   * Absent or false: the value as written. `'federated'`: mean and std come from a federated
   * statistics round before training. Constants: used as given (std > 0).
   */
  standardize?: false | 'federated' | { mean: number; std: number };
}

/** A categorical column: one-hot over its categories, in the order listed. */
export interface CategoricalColumn {
  name: string;
  type: 'categorical';
  /** Absent: the categories come from a federated statistics round before training. */
  categories?: string[];
}

export type TabularColumn = NumericColumn | CategoricalColumn;

/** Rows of named columns; `label` names the column that holds the target. */
export interface TabularSchema {
  kind: 'tabular';
  label: string;
  columns: TabularColumn[];
}

export interface ImageSchema {
  kind: 'image';
  height: number;
  width: number;
  channels: 1 | 3;
  valueRange: { min: number; max: number };
}

export interface TokenizerSpec {
  /** 'word': runs of letters and digits; 'char': every Unicode code point. */
  kind: 'word' | 'char';
  lowercase: boolean;
  /** Token ids: 0 padding, 1 unknown, 2 + i for vocabulary[i]. */
  vocabulary: string[];
}

export interface TextSchema {
  kind: 'text';
  /** Token ids per example: longer texts are cut, shorter ones padded with 0. */
  maxLength: number;
  tokenizer: TokenizerSpec;
}

export type TaskInput = TabularSchema | ImageSchema | TextSchema;

export type TaskOutput =
  | { kind: 'multiclass'; classes: string[] }
  /** classes: [negative, positive]: labels 0 and 1. */
  | { kind: 'binary'; classes: [string, string] }
  | { kind: 'regression' };

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
