import type { RoundPrivacy, Strategy } from '@tessera/aggregation';
import type { RoundPrivacyRecord } from '@tessera/db';
import { checkLocalDpUpdate, localDpGuarantee, privacyTrainSettings } from '@tessera/privacy';
import { ErrorCode, type RunConfig, TesseraError } from '@tessera/protocol';
import { secAggDpRecord } from './secagg-round.js';

/**
 * A run's privacy mechanisms at the round engine's edges: what the train instruction asks of
 * the clients, the check of what the coordinator can see of a local-DP update, and what the
 * round record keeps (Round.privacy, flat; never noise, never an individual update).
 */

/** The chance an honest client's update is refused by the local-DP norm check. */
export const LOCAL_DP_FALSE_REJECTION = 1e-9;

/**
 * The privacy settings every train instruction of the run carries (docs/protocol.md §5.2):
 * local DP's, and dp-fedavg's clip norm when the clients must clip (secure aggregation).
 */
export function privacySettingsFor(
  config: Pick<RunConfig, 'localDp' | 'secureAggregation'>,
  strategy: Strategy,
): Record<string, number> {
  const centralClipNorm =
    config.secureAggregation !== null ? (strategy.clientClipNorm ?? null) : null;
  return privacyTrainSettings({
    localDp:
      config.localDp === null
        ? null
        : { clipNorm: config.localDp.clipNorm, noiseMultiplier: config.localDp.noiseMultiplier },
    centralClipNorm,
  });
}

/**
 * Local DP's check of an update (packages/privacy localDpNormRange): the change's norm must lie
 * where clipping to C and noise of std sigma C put it, except with probability
 * LOCAL_DP_FALSE_REJECTION; else LOCAL_DP_NORM_OUT_OF_RANGE with the norm and the range.
 */
export function checkLocalDp(
  localDp: RunConfig['localDp'],
  global: Float32Array,
  weights: Float32Array,
): void {
  if (localDp === null) return;
  try {
    checkLocalDpUpdate(global, weights, localDp, LOCAL_DP_FALSE_REJECTION);
  } catch (cause) {
    const error = TesseraError.from(cause);
    if (error.code !== ErrorCode.INVALID_ARGUMENT) throw error;
    throw new TesseraError(ErrorCode.LOCAL_DP_NORM_OUT_OF_RANGE, error.message, error.data);
  }
}

/** Local DP's part of Round.privacy: mechanism, parameters, what it guarantees, refusals. */
function localDpRecord(
  localDp: NonNullable<RunConfig['localDp']>,
  round: number,
  refused: number,
): RoundPrivacyRecord {
  const guarantee = localDpGuarantee(localDp, round, localDp.delta);
  return {
    localMechanism: 'local-gaussian',
    localClipNorm: localDp.clipNorm,
    localNoiseMultiplier: localDp.noiseMultiplier,
    localNoiseStd: localDp.noiseMultiplier * localDp.clipNorm,
    // Per client, replace-one of its whole contribution: not per example.
    localAdjacency: 'replace-one-client',
    localEpsilonPerRound: guarantee.epsilonPerRound,
    // Composed over rounds 1..round: bounds a client that took part in every one of them.
    localEpsilon: guarantee.epsilon,
    localDelta: guarantee.delta,
    localNormRefused: refused,
    localFalseRejection: LOCAL_DP_FALSE_REJECTION,
  };
}

/**
 * What the round record keeps of the run's privacy: dp-fedavg's accounting, the secure
 * aggregation's record (both, flat, when both ran), and local DP's. Null when none applies.
 */
export function roundPrivacyRecord(parts: {
  round: number;
  secure: RoundPrivacyRecord | null;
  dp: RoundPrivacy | undefined;
  localDp: RunConfig['localDp'];
  localRefused: number;
}): RoundPrivacyRecord | null {
  const { secure, dp } = parts;
  const central =
    secure !== null && dp !== undefined
      ? secAggDpRecord(secure, { ...dp })
      : (secure ?? (dp === undefined ? null : { ...dp }));
  if (parts.localDp === null) return central;
  return { ...central, ...localDpRecord(parts.localDp, parts.round, parts.localRefused) };
}
