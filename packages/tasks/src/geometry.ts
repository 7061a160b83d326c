import type { TaskDefinition, TaskInput, TaskOutput } from './schema.js';

/**
 * Numbers per example as the model takes them: tabular, 1 per numeric column plus 1 per
 * category of each categorical column (one-hot); image, height x width x channels; text,
 * maxLength token ids. Undefined for a tabular input with a categorical column whose
 * categories the federated statistics round has yet to collect.
 */
export function featureWidth(input: TaskInput): number | undefined {
  switch (input.kind) {
    case 'tabular': {
      let width = 0;
      for (const column of input.columns) {
        if (column.type === 'numeric') width += 1;
        else if (column.categories === undefined) return undefined;
        else width += column.categories.length;
      }
      return width;
    }
    case 'image':
      return input.height * input.width * input.channels;
    case 'text':
      return input.maxLength;
  }
}

/**
 * The least featureWidth can become: every category already known, and one per categorical
 * column still to be collected (the statistics round finds at least one value).
 */
export function minimumFeatureWidth(input: TaskInput): number {
  if (input.kind !== 'tabular') return featureWidth(input) as number;
  return input.columns.reduce(
    (width, column) =>
      width + (column.type === 'numeric' ? 1 : Math.max(1, column.categories?.length ?? 1)),
    0,
  );
}

/** Units of the model's output: one per class (multiclass), one probability or value otherwise. */
export function outputUnits(output: TaskOutput): number {
  return output.kind === 'multiclass' ? output.classes.length : 1;
}

export interface StatisticsNeeds {
  /** Numeric columns standardised with federated constants: need count, sum, sum of squares. */
  standardize: string[];
  /** Categorical columns without categories: need the federated category counts. */
  categories: string[];
}

/**
 * Which columns the federated statistics round must cover before training can start; null
 * when none does (every constant is in the task, or the input is not tabular).
 */
export function taskNeedsStatistics(task: TaskDefinition): StatisticsNeeds | null {
  if (task.input.kind !== 'tabular') return null;
  const needs: StatisticsNeeds = { standardize: [], categories: [] };
  for (const column of task.input.columns) {
    if (column.type === 'numeric' && column.standardize === 'federated') {
      needs.standardize.push(column.name);
    } else if (column.type === 'categorical' && column.categories === undefined) {
      needs.categories.push(column.name);
    }
  }
  return needs.standardize.length + needs.categories.length > 0 ? needs : null;
}
