/**
 * Request schemas of the admin REST API, shared by the coordinator (which validates every
 * request with them and publishes them as OpenAPI) and the console (which validates its forms
 * with the same rules before sending). Browser-safe: zod only.
 */
import { z } from 'zod';
import { isStorableText, UNSTORABLE_TEXT_MESSAGE } from './text.js';

const positiveInt = z.number().int().positive();

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

export interface RunSchemaChoices {
  /** Model names the coordinator can build (@tessera/ml's MODEL_NAMES). */
  models: readonly string[];
  /** Aggregation strategies it knows (@tessera/aggregation's STRATEGY_NAMES). */
  strategies: readonly string[];
  /**
   * Each strategy's options as a schema (@tessera/aggregation's STRATEGY_OPTIONS): where given,
   * `strategyOptions` is checked against the chosen strategy's at creation. The console, which
   * has only the names, leaves it out and the coordinator checks again.
   */
  strategyOptions?: Readonly<Record<string, z.ZodType>>;
}

/**
 * A run as an admin creates it; defaults are the FedAvg paper's MNIST settings where it has them.
 * The model and strategy lists are parameters, so that this module need not import tfjs: the
 * coordinator passes its own, the console the ones `GET /api/meta` reports.
 */
export function createRunSchemaFor(choices: RunSchemaChoices) {
  const { models, strategies, strategyOptions } = choices;
  return z
    .object({
      federationId: text().min(1, 'choose a federation'),
      name: text().max(200).optional(),
      model: text().refine((model) => models.includes(model), {
        message: `unknown model; available: ${models.join(', ')}`,
      }),
      strategy: text().default('fedavg'),
      strategyOptions: jsonObjectSchema.default({}),
      rounds: positiveInt.max(100_000),
      clientsPerRound: positiveInt.nullable().default(null),
      fractionFit: z.number().gt(0).max(1).nullable().default(null),
      minClients: positiveInt.default(1),
      roundDeadlineMs: positiveInt.max(24 * 3600_000).default(600_000),
      localEpochs: positiveInt.max(1000).default(1),
      batchSize: positiveInt.max(65_536).default(10),
      learningRate: z.number().positive().max(100).default(0.05),
      seed: z
        .number()
        .int()
        .min(0)
        .max(2 ** 31 - 1)
        .default(0),
      data: jsonObjectSchema.default({ dataset: 'mnist' }),
      /** Keep each client update's bytes so the run can be replayed (docs/replay.md). */
      keepUpdates: z.boolean().default(false),
      /** Cap on a run's kept update bytes; past it, later rounds are committed without them. */
      updateStorageLimitMb: z.number().int().min(0).max(1_048_576).default(1024),
    })
    .refine((run) => strategies.includes(run.strategy), {
      message: `unknown strategy; available: ${strategies.join(', ')}`,
      path: ['strategy'],
    })
    .refine((run) => run.clientsPerRound === null || run.clientsPerRound >= run.minClients, {
      message: 'clientsPerRound must be at least minClients',
      path: ['clientsPerRound'],
    })
    .superRefine((run, context) => {
      // The chosen strategy's own schema: a run that could not build its strategy is never stored.
      const schema = strategyOptions?.[run.strategy];
      if (schema === undefined) return;
      const result = schema.safeParse(run.strategyOptions);
      if (result.success) return;
      for (const issue of result.error.issues) {
        context.addIssue({
          code: 'custom',
          message: `${run.strategy}: ${issue.message}`,
          path: [
            'strategyOptions',
            ...issue.path.map((key) => (typeof key === 'symbol' ? String(key) : key)),
          ],
        });
      }
    });
}

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
