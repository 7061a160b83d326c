/**
 * Request schemas of the admin REST API, shared by the coordinator (which validates every
 * request with them and publishes them as OpenAPI) and the console (which validates its forms
 * with the same rules before sending). A run's config has its own module, run-config.ts.
 * Browser-safe: zod only.
 */
import { z } from 'zod';
import { isStorableText, UNSTORABLE_TEXT_MESSAGE } from './text.js';

/**
 * A string field of a request: every string the REST API takes is built from this, so that NUL
 * bytes and broken UTF-16 are refused with a field error instead of failing in the database.
 */
export function text() {
  return z.string().refine(isStorableText, { message: UNSTORABLE_TEXT_MESSAGE });
}

/** Any JSON value whose strings (keys too) are storable and whose numbers are finite. */
export type JsonValue =
  | string
  | number
  | boolean
  | null
  | JsonValue[]
  | { [key: string]: JsonValue };
export const jsonValueSchema: z.ZodType<JsonValue> = z.lazy(() =>
  z.union([
    text(),
    z.number(),
    z.boolean(),
    z.null(),
    z.array(jsonValueSchema),
    z.record(text(), jsonValueSchema),
  ]),
);
/** A JSON object of free-form values (a run's `data`, a strategy's options before its schema). */
export const jsonObjectSchema = z.record(text(), jsonValueSchema);

export const createFederationSchema = z.object({
  name: text().trim().min(1, 'required').max(200),
  description: text().max(2000).optional(),
});

export const issueTokenSchema = z.object({
  organisation: text().trim().min(1, 'required').max(200),
  label: text().max(200).optional(),
});

export const loginSchema = z.object({
  email: text().trim().min(1, 'required').max(320),
  password: text().min(1, 'required').max(1024),
});

export const CONSOLE_ROLES = ['admin', 'researcher'] as const;
export type ConsoleRole = (typeof CONSOLE_ROLES)[number];

export const createUserSchema = z.object({
  email: z.email().max(320),
  name: text().trim().min(1).max(200).optional(),
  role: z.enum(CONSOLE_ROLES),
  password: text().min(10, 'at least 10 characters').max(1024),
});

/** One 28x28 grayscale image as 784 numbers in [0, 1], row by row (MNIST: white on black). */
export const predictTensorSchema = z.object({
  pixels: z.array(z.number().min(0).max(1)).length(784, 'must hold exactly 784 values (28 x 28)'),
});

/** The most examples one predict request may carry (`rows` or `texts`). */
export const MAX_PREDICT_EXAMPLES = 100;
/** The longest text predict takes, in characters (the model reads its first maxLength tokens). */
export const MAX_PREDICT_TEXT_CHARS = 100_000;
/** The most pixel values a JSON predict request may carry (a 512 x 512 RGB image). */
export const MAX_PREDICT_PIXELS = 512 * 512 * 3;

const predictValue = z.union([z.number(), text()]);
/** One tabular row for predict: column name -> a number (numeric column) or a category name. */
const predictRow = z.record(text(), predictValue);
const PREDICT_INPUTS = ['pixels', 'features', 'rows', 'text', 'texts'] as const;

/**
 * A predict request's JSON body: exactly one of the task's inputs. `pixels` (image tasks:
 * height x width x channels raw values in the task's valueRange, row by row, channels last;
 * MNIST: 784 values in [0, 1]), `features` (tabular: one row) or `rows` (several), `text` or
 * `texts` (text tasks). Which one fits, and the values, are checked against the run's task.
 */
export const predictRequestSchema = z
  .strictObject({
    pixels: z.array(z.number()).min(1).max(MAX_PREDICT_PIXELS).optional(),
    features: predictRow.optional(),
    rows: z.array(predictRow).min(1).max(MAX_PREDICT_EXAMPLES).optional(),
    text: text().max(MAX_PREDICT_TEXT_CHARS, 'text too long').optional(),
    texts: z
      .array(text().max(MAX_PREDICT_TEXT_CHARS, 'text too long'))
      .min(1)
      .max(MAX_PREDICT_EXAMPLES)
      .optional(),
  })
  .refine((body) => PREDICT_INPUTS.filter((key) => body[key] !== undefined).length === 1, {
    message: `send exactly one of ${PREDICT_INPUTS.join(', ')}`,
  });
export type PredictRequestBody = z.infer<typeof predictRequestSchema>;

/** `?round=N` of the predict and model routes: a committed round, 0 for the initial model. */
export const roundQuerySchema = z.object({
  round: z.coerce.number().int().min(0).optional(),
});

/** One field's complaint, as the API reports it in `error.data.issues`. */
export interface FieldIssue {
  field: string;
  message: string;
}

/** zod issues as field-level messages (`a.b`, or `(body)` for the whole object). */
export function fieldIssues(error: z.ZodError): FieldIssue[] {
  return error.issues.map((issue) => ({
    field: issue.path.map(String).join('.') || '(body)',
    message: issue.message,
  }));
}
