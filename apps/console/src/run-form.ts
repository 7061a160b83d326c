/**
 * The run form's rules that are the form's own, pure (no DOM) so unit tests run in Node: its
 * labels, the deadline in seconds or minutes, the strategy options read from the JSON Schema
 * `GET /api/meta` publishes, and every message said with the labels the form shows. The
 * config's own rules stay in @tessera/protocol's run schema, which the form runs too.
 */
import { RUN_CONFIG_LIMITS } from '@tessera/protocol';

/** The form's label of each API field: what its messages call it. */
export const LABELS: Record<string, string> = {
  name: 'Name',
  federationId: 'Federation',
  model: 'Model',
  strategy: 'Strategy',
  strategyOptions: 'Strategy options',
  rounds: 'Rounds',
  clientsPerRound: 'Clients per round',
  fractionFit: 'Fraction of clients',
  minClients: 'Minimum clients',
  roundDeadlineMs: 'Round deadline',
  localEpochs: 'Local epochs',
  batchSize: 'Batch size',
  learningRate: 'Learning rate',
  seed: 'Seed',
  keepUpdates: 'Keep update bytes',
  updateStorageLimitMb: 'Storage limit for kept updates',
  secureAggregation: 'Secure aggregation',
  localDp: 'Local differential privacy',
};

const API_NAMES = new RegExp(`\\b(${Object.keys(LABELS).join('|')})\\b`, 'g');

/**
 * A message of the run schema or the server, at `field`, as the form says it: "Rounds: a whole
 * number from 1 to 100,000"; other fields it names are called by their labels ("Clients per
 * round: must be at least minimum clients (3)"); a strategy option by its own name.
 */
export function inPeoplesWords(field: string, message: string): string {
  const [head, option] = field.split('.');
  const label = option !== undefined ? option : (LABELS[head ?? ''] ?? field);
  const said = message.replace(API_NAMES, (name) => (LABELS[name] ?? name).toLowerCase());
  return `${label}: ${said}`;
}

// --- the round deadline, in seconds or minutes

export type DeadlineUnit = 's' | 'min';
const UNIT_MS: Record<DeadlineUnit, number> = { s: 1000, min: 60_000 };
const { formMinMs, max: deadlineMaxMs } = RUN_CONFIG_LIMITS.roundDeadlineMs;

/** The deadline box and its unit -> roundDeadlineMs, or the message to show at the field. */
export function deadlineMs(raw: string, unit: DeadlineUnit): number | { error: string } {
  const error = `at least ${formMinMs / 1000} seconds and at most 24 hours (${deadlineMaxMs / 60_000} minutes)`;
  const value = Number(raw.trim());
  if (raw.trim() === '' || !Number.isFinite(value))
    return { error: `a number of ${unit === 's' ? 'seconds' : 'minutes'}, ${error}` };
  const ms = Math.round(value * UNIT_MS[unit]);
  return ms < formMinMs || ms > deadlineMaxMs ? { error } : ms;
}

// --- strategy options, from the JSON Schema of the strategy's zod schema

/** One number option of a strategy, as its JSON Schema describes it. */
export interface OptionField {
  name: string;
  integer: boolean;
  minimum?: number;
  exclusiveMinimum?: number;
  maximum?: number;
  exclusiveMaximum?: number;
  default?: number;
  description?: string;
}

interface JsonSchemaProperty {
  type?: string;
  minimum?: number;
  exclusiveMinimum?: number;
  maximum?: number;
  exclusiveMaximum?: number;
  default?: unknown;
  description?: string;
}

/** The number options a strategy takes (every option of the built-in strategies is one). */
export function optionFields(schema: unknown): OptionField[] {
  const properties = (schema as { properties?: Record<string, JsonSchemaProperty> } | undefined)
    ?.properties;
  return Object.entries(properties ?? {}).flatMap(([name, property]) => {
    if (property.type !== 'number' && property.type !== 'integer') return [];
    const field: OptionField = { name, integer: property.type === 'integer' };
    for (const key of ['minimum', 'exclusiveMinimum', 'maximum', 'exclusiveMaximum'] as const) {
      if (typeof property[key] === 'number') field[key] = property[key];
    }
    if (typeof property.default === 'number') field.default = property.default;
    if (typeof property.description === 'string') field.description = property.description;
    return [field];
  });
}

const plain = (value: number) => value.toLocaleString('en-US', { maximumFractionDigits: 12 });

/** What an option takes, in words: "a number from 0 to below 0.5", "a whole number, 1 or more". */
export function describeBounds(field: OptionField): string {
  const kind = field.integer ? 'a whole number' : 'a number';
  const low =
    field.minimum !== undefined
      ? `from ${plain(field.minimum)}`
      : field.exclusiveMinimum !== undefined
        ? `above ${plain(field.exclusiveMinimum)}`
        : null;
  const high =
    field.maximum !== undefined
      ? `${low?.startsWith('from') ? 'to' : 'and at most'} ${plain(field.maximum)}`
      : field.exclusiveMaximum !== undefined
        ? `${low?.startsWith('from') ? 'to' : 'and'} below ${plain(field.exclusiveMaximum)}`
        : null;
  return [kind, low, high].filter((part) => part !== null).join(' ');
}

/** An option's box -> its value (undefined: left empty, the strategy's default), or a message. */
export function optionValue(
  field: OptionField,
  raw: string,
): number | undefined | { error: string } {
  if (raw.trim() === '') return undefined;
  const value = Number(raw.trim());
  const ok =
    Number.isFinite(value) &&
    (!field.integer || Number.isInteger(value)) &&
    (field.minimum === undefined || value >= field.minimum) &&
    (field.exclusiveMinimum === undefined || value > field.exclusiveMinimum) &&
    (field.maximum === undefined || value <= field.maximum) &&
    (field.exclusiveMaximum === undefined || value < field.exclusiveMaximum);
  return ok ? value : { error: describeBounds(field) };
}

/** A number box as the run schema should see it: a number, or the text as typed so it is named. */
export function numberOrText(raw: string): number | string {
  const text = raw.trim();
  return text === '' || Number.isNaN(Number(text)) ? text : Number(text);
}
