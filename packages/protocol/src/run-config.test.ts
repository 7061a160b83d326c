import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ErrorCode, TesseraError } from './errors.js';
import {
  createRunSchemaFor,
  DEFAULT_UPDATE_STORAGE_LIMIT_MB,
  parseRunConfig,
  runConfigSchema,
  runConfigSchemaFor,
  trainConfigFor,
} from './run-config.js';

// Choices as a coordinator passes them; the strategy schemas are written here, not imported,
// so this package's test does not depend on @tessera/aggregation.
const choices = {
  models: ['mlp', 'cnn'],
  strategies: ['plain', 'momentum'],
  strategyOptions: {
    plain: z.strictObject({}),
    momentum: z.strictObject({ momentum: z.number().min(0).lt(1).default(0.9) }),
  },
};
const checked = runConfigSchemaFor(choices);

function refusal(run: () => unknown): TesseraError {
  try {
    run();
  } catch (error) {
    if (error instanceof TesseraError) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

describe('the run config schema', () => {
  it('takes secureAggregation with its defaults, and refuses what it cannot run with, at the field', () => {
    const run = { model: 'mlp', rounds: 2, minClients: 2 };
    expect(parseRunConfig({ ...run, secureAggregation: {} }).secureAggregation).toEqual({
      clipRange: 1,
      maxExamplesPerClient: 10_000,
      thresholdFraction: 2 / 3,
      stepDeadlineMs: 30_000,
    });
    const fieldOf = (overrides: Record<string, unknown>) =>
      refusal(() => parseRunConfig({ ...run, secureAggregation: {}, ...overrides })).data?.[
        'field'
      ];
    expect(fieldOf({ keepUpdates: true })).toBe('keepUpdates');
    expect(fieldOf({ minClients: 1 })).toBe('minClients');
    expect(fieldOf({ clientsPerRound: 256 })).toBe('clientsPerRound');
    expect(fieldOf({ secureAggregation: { clipRange: 0 } })).toBe('secureAggregation.clipRange');
    expect(fieldOf({ secureAggregation: { thresholdFraction: 0.5 } })).toBe(
      'secureAggregation.thresholdFraction',
    );
    expect(fieldOf({ secureAggregation: { rounds: 3 } })).toBe('secureAggregation');
    // Without it, the same run asks for none of this.
    expect(parseRunConfig({ ...run, minClients: 1, keepUpdates: true }).secureAggregation).toBe(
      null,
    );
  });
  it('fills in every default, the same with or without choices', () => {
    const expected = {
      // A zoo model's name stands for its built-in task.
      task: { name: 'mnist-mlp' },
      model: 'mlp',
      strategy: 'plain',
      strategyOptions: {},
      rounds: 2,
      clientsPerRound: null,
      fractionFit: null,
      minClients: 1,
      roundDeadlineMs: 600_000,
      localEpochs: 1,
      batchSize: 10,
      learningRate: 0.05,
      seed: 0,
      data: { dataset: 'mnist' },
      keepUpdates: false,
      updateStorageLimitMb: DEFAULT_UPDATE_STORAGE_LIMIT_MB,
      secureAggregation: null,
      localDp: null,
    };
    const input = { model: 'mlp', strategy: 'plain', rounds: 2 };
    expect(checked.parse(input)).toEqual(expected);
    expect(runConfigSchema.parse(input)).toEqual(expected);
    // Parsing its own output changes nothing: the database may guard what the edge parsed.
    expect(checked.parse(checked.parse(input))).toEqual(expected);
  });

  it('checks names against the lists it is given, and only that they are not blank without', () => {
    const unknownModel = refusal(() =>
      parseRunConfig({ model: 'net-z', strategy: 'plain', rounds: 1 }, checked),
    );
    expect(unknownModel.code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(unknownModel.data).toMatchObject({ field: 'model' });
    expect(unknownModel.message).toBe('model: unknown model; available: mlp, cnn');
    expect(
      refusal(() => parseRunConfig({ model: 'mlp', strategy: 'median', rounds: 1 }, checked)).data,
    ).toMatchObject({ field: 'strategy' });
    // The database knows no lists: any strategy passes; a model must be a built-in task's.
    expect(runConfigSchema.parse({ model: 'mlp', strategy: 'median', rounds: 1 }).strategy).toBe(
      'median',
    );
    expect(refusal(() => parseRunConfig({ model: 'net-z', rounds: 1 })).data).toMatchObject({
      field: 'model',
    });
    expect(refusal(() => parseRunConfig({ model: ' ', rounds: 1 })).data).toMatchObject({
      field: 'model',
    });
  });

  it('takes a task by name (and version), or a model name as its built-in task, not neither', () => {
    const byTask = runConfigSchema.parse({ task: { name: 'wards', version: 2 }, rounds: 1 });
    expect(byTask.task).toEqual({ name: 'wards', version: 2 });
    expect(byTask.model).toBeNull();
    const none = refusal(() => parseRunConfig({ rounds: 1 }));
    expect(none.data).toMatchObject({ field: 'task' });
    expect(none.message).toBe('task: choose a task: {name, version?}');
    // A model and a task that is not its built-in one contradict each other.
    const both = refusal(() =>
      parseRunConfig({ model: 'mlp', task: { name: 'mnist-cnn' }, rounds: 1 }),
    );
    expect(both.data).toMatchObject({ field: 'model' });
    expect(both.message).toBe(
      "model: model 'mlp' is the built-in task 'mnist-mlp', not 'mnist-cnn'",
    );
    // A stored config (both, consistent) parses again unchanged.
    const stored = {
      model: 'mlp',
      task: { name: 'mnist-mlp', version: 1, sha256: 'a'.repeat(64) },
    };
    expect(runConfigSchema.parse({ ...stored, rounds: 1 })).toMatchObject(stored);
    expect(
      refusal(() => parseRunConfig({ task: { name: 'x', version: 0 }, rounds: 1 })).data,
    ).toMatchObject({ field: 'task.version' });
    expect(
      refusal(() => parseRunConfig({ task: { name: 'x', sha256: 'ABC' }, rounds: 1 })).data,
    ).toMatchObject({ field: 'task.sha256' });
  });

  it("parses the chosen strategy's options with its schema, and stores its output", () => {
    const run = { model: 'mlp', strategy: 'momentum', rounds: 1 };
    expect(checked.parse(run).strategyOptions).toEqual({ momentum: 0.9 });
    expect(checked.parse({ ...run, strategyOptions: { momentum: 0.5 } }).strategyOptions).toEqual({
      momentum: 0.5,
    });
    const tooHigh = refusal(() =>
      parseRunConfig({ ...run, strategyOptions: { momentum: 2 } }, checked),
    );
    expect(tooHigh.data).toMatchObject({ field: 'strategyOptions.momentum' });
    expect(tooHigh.message).toMatch(/^strategyOptions\.momentum: momentum: /);
    const unknownKey = refusal(() =>
      parseRunConfig({ ...run, strategy: 'plain', strategyOptions: { mu: 1 } }, checked),
    );
    expect(unknownKey.message).toBe('strategyOptions: plain takes no options; got mu');
    // Without the strategies' schemas (the database), options are only required to be JSON.
    expect(
      runConfigSchema.parse({ ...run, strategyOptions: { momentum: 2 } }).strategyOptions,
    ).toEqual({ momentum: 2 });
    expect(
      refusal(() => parseRunConfig({ ...run, strategyOptions: { mu: Number.NaN } })).data,
    ).toMatchObject({ field: 'strategyOptions.mu' });
  });

  it('requires minClients to reach the updates a round of the strategy needs, where told', () => {
    const withRoundSizes = runConfigSchemaFor({
      ...choices,
      minUpdates: (strategy, options) =>
        strategy === 'momentum' ? 2 + Number(options['momentum']) * 10 : 1,
    });
    const run = { model: 'mlp', strategy: 'momentum', rounds: 1 };
    // The options as the strategy's schema output them (the default 0.9): 11 updates.
    const error = refusal(() => parseRunConfig({ ...run, minClients: 10 }, withRoundSizes));
    expect(error.data).toMatchObject({ field: 'minClients' });
    expect(error.message).toBe(
      'minClients: momentum aggregates rounds of at least 11 updates; minClients must be at least 11',
    );
    expect(withRoundSizes.parse({ ...run, minClients: 11 }).minClients).toBe(11);
    expect(withRoundSizes.parse({ ...run, strategy: 'plain' }).minClients).toBe(1);
  });

  it('names the field under the prefix the caller gives, with every issue', () => {
    const error = refusal(() =>
      parseRunConfig(
        { model: 'mlp', rounds: 0, minClients: 3, clientsPerRound: 2, batchSize: 0 },
        runConfigSchema,
        'config.',
      ),
    );
    expect(error.message).toMatch(/^config\.rounds: /);
    const issues = ((error.data?.['issues'] ?? []) as Array<{ field: string }>).map((i) => i.field);
    expect(issues).toEqual(['config.rounds', 'config.batchSize']);
    // The cross-field rule is checked once every field is valid on its own.
    expect(
      refusal(() => parseRunConfig({ model: 'mlp', rounds: 1, minClients: 3, clientsPerRound: 2 }))
        .data,
    ).toMatchObject({ field: 'clientsPerRound' });
    expect(refusal(() => parseRunConfig(null, runConfigSchema, 'config.')).data).toMatchObject({
      field: 'config',
    });
  });

  it('takes the REST body flat, beside the federation and name', () => {
    const body = createRunSchemaFor(choices).parse({
      federationId: 'f1',
      name: 'baseline',
      model: 'cnn',
      strategy: 'momentum',
      rounds: 3,
    });
    expect(body).toMatchObject({
      federationId: 'f1',
      name: 'baseline',
      model: 'cnn',
      strategyOptions: { momentum: 0.9 },
    });
    // Published as OpenAPI from its input side.
    const schema = z.toJSONSchema(createRunSchemaFor(choices), { io: 'input' }) as {
      required: string[];
      properties: Record<string, unknown>;
    };
    // `task` or `model`: neither is required on its own (the transform asks for one).
    expect(schema.required.sort()).toEqual(['federationId', 'rounds']);
    expect(Object.keys(schema.properties)).toContain('localEpochs');
  });

  it('says what each field takes, in words, whatever the bad value is', () => {
    const run = { model: 'fedavg-2nn', rounds: 1 };
    const messageFor = (field: string, value: unknown) => {
      const issues = (refusal(() => parseRunConfig({ ...run, [field]: value })).data?.['issues'] ??
        []) as Array<{ field: string; message: string }>;
      return issues.find((issue) => issue.field === field)?.message;
    };
    for (const value of ['', '3', 0, 100_001, 2.5, null]) {
      expect(messageFor('rounds', value), JSON.stringify(value)).toBe(
        'a whole number from 1 to 100,000',
      );
    }
    expect(messageFor('seed', 1.5)).toBe('a whole number from 0 to 2,147,483,647');
    expect(messageFor('fractionFit', 0)).toMatch(/^a fraction above 0 and at most 1/);
    expect(messageFor('learningRate', -1)).toBe('a number above 0 and at most 100');
    expect(messageFor('keepUpdates', 'yes')).toBe('true or false');
    // The deadline's floor is 1 s; a few milliseconds is refused, a second is not.
    expect(messageFor('roundDeadlineMs', 5)).toBe(
      'a whole number from 1,000 to 86,400,000 milliseconds (1 s to 24 h)',
    );
    expect(runConfigSchema.parse({ ...run, roundDeadlineMs: 1000 }).roundDeadlineMs).toBe(1000);
  });

  it('takes clients per round or a fraction, not both, and never fewer than the minimum', () => {
    const run = { model: 'fedavg-2nn', rounds: 1 };
    const both = refusal(() => parseRunConfig({ ...run, clientsPerRound: 4, fractionFit: 0.5 }));
    expect(both.data).toMatchObject({ field: 'fractionFit' });
    expect(both.message).toBe('fractionFit: give clientsPerRound or fractionFit, not both');
    const fewer = refusal(() => parseRunConfig({ ...run, clientsPerRound: 2, minClients: 3 }));
    expect(fewer.data).toMatchObject({ field: 'clientsPerRound' });
    expect(fewer.message).toMatch(/^clientsPerRound: must be at least minClients \(3\)/);
    expect(runConfigSchema.parse({ ...run, clientsPerRound: 3, minClients: 3 })).toMatchObject({
      clientsPerRound: 3,
      fractionFit: null,
    });
  });

  it("gives a train instruction the run's own field names and the round seed", () => {
    const config = runConfigSchema.parse({
      model: 'mlp',
      rounds: 1,
      localEpochs: 3,
      batchSize: 20,
      learningRate: 0.1,
      seed: 7,
    });
    expect(trainConfigFor(config, 123_456)).toEqual({
      localEpochs: 3,
      batchSize: 20,
      learningRate: 0.1,
      seed: 123_456,
    });
  });
});
