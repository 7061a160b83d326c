/**
 * What the server announces for one SecAgg round and every party checks before taking part:
 * who is in it, the threshold, the curve, and the fixed-point encoding of the updates.
 */
import { ErrorCode } from '@tessera/protocol';
import { refuse } from './errors.js';
import { CURVES, type Curve } from './keys.js';

export const SECAGG_PROTOCOL = 'secagg-bonawitz2017-v1';

export interface SecAggSetup {
  protocol: typeof SECAGG_PROTOCOL;
  /** Binds every message and derived key to this round (e.g. `${runId}/${round}`). */
  roundId: string;
  curve: Curve;
  /** The clients selected for the round (n of them, at most MAX_CLIENTS). */
  clientIds: string[];
  /** t: shares needed to reconstruct a secret, and the fewest clients a step may continue with. */
  threshold: number;
  /** Model parameters per update; the masked vector has one more word (the example count). */
  parameterCount: number;
  /** R: each parameter is clipped to [−R, R] before quantisation. */
  clipRange: number;
  /** E: a client's example count, its FedAvg weight, must be an integer in [1, E]. */
  maxExamplesPerClient: number;
}

/**
 * Shamir shares over GF(2^8) (the `shamir-secret-sharing` library) take their x-coordinates
 * from 1..255: at most 255 holders. A larger round needs SecAgg+'s sparse graph (not built).
 */
export const MAX_CLIENTS = 255;
export const MAX_PARAMETERS = 1 << 27;
export const MAX_ID_LENGTH = 256;
/** The sum of n clients' words must not wrap modulo 2^32 read as signed: |sum| ≤ 2^31 − 1. */
export const SUM_BOUND = 2 ** 31 - 1;

export interface Quantisation {
  /** Δ: a word counts Δ units of (examples × parameter value). */
  step: number;
  /** L: a client's word for one parameter lies in [−L, L], so n of them sum within ±(2^31 − 1). */
  levelBound: number;
  /** Words in a masked vector: parameterCount + 1. */
  vectorWords: number;
}

function invalid(field: string, message: string, data?: Record<string, unknown>): never {
  return refuse(ErrorCode.INVALID_ARGUMENT, message, { field, ...data });
}

function isPositiveInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 1;
}

/**
 * Checks a setup (the server before announcing it, each client on receiving it) and returns
 * its fixed-point encoding. Refuses (INVALID_ARGUMENT, data.field) anything that would make
 * the protocol unsafe or the sum wrap.
 */
export function checkSetup(setup: SecAggSetup): Quantisation {
  if (typeof setup !== 'object' || setup === null) invalid('setup', 'the setup is not an object');
  if (setup.protocol !== SECAGG_PROTOCOL) {
    invalid('protocol', `unknown secure-aggregation protocol (this is ${SECAGG_PROTOCOL})`);
  }
  if (typeof setup.roundId !== 'string' || setup.roundId.length === 0) {
    invalid('roundId', 'roundId must be a non-empty string');
  }
  if (setup.roundId.length > MAX_ID_LENGTH) invalid('roundId', 'roundId is too long');
  if (!CURVES.includes(setup.curve)) invalid('curve', `curve must be one of ${CURVES.join(', ')}`);
  const ids = setup.clientIds;
  if (!Array.isArray(ids) || ids.length < 2 || ids.length > MAX_CLIENTS) {
    invalid('clientIds', `a round has 2 to ${MAX_CLIENTS} clients`);
  }
  ids.forEach((id, index) => {
    if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_LENGTH) {
      invalid(`clientIds[${index}]`, `a client id is a string of 1 to ${MAX_ID_LENGTH} characters`);
    }
  });
  if (new Set(ids).size !== ids.length) invalid('clientIds', 'client ids must be distinct');
  const n = ids.length;
  // t > n/2: a server that tells some clients "u dropped" and others "u survived" gets at most
  // n shares in all, never t of u's self-mask seed and t of its key (Bonawitz et al. §4, §6).
  const minimumThreshold = Math.floor(n / 2) + 1;
  if (
    !Number.isInteger(setup.threshold) ||
    setup.threshold < minimumThreshold ||
    setup.threshold > n
  ) {
    invalid(
      'threshold',
      `the threshold must be an integer from ${minimumThreshold} (a majority) to ${n}`,
      {
        minimum: minimumThreshold,
        maximum: n,
      },
    );
  }
  if (!isPositiveInteger(setup.parameterCount) || setup.parameterCount > MAX_PARAMETERS) {
    invalid('parameterCount', `parameterCount must be an integer from 1 to ${MAX_PARAMETERS}`);
  }
  if (
    typeof setup.clipRange !== 'number' ||
    !Number.isFinite(setup.clipRange) ||
    setup.clipRange <= 0
  ) {
    invalid('clipRange', 'clipRange must be a finite number > 0');
  }
  if (!isPositiveInteger(setup.maxExamplesPerClient)) {
    invalid('maxExamplesPerClient', 'maxExamplesPerClient must be an integer ≥ 1');
  }
  // The example counts are summed in the last word: n·E must stay within the signed bound.
  if (n * setup.maxExamplesPerClient > SUM_BOUND) {
    invalid('maxExamplesPerClient', `n × maxExamplesPerClient must be at most 2^31 − 1`, {
      maximum: Math.floor(SUM_BOUND / n),
    });
  }
  const levelBound = Math.floor(SUM_BOUND / n);
  return {
    step: (setup.maxExamplesPerClient * setup.clipRange) / levelBound,
    levelBound,
    vectorWords: setup.parameterCount + 1,
  };
}
