/**
 * A task: what a federation learns. The input schema (what one example is), the output (what
 * the model predicts), the loss and metrics, and the model as a layers topology. One versioned,
 * content-addressed record (see taskSha256), validated here once, before anything runs; the
 * checks that need tfjs (does the topology build, does it fit this input) are @tessera/ml's
 * checkTaskModel.
 */
import { ErrorCode, fieldIssues, jsonObjectSchema, TesseraError, text } from '@tessera/protocol';
import { z } from 'zod';

export const TASK_SCHEMA_VERSION = 1;

export const TASK_NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,63}$/;

const finite = z.number().finite();
const dimension = z.number().int().min(1).max(65_536);
/** A column, class or vocabulary entry: something a person wrote and will read back. */
const label = text().min(1).max(1000);

const numericColumnSchema = z.strictObject({
  name: label,
  type: z.literal('numeric'),
  /**
   * Standardisation, (x - mean) / std: absent or false for none, 'federated' for constants the
   * federated statistics round computes, or the constants themselves.
   */
  standardize: z
    .union([
      z.literal(false),
      z.literal('federated'),
      z.strictObject({ mean: finite, std: finite.positive() }),
    ])
    .optional(),
});

const categoricalColumnSchema = z.strictObject({
  name: label,
  type: z.literal('categorical'),
  /** One-hot in this order; absent: the federated statistics round collects them. */
  categories: z.array(label).min(1).max(10_000).optional(),
});

const columnSchema = z.discriminatedUnion('type', [numericColumnSchema, categoricalColumnSchema]);

const tabularInputSchema = z.strictObject({
  kind: z.literal('tabular'),
  /** The name of the column that holds the label (the class name, or the target value). */
  label,
  /** The feature columns, in the order their values enter the model. */
  columns: z.array(columnSchema).min(1).max(10_000),
});

const imageInputSchema = z.strictObject({
  kind: z.literal('image'),
  height: dimension,
  width: dimension,
  channels: z.union([z.literal(1), z.literal(3)]),
  /** The raw pixel range; (pixel - min) / (max - min) scales it to [0, 1]. */
  valueRange: z.strictObject({ min: finite, max: finite }),
});

const textInputSchema = z.strictObject({
  kind: z.literal('text'),
  /** Token ids per example: longer texts are cut, shorter ones padded with id 0. */
  maxLength: z.number().int().min(1).max(100_000),
  /** Ids: 0 padding, 1 unknown, 2 + i for vocabulary[i]. */
  tokenizer: z.strictObject({
    kind: z.enum(['word', 'char']),
    lowercase: z.boolean(),
    vocabulary: z.array(label).min(1).max(1_000_000),
  }),
});

export const taskInputSchema = z.discriminatedUnion('kind', [
  tabularInputSchema,
  imageInputSchema,
  textInputSchema,
]);

export const taskOutputSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('multiclass'), classes: z.array(label).min(2).max(100_000) }),
  /** [negative, positive]: the model's one output is the probability of the second. */
  z.strictObject({ kind: z.literal('binary'), classes: z.tuple([label, label]) }),
  z.strictObject({ kind: z.literal('regression') }),
]);

export const TASK_LOSSES = [
  'softmax-cross-entropy',
  'sigmoid-binary-cross-entropy',
  'mean-squared-error',
] as const;
export const TASK_METRICS = ['accuracy', 'auc', 'mae', 'rmse'] as const;

/** The loss each output kind is trained with: one each, so the pairing is a rule, not a choice. */
export const LOSS_FOR_OUTPUT = {
  multiclass: 'softmax-cross-entropy',
  binary: 'sigmoid-binary-cross-entropy',
  regression: 'mean-squared-error',
} as const satisfies Record<TaskOutput['kind'], TaskLoss>;

/** The output kinds a metric means something for. */
export const METRIC_OUTPUTS = {
  accuracy: ['multiclass', 'binary'],
  auc: ['binary'],
  mae: ['regression'],
  rmse: ['regression'],
} as const satisfies Record<TaskMetric, readonly TaskOutput['kind'][]>;

export const taskModelSchema = z.strictObject({
  /**
   * A layers topology as tfjs-layers reads it: what tfjs `model.toJSON()` and Keras 2
   * `model.to_json()` write (`{class_name, config, ...}`), or the `modelTopology` of a tfjs
   * model.json (which may wrap it in `{model_config}`). Checked structurally by @tessera/ml.
   */
  topology: jsonObjectSchema.refine(
    (topology) =>
      typeof topology['class_name'] === 'string' ||
      (typeof topology['model_config'] === 'object' && topology['model_config'] !== null),
    { message: 'must be a layers topology: an object with class_name (or model_config)' },
  ),
  /** Initial weights: little-endian float32 in the tfjs weights-manifest order. */
  weights: z
    .strictObject({
      sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits'),
      byteLength: z
        .number()
        .int()
        .positive()
        .refine((bytes) => bytes % 4 === 0, { message: 'must be a multiple of 4 (float32)' }),
    })
    .optional(),
});

const taskObjectSchema = z.strictObject({
  schemaVersion: z.literal(TASK_SCHEMA_VERSION),
  name: z
    .string()
    .regex(
      TASK_NAME_PATTERN,
      'must be 1-64 lowercase letters, digits and dashes, starting with a letter or digit',
    ),
  description: text().max(2000).optional(),
  input: taskInputSchema,
  output: taskOutputSchema,
  loss: z.enum(TASK_LOSSES),
  /** Reported besides the loss, which always is. */
  metrics: z.array(z.enum(TASK_METRICS)).max(TASK_METRICS.length),
  model: taskModelSchema,
});

type Issue = { path: (string | number)[]; message: string };

/** Indices of entries that repeat an earlier one. */
function repeats(values: readonly string[]): number[] {
  const seen = new Set<string>();
  const repeated: number[] = [];
  values.forEach((value, index) => {
    if (seen.has(value)) repeated.push(index);
    seen.add(value);
  });
  return repeated;
}

function inputIssues(input: z.infer<typeof taskInputSchema>): Issue[] {
  const issues: Issue[] = [];
  switch (input.kind) {
    case 'tabular': {
      const names = input.columns.map((column) => column.name);
      for (const index of repeats(names)) {
        issues.push({
          path: ['input', 'columns', index, 'name'],
          message: `column '${names[index]}' is declared twice`,
        });
      }
      const labelIndex = names.indexOf(input.label);
      if (labelIndex >= 0) {
        issues.push({
          path: ['input', 'columns', labelIndex, 'name'],
          message: `'${input.label}' is the label column and cannot also be a feature`,
        });
      }
      input.columns.forEach((column, index) => {
        if (column.type !== 'categorical' || column.categories === undefined) return;
        for (const repeat of repeats(column.categories)) {
          issues.push({
            path: ['input', 'columns', index, 'categories', repeat],
            message: `category '${column.categories[repeat]}' is listed twice`,
          });
        }
      });
      break;
    }
    case 'image':
      if (!(input.valueRange.max > input.valueRange.min)) {
        issues.push({ path: ['input', 'valueRange', 'max'], message: 'must be greater than min' });
      }
      break;
    case 'text': {
      const { vocabulary, kind, lowercase } = input.tokenizer;
      const path = ['input', 'tokenizer', 'vocabulary'];
      for (const index of repeats(vocabulary)) {
        issues.push({
          path: [...path, index],
          message: `'${vocabulary[index]}' is in the vocabulary twice`,
        });
      }
      vocabulary.forEach((entry, index) => {
        // An entry the tokenizer can never produce would be a silently dead id.
        if (kind === 'char' && [...entry].length !== 1) {
          issues.push({
            path: [...path, index],
            message: `a char tokenizer's entries are single characters, got '${entry}'`,
          });
        } else if (kind === 'word' && /\s/.test(entry)) {
          issues.push({
            path: [...path, index],
            message: `a word tokenizer splits at whitespace, so '${entry}' never occurs`,
          });
        } else if (lowercase && entry !== entry.toLowerCase()) {
          issues.push({
            path: [...path, index],
            message: `the tokenizer lowercases the text, so '${entry}' never occurs`,
          });
        }
      });
      break;
    }
  }
  return issues;
}

function outputIssues(task: z.infer<typeof taskObjectSchema>): Issue[] {
  const { output, loss, metrics } = task;
  const issues: Issue[] = [];
  if (output.kind !== 'regression') {
    for (const index of repeats(output.classes)) {
      issues.push({
        path: ['output', 'classes', index],
        message: `class '${output.classes[index]}' is listed twice`,
      });
    }
  }
  const expectedLoss = LOSS_FOR_OUTPUT[output.kind];
  if (loss !== expectedLoss) {
    issues.push({
      path: ['loss'],
      message: `a ${output.kind} output is trained with ${expectedLoss}, not ${loss}`,
    });
  }
  for (const index of repeats(metrics)) {
    issues.push({ path: ['metrics', index], message: `'${metrics[index]}' is listed twice` });
  }
  metrics.forEach((metric, index) => {
    const fits: readonly string[] = METRIC_OUTPUTS[metric];
    if (!fits.includes(output.kind)) {
      issues.push({
        path: ['metrics', index],
        message: `${metric} is for ${fits.join(' or ')} outputs, not ${output.kind}`,
      });
    }
  });
  return issues;
}

/** The task schema with its cross-field rules; every issue has the path of the field at fault. */
export const taskDefinitionSchema = taskObjectSchema.superRefine((task, context) => {
  for (const issue of [...inputIssues(task.input), ...outputIssues(task)]) {
    context.addIssue({ code: 'custom', path: issue.path, message: issue.message });
  }
});

export type TaskDefinition = z.infer<typeof taskDefinitionSchema>;
export type TaskInput = TaskDefinition['input'];
export type TabularInput = Extract<TaskInput, { kind: 'tabular' }>;
export type ImageInput = Extract<TaskInput, { kind: 'image' }>;
export type TextInput = Extract<TaskInput, { kind: 'text' }>;
export type TabularColumn = TabularInput['columns'][number];
export type TaskOutput = z.infer<typeof taskOutputSchema>;
export type TaskLoss = (typeof TASK_LOSSES)[number];
export type TaskMetric = (typeof TASK_METRICS)[number];
export type TaskModel = TaskDefinition['model'];

/**
 * A task from untrusted JSON, or INVALID_ARGUMENT naming the first field at fault
 * (`data.field`, e.g. `input.columns.2.name`) and listing every issue (`data.issues`).
 */
export function parseTaskDefinition(value: unknown): TaskDefinition {
  const result = taskDefinitionSchema.safeParse(value);
  if (result.success) return result.data;
  const issues = fieldIssues(result.error);
  const first = issues[0] ?? { field: '(task)', message: 'invalid' };
  throw new TesseraError(ErrorCode.INVALID_ARGUMENT, `task: ${first.field}: ${first.message}`, {
    field: first.field,
    issues,
  });
}
