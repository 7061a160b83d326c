/**
 * A run's configuration: the one definition of it. The REST API, the console's form, the CLI's
 * simulate command and the database all parse with the schema built here, and every other layer
 * (the round engine, the `train` instruction, the clients) takes its output type, `RunConfig`,
 * under the same field names. Browser-safe: zod only.
 */
import { z } from 'zod';
import { fieldIssues, type JsonValue, jsonObjectSchema, text } from './admin-api.js';
import { ErrorCode, TesseraError } from './errors.js';
import { PG_INT_MAX } from './limits.js';

/** Default per-run cap on kept client-update bytes, in MiB (RunConfig.updateStorageLimitMb). */
export const DEFAULT_UPDATE_STORAGE_LIMIT_MB = 1024;

/**
 * What the parsing side knows it can run. Each list left out is not checked: the database,
 * which knows no models or strategies, checks only that a name is given; the coordinator passes
 * its own lists, the console the ones `GET /api/meta` reports.
 */
export interface RunConfigChoices {
  /** Model names that can be built (@tessera/ml's MODEL_NAMES). */
  models?: readonly string[];
  /** Aggregation strategies (@tessera/aggregation's STRATEGY_NAMES). */
  strategies?: readonly string[];
  /**
   * Each strategy's options (@tessera/aggregation's STRATEGY_OPTIONS): where given, a run's
   * `strategyOptions` must pass the chosen strategy's schema, and are stored as it outputs them
   * (defaults filled in), so the record says what the strategy ran with.
   */
  strategyOptions?: Readonly<Record<string, z.ZodObject>>;
  /**
   * The fewest updates a round of `strategy` with these (parsed) options can aggregate
   * (@tessera/aggregation's minUpdatesFor: Krum needs 2f + 3): where given, `minClients` must
   * reach it, or the first round that got fewer updates would fail the run.
   */
  minUpdates?: (strategy: string, options: Record<string, unknown>) => number;
  /**
   * Rules a strategy sets on the run's other fields (@tessera/aggregation's runRulesFor:
   * dp-fedavg needs its samplingRate and refuses keepUpdates): each broken one is an issue at
   * `path`, so a run that would break them is never stored.
   */
  runRules?: (
    strategy: string,
    options: Record<string, unknown>,
    run: RunRuleFields,
  ) => readonly { path: readonly PropertyKey[]; message: string }[];
}

/** The run's fields a strategy's rules read (runRulesFor). */
export interface RunRuleFields {
  keepUpdates: boolean;
  clientsPerRound: number | null;
  fractionFit: number | null;
  minClients: number;
  secureAggregation: SecureAggregationConfig | null;
}

/**
 * Secure aggregation of a run's updates (docs/secure-aggregation.md, Bonawitz et al. 2017):
 * clients mask their change, the coordinator learns only the sum. Shamir shares over GF(2^8)
 * allow at most 255 clients in a round.
 */
export const SECURE_AGGREGATION_MAX_CLIENTS = 255;

const secureAggregationSchema = z
  .strictObject({
    clipRange: z
      .number({ error: 'a number above 0 and at most 1,000' })
      .positive({ error: 'a number above 0 and at most 1,000' })
      .max(1000, { error: 'a number above 0 and at most 1,000' })
      .default(1)
      .describe('R: each coordinate of a client change is clipped to [-R, R] before masking'),
    maxExamplesPerClient: z
      .number({ error: 'a whole number from 1 to 8,388,607' })
      .int({ error: 'a whole number from 1 to 8,388,607' })
      .min(1, { error: 'a whole number from 1 to 8,388,607' })
      .max(8_388_607, { error: 'a whole number from 1 to 8,388,607' })
      .default(10_000)
      .describe("E: a client's example count (its FedAvg weight) is capped at E"),
    thresholdFraction: z
      .number({ error: 'a fraction above 0.5 and at most 1' })
      .gt(0.5, { error: 'a fraction above 0.5 and at most 1' })
      .max(1, { error: 'a fraction above 0.5 and at most 1' })
      .default(2 / 3)
      .describe('t = max(majority, ceil(fraction x sampled)): shares needed to unmask'),
    stepDeadlineMs: wholeNumber(1000, 600_000, ' milliseconds (1 s to 10 min)')
      .default(30_000)
      .describe(
        'deadline of each key step (advertise, share, unmask); masking has the round deadline',
      ),
  })
  .describe('secure aggregation (SecAgg, Bonawitz et al. 2017); null: updates sent in the clear');
export type SecureAggregationConfig = z.output<typeof secureAggregationSchema>;

/**
 * Local differential privacy (docs/research.md, "Local DP"): every client clips its change to
 * L2 norm clipNorm and adds N(0, (noiseMultiplier clipNorm)^2) to each coordinate from its
 * CSPRNG before the update leaves it; the coordinator checks the norm it can see.
 */
const localDpSchema = z
  .strictObject({
    clipNorm: z
      .number({ error: 'a number above 0 and at most 1,000,000' })
      .positive({ error: 'a number above 0 and at most 1,000,000' })
      .max(1e6, { error: 'a number above 0 and at most 1,000,000' })
      .describe("C: each client's change is clipped to this L2 norm before noise"),
    noiseMultiplier: z
      .number({ error: 'a number from 0 to 1,000' })
      .min(0, { error: 'a number from 0 to 1,000' })
      .max(1000, { error: 'a number from 0 to 1,000' })
      .describe('sigma: noise std over C per coordinate (0: clip only, no privacy from noise)'),
    delta: z
      .number({ error: 'a number above 0 and below 1' })
      .gt(0, { error: 'a number above 0 and below 1' })
      .lt(1, { error: 'a number above 0 and below 1' })
      .default(1e-5)
      .describe('delta at which the per-client epsilon is recorded'),
  })
  .describe('local differential privacy on every client; null: none');
export type LocalDpConfig = z.output<typeof localDpSchema>;

/** 100000 -> "100,000": bounds in messages as people write them (not locale-dependent). */
function grouped(value: number): string {
  return String(value).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/**
 * A whole number in [min, max]. One message for every way to miss it (not a number, a
 * fraction, out of range), said as the rule, so a form can show it next to its field as is
 * ("Rounds: a whole number from 1 to 100,000") and REST callers read the same.
 */
function wholeNumber(min: number, max: number, unit = '') {
  const message = `a whole number from ${grouped(min)} to ${grouped(max)}${unit}`;
  return z
    .number({ error: message })
    .int({ error: message })
    .min(min, { error: message })
    .max(max, { error: message });
}

/** Every run-config field's bounds, for forms that show them before anything is sent. */
export const RUN_CONFIG_LIMITS = {
  rounds: { min: 1, max: 100_000 },
  clients: { min: 1, max: 1_000_000 },
  /**
   * A round deadline. The schema's floor is 1 s (tests and simulations run short rounds); the
   * console asks for at least `formMinMs`, as a deadline of a few seconds cannot fit a round
   * of real clients (selection, download, local training, upload).
   */
  roundDeadlineMs: { min: 1000, max: 24 * 3600_000, formMinMs: 5000 },
  localEpochs: { min: 1, max: 1000 },
  batchSize: { min: 1, max: 65_536 },
  learningRate: { max: 100 },
  seed: { min: 0, max: 2 ** 31 - 1 },
  updateStorageLimitMb: { min: 0, max: 1_048_576 },
} as const;
const L = RUN_CONFIG_LIMITS;

const fractionMessage = 'a fraction above 0 and at most 1 (0.1 asks for 10% of the clients)';
const learningRateMessage = `a number above 0 and at most ${L.learningRate.max}`;

/**
 * A JSON object of free-form values. Callers may hand over any record (a strategy's own options
 * object, say); the schema checks that each value is JSON, and says so in its output type.
 */
const jsonObjectField = jsonObjectSchema as unknown as z.ZodType<
  Record<string, JsonValue>,
  Record<string, unknown>
>;

/** A name from `names` when the list is known, else any name that is not blank. */
function nameFrom(what: string, names: readonly string[] | undefined) {
  return text()
    .max(200)
    .superRefine((name, context) => {
      if (name.trim() === '') {
        context.addIssue({ code: 'custom', message: `choose a ${what}` });
      } else if (names !== undefined && !names.includes(name)) {
        context.addIssue({
          code: 'custom',
          message: `unknown ${what}; available: ${names.join(', ')}`,
        });
      }
    });
}

/**
 * The zoo models runs named before tasks existed, and the built-in task each one trains: a run
 * given `model: 'fedavg-2nn'` trains the task `mnist-2nn` (@tessera/tasks builds those tasks
 * and keys them by this table).
 */
export const MODEL_TASK_ALIASES: Readonly<Record<string, string>> = {
  'fedavg-2nn': 'mnist-2nn',
  'fedavg-cnn': 'mnist-cnn',
  mlp: 'mnist-mlp',
  cnn: 'mnist-small-cnn',
};

const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * A stored task as a run names it: resolved at creation to one immutable version, whose sha256
 * (taskSha256 of the definition) every client checks the definition it fetches against.
 */
export interface TaskRef {
  name: string;
  version: number;
  sha256: string;
}

/**
 * `task` as given: a name, and optionally a version (default: the latest at creation) and the
 * sha256 the caller expects. A stored config gives all three.
 */
const taskRefSchema = z.strictObject({
  name: text()
    .max(64)
    .refine((name) => name.trim() !== '', 'choose a task'),
  version: z.number().int().min(1).max(PG_INT_MAX).optional(),
  sha256: z.string().regex(SHA256_HEX, 'must be 64 lowercase hex digits').optional(),
});

/**
 * What a run trains. The one place of the schema that names it: a task, or, as before tasks
 * existed, a zoo model's name, which stands for its built-in task (MODEL_TASK_ALIASES). A stored
 * config has both: `model` is the zoo model of a built-in task and null for every other task.
 */
function trainedField(choices: RunConfigChoices) {
  return {
    task: taskRefSchema
      .optional()
      .describe('The task the run trains: {name, version?}; stored as {name, version, sha256}'),
    model: nameFrom('model', choices.models)
      .nullable()
      .optional()
      .describe("Alias of a zoo model's built-in MNIST task (fedavg-2nn: mnist-2nn, ...)"),
  };
}

/** The fields of a run config; defaults are the FedAvg paper's MNIST settings where it has them. */
function runConfigShape(choices: RunConfigChoices) {
  return {
    ...trainedField(choices),
    strategy: nameFrom('strategy', choices.strategies).default('fedavg'),
    strategyOptions: jsonObjectField.default({}),
    rounds: wholeNumber(L.rounds.min, L.rounds.max),
    clientsPerRound: wholeNumber(L.clients.min, L.clients.max).nullable().default(null),
    fractionFit: z
      .number({ error: fractionMessage })
      .gt(0, { error: fractionMessage })
      .max(1, { error: fractionMessage })
      .nullable()
      .default(null),
    minClients: wholeNumber(L.clients.min, L.clients.max).default(1),
    roundDeadlineMs: wholeNumber(
      L.roundDeadlineMs.min,
      L.roundDeadlineMs.max,
      ' milliseconds (1 s to 24 h)',
    ).default(600_000),
    localEpochs: wholeNumber(L.localEpochs.min, L.localEpochs.max).default(1),
    batchSize: wholeNumber(L.batchSize.min, L.batchSize.max).default(10),
    learningRate: z
      .number({ error: learningRateMessage })
      .positive({ error: learningRateMessage })
      .max(L.learningRate.max, { error: learningRateMessage })
      .default(0.05),
    seed: wholeNumber(L.seed.min, L.seed.max).default(0),
    /** Dataset and partition description (loader, options, partitioner...). */
    data: jsonObjectField.default({ dataset: 'mnist' }),
    /** Keep each client update's bytes so the run can be replayed (docs/replay.md). */
    keepUpdates: z.boolean({ error: 'true or false' }).default(false),
    /** Cap on a run's kept update bytes; past it, later rounds are committed without them. */
    updateStorageLimitMb: wholeNumber(
      L.updateStorageLimitMb.min,
      L.updateStorageLimitMb.max,
      ' MiB',
    ).default(DEFAULT_UPDATE_STORAGE_LIMIT_MB),
    secureAggregation: secureAggregationSchema.nullable().default(null),
    localDp: localDpSchema.nullable().default(null),
  };
}

type RunConfigFields = z.output<z.ZodObject<ReturnType<typeof runConfigShape>>>;
/** The task as the config asks for it: a name, perhaps a version and the expected sha256. */
export type RequestedTask = z.output<typeof taskRefSchema>;
type ResolvedFields<T extends RunConfigFields> = Omit<T, 'task' | 'model'> & {
  task: RequestedTask;
  model: string | null;
};

/**
 * The rules across fields, and the chosen strategy's own options schema: a run that could not
 * build its strategy is never stored. Returns the config with the strategy's options as its
 * schema outputs them.
 */
function resolveRunConfig(choices: RunConfigChoices) {
  return <T extends RunConfigFields>(run: T, context: z.RefinementCtx<T>): ResolvedFields<T> => {
    let valid = true;
    const complain = (path: PropertyKey[], message: string) => {
      valid = false;
      context.addIssue({ code: 'custom', message, path });
    };
    const model = run.model ?? null;
    const alias = model === null ? undefined : MODEL_TASK_ALIASES[model];
    if (model !== null && alias === undefined) {
      complain(['model'], `model '${model}' is no built-in task's; name the task as task: {name}`);
    }
    const task = run.task ?? (alias === undefined ? undefined : { name: alias });
    if (task === undefined) {
      if (model === null) complain(['task'], 'choose a task: {name, version?}');
    } else if (alias !== undefined && task.name !== alias) {
      complain(['model'], `model '${model}' is the built-in task '${alias}', not '${task.name}'`);
    }
    // Field names in these messages are the API's; the console writes its labels over them.
    if (run.clientsPerRound !== null && run.fractionFit !== null) {
      complain(['fractionFit'], 'give clientsPerRound or fractionFit, not both');
    } else if (run.clientsPerRound !== null && run.clientsPerRound < run.minClients) {
      complain(
        ['clientsPerRound'],
        `must be at least minClients (${run.minClients}): a round of fewer clients could never commit`,
      );
    }
    if (run.secureAggregation !== null) {
      for (const rule of secureAggregationRules(run)) complain([...rule.path], rule.message);
    }
    if (run.localDp !== null) {
      for (const rule of localDpRules(run)) complain([...rule.path], rule.message);
    }
    let { strategyOptions } = run;
    const schema = choices.strategyOptions?.[run.strategy];
    if (schema !== undefined) {
      const result = schema.safeParse(run.strategyOptions);
      if (result.success) {
        strategyOptions = result.data as Record<string, JsonValue>;
      } else {
        for (const issue of result.error.issues) {
          if (issue.code === 'unrecognized_keys') {
            const known = Object.keys(schema.shape);
            complain(
              ['strategyOptions', ...issue.path],
              `${run.strategy} takes ${known.length > 0 ? known.join(', ') : 'no options'}; got ${issue.keys.join(', ')}`,
            );
          } else {
            complain(['strategyOptions', ...issue.path], `${run.strategy}: ${issue.message}`);
          }
        }
      }
    }
    if (valid && choices.minUpdates !== undefined) {
      const needed = choices.minUpdates(run.strategy, strategyOptions);
      if (run.minClients < needed) {
        complain(
          ['minClients'],
          `${run.strategy} aggregates rounds of at least ${needed} updates; minClients must be at least ${needed}`,
        );
      }
    }
    if (valid && choices.runRules !== undefined) {
      for (const rule of choices.runRules(run.strategy, strategyOptions, run)) {
        complain([...rule.path], rule.message);
      }
    }
    return valid && task !== undefined ? { ...run, task, model, strategyOptions } : z.NEVER;
  };
}

/**
 * What secure aggregation asks of any run, whatever its strategy (the strategy's own rule,
 * that its aggregate is a weighted sum, is runRulesFor's): the coordinator must never hold an
 * individual update, and a round must have at least two clients and at most 255.
 */
function secureAggregationRules(run: RunRuleFields): { path: string[]; message: string }[] {
  const issues: { path: string[]; message: string }[] = [];
  if (run.keepUpdates) {
    issues.push({
      path: ['keepUpdates'],
      message:
        'secure aggregation hides the individual updates from the coordinator; it cannot keep them for replay',
    });
  }
  if (run.minClients < 2) {
    issues.push({
      path: ['minClients'],
      message: 'secure aggregation needs at least 2 clients a round: the sum of one is its update',
    });
  }
  if (run.clientsPerRound !== null && run.clientsPerRound > SECURE_AGGREGATION_MAX_CLIENTS) {
    issues.push({
      path: ['clientsPerRound'],
      message: `secure aggregation takes at most ${SECURE_AGGREGATION_MAX_CLIENTS} clients a round (Shamir shares over GF(2^8))`,
    });
  }
  return issues;
}

/**
 * What local DP cannot be combined with: secure aggregation (the coordinator could check no
 * client's norm, and SecAgg's coordinate clip to [-R, R] would cut the noise), and SCAFFOLD
 * (its control-variate change, sent beside the update, is neither clipped nor noised).
 */
function localDpRules(run: {
  strategy: string;
  secureAggregation: SecureAggregationConfig | null;
}): { path: string[]; message: string }[] {
  const issues: { path: string[]; message: string }[] = [];
  if (run.secureAggregation !== null) {
    issues.push({
      path: ['localDp'],
      message:
        'local DP is not built under secure aggregation: the coordinator could not check any norm, and the coordinate clip would cut the noise; use dp-fedavg (central noise on the secure sum)',
    });
  }
  if (run.strategy === 'scaffold') {
    issues.push({
      path: ['localDp'],
      message:
        "scaffold sends each client's control-variate change beside its update, which local DP neither clips nor noises",
    });
  }
  return issues;
}

/** A run config as given (defaults optional) -> the config stored and run (`RunConfig`). */
export function runConfigSchemaFor(choices: RunConfigChoices = {}) {
  return z.object(runConfigShape(choices)).transform(resolveRunConfig(choices));
}

/** The config schema without model and strategy lists: the database's guard. */
export const runConfigSchema = runConfigSchemaFor();

/**
 * A run's configuration as parsed: every default filled in, the task as asked for (a `model`
 * alias made its built-in task). Stored, it names one task version (StoredRunConfig).
 */
export type RunConfig = z.output<typeof runConfigSchema>;
/** A run's configuration as stored, run, and returned by the API: the task resolved. */
export type StoredRunConfig = Omit<RunConfig, 'task'> & { task: TaskRef };
/** A run's configuration as a caller gives it: fields with defaults may be left out. */
export type RunConfigInput = z.input<typeof runConfigSchema>;

/** A stored run's config as data (every field present), for the OpenAPI response schemas. */
export const storedRunConfigSchema = z.object({
  ...runConfigShape({}),
  task: z.object({ name: z.string(), version: z.number().int(), sha256: z.string() }),
  model: z
    .string()
    .nullable()
    .describe("The built-in task's zoo model (fedavg-2nn, ...); null for every other task"),
});

/** The stored config's task, or INVALID_ARGUMENT when it was never resolved to a version. */
export function resolvedTask(config: RunConfig): TaskRef {
  const { name, version, sha256 } = config.task;
  if (version === undefined || sha256 === undefined) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `task: '${name}' is not resolved to a stored version`,
      { field: 'task' },
    );
  }
  return { name, version, sha256 };
}

/**
 * `POST /api/runs`: the run config's fields, flat, beside the federation and an optional name.
 * Output: the same, with the config resolved as `runConfigSchemaFor` resolves it.
 */
export function createRunSchemaFor(choices: RunConfigChoices) {
  return z
    .object({
      federationId: text().min(1, 'choose a federation'),
      name: text().max(200).optional(),
      ...runConfigShape(choices),
    })
    .transform(resolveRunConfig(choices));
}

/**
 * Parses a run config, or throws INVALID_ARGUMENT naming the first bad field as
 * `<fieldPrefix><field>` (every one in `data.issues`). `fieldPrefix` is where the config sits
 * in the caller's input: `config.` for the database's `runs.create({config})`.
 */
export function parseRunConfig(
  value: unknown,
  schema: typeof runConfigSchema = runConfigSchema,
  fieldPrefix = '',
): RunConfig {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = fieldIssues(result.error).map(({ field, message }) => ({
    field: field === '(body)' ? fieldPrefix.replace(/\.$/, '') || '(config)' : fieldPrefix + field,
    message,
  }));
  const first = issues[0] ?? { field: fieldPrefix || '(config)', message: 'invalid' };
  throw new TesseraError(ErrorCode.INVALID_ARGUMENT, `${first.field}: ${first.message}`, {
    field: first.field,
    issues,
  });
}

/**
 * What a `train` instruction carries of the run's config: its local-training fields under the
 * run's own names, and the round's shuffle seed (derived from the run seed and the round).
 */
export type TrainConfig = Pick<RunConfig, 'localEpochs' | 'batchSize' | 'learningRate'> & {
  seed: number;
};

export function trainConfigFor(config: RunConfig, seed: number): TrainConfig {
  const { localEpochs, batchSize, learningRate } = config;
  return { localEpochs, batchSize, learningRate, seed };
}

/**
 * The zoo model a run trains, for the tools that build MNIST models by name (central
 * evaluation, replay, export): the config's `model`, which only a built-in task has. Other
 * tasks: INVALID_ARGUMENT, field `task`, saying what is missing.
 */
export function zooModelOf(config: Pick<RunConfig, 'model' | 'task'>, what: string): string {
  if (config.model !== null) return config.model;
  throw new TesseraError(
    ErrorCode.INVALID_ARGUMENT,
    `task: ${what} is available for the built-in MNIST tasks only, not yet for '${config.task.name}'`,
    { field: 'task' },
  );
}
