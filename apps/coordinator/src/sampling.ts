import { ErrorCode, TesseraError } from '@tessera/protocol';

export interface SamplingPolicy {
  /** A fixed number of clients per round; wins over fractionFit when both are set. */
  clientsPerRound: number | null;
  /** FedAvg's C: the fraction of available clients to sample each round. */
  fractionFit: number | null;
  /** A round starts only with at least this many clients, and commits only with this many updates. */
  minClients: number;
}

/** How many clients a round asks for when `available` are idle; 0 means "not enough yet". */
export function sampleSize(policy: SamplingPolicy, available: number): number {
  const wanted =
    policy.clientsPerRound ??
    (policy.fractionFit === null ? available : Math.ceil(policy.fractionFit * available));
  const size = Math.min(available, Math.max(wanted, policy.minClients));
  return size >= policy.minClients ? size : 0;
}

/**
 * Samples a round's clients uniformly without replacement, reproducibly: the candidates are
 * sorted first so the result depends on the set of clients and the rng, not on connection order.
 */
export function selectClients(
  available: readonly string[],
  policy: SamplingPolicy,
  random: () => number,
): string[] {
  if (policy.minClients < 1) {
    throw new TesseraError(ErrorCode.INVALID_ARGUMENT, 'minClients must be at least 1', {
      field: 'minClients',
    });
  }
  const size = sampleSize(policy, available.length);
  const pool = [...available].sort();
  // Partial Fisher-Yates: the first `size` slots end up a uniform sample.
  for (let i = 0; i < size; i++) {
    const j = i + Math.floor(random() * (pool.length - i));
    [pool[i], pool[j]] = [pool[j] as string, pool[i] as string];
  }
  return pool.slice(0, size).sort();
}

/**
 * Poisson sampling, as DP-FedAvg's accountant assumes it: each candidate is in the round
 * independently with probability `rate`, so the sample's size varies (and may be 0). `random`
 * must be unpredictable (cryptoUniform in a run): the privacy amplification by sampling rests
 * on nobody knowing who was sampled. The result is sorted, independent of connection order.
 */
export function selectPoisson(
  available: readonly string[],
  rate: number,
  random: () => number,
): string[] {
  if (!(rate > 0 && rate <= 1)) {
    throw new TesseraError(ErrorCode.INVALID_ARGUMENT, `samplingRate ${rate} is not in (0, 1]`, {
      field: 'strategyOptions.samplingRate',
    });
  }
  return [...available].sort().filter(() => random() < rate);
}

/** A uniform draw in [0, 1) with 53 random bits from the operating system's CSPRNG. */
export function cryptoUniform(): number {
  const words = new Uint32Array(2);
  crypto.getRandomValues(words);
  return ((words[0] as number) * 2 ** 21 + ((words[1] as number) >>> 11)) / 2 ** 53;
}
