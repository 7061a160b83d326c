import {
  type ClientPrivacySettings,
  PRIVACY_SETTING_NAMES,
  readPrivacySettings,
} from '@tessera/privacy';
import {
  TesseraError,
  type TrainInstruction,
  trainStrategySchema,
  WIRE_LIMITS,
} from '@tessera/protocol';
import { RoundFailure } from './trainer.js';

/**
 * The failure code of a round this client cannot train as its strategy asks (an unknown
 * strategy or setting, a value out of range, a trainer that cannot apply it): the client
 * replies `failed` with it rather than train plain SGD instead (docs/protocol.md §5.2).
 */
export const UNSUPPORTED_STRATEGY_SETTING = 'UNSUPPORTED_STRATEGY_SETTING';

/** What a train instruction's strategy asks of local training, as the trainer applies it. */
export interface LocalTrainingSettings {
  /** FedProx's μ: the loss gains μ/2 ||w − w_global||² (0: none). */
  proximalMu?: number;
  /**
   * SCAFFOLD (2: option II, the only one): correct every gradient by c − c_i, with c the
   * instruction's `controlVariate`, and reply with Δc_i (docs/protocol.md §5.2).
   */
  controlVariateOption?: number;
}

export type LocalTrainingSetting = keyof LocalTrainingSettings;

/**
 * What @tessera/ml's trainLocal applies, so what TfjsTrainer supports, in this thread or in
 * a web worker (the page's WorkerTrainer says so without loading tfjs).
 */
export const TFJS_TRAINER_SETTINGS: readonly LocalTrainingSetting[] = [
  'proximalMu',
  'controlVariateOption',
];

/** The range a numeric setting must be within, inclusive. */
interface NumberRule {
  min: number;
  max: number;
}

/**
 * The strategies whose client side this client implements, and their settings: a setting not
 * listed is refused. A setting name means the same in every strategy that uses it.
 */
const KNOWN_STRATEGIES: Readonly<
  Record<string, Readonly<Partial<Record<LocalTrainingSetting, NumberRule>>>>
> = {
  fedprox: { proximalMu: { min: 0, max: WIRE_LIMITS.maxProximalMu } },
  scaffold: { controlVariateOption: { min: 2, max: 2 } },
};

/** `field` names the setting in the message: the round's outcome shows it to the admin. */
function unsupported(message: string, _field: string): RoundFailure {
  return new RoundFailure(UNSUPPORTED_STRATEGY_SETTING, message);
}

/**
 * The settings a train instruction's `strategy` asks for, if this client and its trainer can
 * honour every one of them; otherwise a RoundFailure (code UNSUPPORTED_STRATEGY_SETTING, the
 * setting named in its message) that fails the round.
 */
export function readStrategySettings(
  strategy: TrainInstruction['strategy'],
  trainerSupports: readonly LocalTrainingSetting[],
): LocalTrainingSettings {
  if (strategy === undefined) return {};
  const parsed = trainStrategySchema.safeParse(strategy);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = ['strategy', ...(issue?.path ?? []).map(String)].join('.');
    throw unsupported(`malformed strategy: ${field}: ${issue?.message ?? 'invalid'}`, field);
  }
  const { name } = parsed.data;
  // The privacy settings are read by readClientPrivacy, under any strategy's name.
  const settings = Object.fromEntries(
    Object.entries(parsed.data.settings).filter(([key]) => !PRIVACY_SETTING_NAMES.includes(key)),
  );
  const schema = Object.hasOwn(KNOWN_STRATEGIES, name) ? KNOWN_STRATEGIES[name] : undefined;
  // A strategy that asks nothing of training (FedAvg, DP-FedAvg) may still carry privacy settings.
  if (schema === undefined && Object.keys(settings).length === 0) return {};
  if (schema === undefined) {
    throw unsupported(
      `this client does not implement the client side of strategy "${name}" (it knows ${Object.keys(KNOWN_STRATEGIES).join(', ')})`,
      'strategy.name',
    );
  }
  const read: LocalTrainingSettings = {};
  for (const [key, value] of Object.entries(settings)) {
    const field = `strategy.settings.${key}`;
    const rule = Object.hasOwn(schema, key) ? schema[key as LocalTrainingSetting] : undefined;
    if (rule === undefined) {
      throw unsupported(`this client does not know setting ${key} of strategy "${name}"`, field);
    }
    if (typeof value !== 'number' || !(value >= rule.min && value <= rule.max)) {
      throw unsupported(
        `strategy "${name}": ${key} must be a number within [${rule.min}, ${rule.max}], got ${JSON.stringify(value)}`,
        field,
      );
    }
    if (!trainerSupports.includes(key as LocalTrainingSetting)) {
      throw unsupported(`this client's trainer cannot apply ${key} (strategy "${name}")`, field);
    }
    read[key as LocalTrainingSetting] = value;
  }
  for (const key of Object.keys(schema)) {
    if (read[key as LocalTrainingSetting] === undefined) {
      throw unsupported(
        `strategy "${name}" sent no ${key}, which its client side needs`,
        `strategy.settings.${key}`,
      );
    }
  }
  return read;
}

/**
 * What the instruction asks of the update before it leaves (local DP, the client-side clip of
 * central DP under secure aggregation; @tessera/privacy's train-settings): a value out of range
 * fails the round (UNSUPPORTED_STRATEGY_SETTING, naming the setting) rather than send an update
 * the run did not promise.
 */
export function readClientPrivacy(strategy: TrainInstruction['strategy']): ClientPrivacySettings {
  if (strategy === undefined) return { localDp: null, centralClipNorm: null };
  try {
    return readPrivacySettings(strategy.settings);
  } catch (cause) {
    const error = TesseraError.from(cause);
    throw unsupported(
      `strategy "${strategy.name}": ${error.message}`,
      String(error.data?.['field']),
    );
  }
}
