import type { ClientTrainSettings, Strategy } from '@tessera/aggregation';
import {
  ErrorCode,
  TesseraError,
  type TrainStrategy,
  trainStrategySchema,
} from '@tessera/protocol';

/** Clients that get the same train instruction, and the strategy field it carries (if any). */
export interface TrainGroup {
  clientIds: string[];
  strategy: TrainStrategy | undefined;
}

/**
 * The train instructions of one attempt, grouped: the strategy's client settings for `round`
 * (Strategy.configureTrain), checked against the wire's bounds, with the clients that get the
 * same settings together so that the transport still encodes each payload once. A strategy
 * without client settings gives one group without a `strategy` field, the instruction of
 * every run before strategies could configure clients.
 */
export function trainGroups(
  strategy: Strategy,
  round: number,
  selected: readonly string[],
  /** The run's privacy settings for every client (@tessera/privacy's privacyTrainSettings). */
  privacy: ClientTrainSettings = {},
): TrainGroup[] {
  const configured = strategy.configureTrain?.(round, selected);
  const withPrivacy = Object.keys(privacy).length > 0;
  if (configured === undefined && !withPrivacy) {
    return [{ clientIds: [...selected], strategy: undefined }];
  }
  const settingsOf = (clientId: string): ClientTrainSettings | undefined => {
    const own =
      configured instanceof Map ? configured.get(clientId) : (configured as ClientTrainSettings);
    return withPrivacy ? { ...own, ...privacy } : own;
  };
  const groups = new Map<string, TrainGroup>();
  for (const clientId of selected) {
    const settings = settingsOf(clientId);
    const field =
      settings === undefined || Object.keys(settings).length === 0
        ? undefined
        : checked(strategy.name, settings);
    const key = field === undefined ? '' : JSON.stringify(field.settings);
    const group = groups.get(key) ?? { clientIds: [], strategy: field };
    group.clientIds.push(clientId);
    groups.set(key, group);
  }
  return [...groups.values()];
}

/** The strategy field as sent; settings outside the wire's bounds are the strategy's bug. */
function checked(name: string, settings: ClientTrainSettings): TrainStrategy {
  const result = trainStrategySchema.safeParse({ name, settings: { ...settings } });
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const where = ['strategy', ...(issue?.path ?? []).map(String)].join('.');
  throw new TesseraError(
    ErrorCode.INTERNAL,
    `${name}: client settings the train instruction cannot carry: ${where}: ${issue?.message ?? 'invalid'}`,
    { field: where },
  );
}
