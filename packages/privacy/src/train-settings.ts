/**
 * The privacy settings a train instruction carries in `strategy.settings` (docs/protocol.md
 * §5.2), beside a strategy's own: local DP (the client clips and noises its change) and the
 * client-side clip of central DP under secure aggregation (the client clips its change, the
 * coordinator noises the unmasked sum). They ride in `strategy.settings` because a client that
 * does not know a setting there fails the round instead of ignoring it, so an older client
 * can never send an update the run did not promise.
 */
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { LOCAL_DP_SETTING_KEYS, type LocalDpSettings, readLocalDpSettings } from './local.js';

/** C of dp-fedavg under secure aggregation: clip w - g to it, and weigh the change as 1. */
export const CENTRAL_CLIP_SETTING_KEY = 'centralClipNorm';

/** Every setting name this module owns: a client reads these whatever the strategy's name. */
export const PRIVACY_SETTING_NAMES: readonly string[] = [
  LOCAL_DP_SETTING_KEYS.clipNorm,
  LOCAL_DP_SETTING_KEYS.noiseMultiplier,
  CENTRAL_CLIP_SETTING_KEY,
];

/** What a round's update must go through on the client before it leaves. */
export interface ClientPrivacySettings {
  localDp: LocalDpSettings | null;
  /** Central DP under secure aggregation: the change's L2 bound, and every weight 1. */
  centralClipNorm: number | null;
}

/** The settings as the train instruction carries them (empty when neither is asked for). */
export function privacyTrainSettings(settings: ClientPrivacySettings): Record<string, number> {
  const out: Record<string, number> = {};
  if (settings.localDp !== null) {
    out[LOCAL_DP_SETTING_KEYS.clipNorm] = settings.localDp.clipNorm;
    out[LOCAL_DP_SETTING_KEYS.noiseMultiplier] = settings.localDp.noiseMultiplier;
    // Read back: refuses a value the client would refuse, before any instruction goes out.
    readLocalDpSettings(out);
  }
  if (settings.centralClipNorm !== null) {
    checkCentralClipNorm(settings.centralClipNorm);
    out[CENTRAL_CLIP_SETTING_KEY] = settings.centralClipNorm;
  }
  return out;
}

function checkCentralClipNorm(value: unknown): asserts value is number {
  if (typeof value !== 'number' || !(value > 0) || !Number.isFinite(value)) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `${CENTRAL_CLIP_SETTING_KEY} must be a positive finite number, got ${JSON.stringify(value)}`,
      { field: CENTRAL_CLIP_SETTING_KEY },
    );
  }
}

/** The client's side: the privacy settings of a train instruction's `strategy.settings`. */
export function readPrivacySettings(
  settings: Readonly<Record<string, number | boolean | string>>,
): ClientPrivacySettings {
  const localDp = readLocalDpSettings(settings);
  const central = settings[CENTRAL_CLIP_SETTING_KEY];
  if (central !== undefined) checkCentralClipNorm(central);
  return { localDp, centralClipNorm: central ?? null };
}
