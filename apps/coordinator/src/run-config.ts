import { minUpdatesFor, runRulesFor, STRATEGY_NAMES, STRATEGY_OPTIONS } from '@tessera/aggregation';
import { MODEL_NAMES } from '@tessera/ml';
import {
  createRunSchemaFor,
  parseRunConfig,
  type RunConfig,
  type RunConfigChoices,
  runConfigSchemaFor,
} from '@tessera/protocol';
import type { z } from 'zod';

/** What this coordinator can run: its models, its strategies, their options and round sizes. */
export const RUN_CONFIG_CHOICES: RunConfigChoices = {
  models: MODEL_NAMES,
  strategies: STRATEGY_NAMES,
  strategyOptions: STRATEGY_OPTIONS,
  minUpdates: minUpdatesFor,
  runRules: runRulesFor,
};

/** A run as an admin creates it (`POST /api/runs`), with this coordinator's choices. */
export const createRunSchema = createRunSchemaFor(RUN_CONFIG_CHOICES);
export type CreateRunRequest = z.output<typeof createRunSchema>;

const runConfigSchema = runConfigSchemaFor(RUN_CONFIG_CHOICES);

/**
 * A run config checked against what this coordinator can run: INVALID_ARGUMENT naming the
 * first bad field otherwise. The edges that create runs without REST (the CLI's simulate) parse
 * with it; a start parses a stored config with it again, since the database checked only the
 * shape and a run stored by another version may name what this one cannot build.
 */
export function checkRunConfig(config: unknown): RunConfig {
  return parseRunConfig(config, runConfigSchema);
}
