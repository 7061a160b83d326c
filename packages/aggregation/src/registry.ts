import { ErrorCode, TesseraError } from '@tessera/protocol';
import { FedAvg } from './fedavg.js';
import { FedAvgM } from './fedavgm.js';
import { FedMedian, TrimmedMean } from './robust.js';
import type { Strategy } from './strategy.js';

/** Reads the named numeric options (with defaults) and refuses any other option. */
function numericOptions<K extends string>(
  strategy: string,
  options: Record<string, unknown>,
  defaults: Record<K, number>,
): Record<K, number> {
  const known = Object.keys(defaults);
  const unknown = Object.keys(options).filter((key) => !known.includes(key));
  if (unknown.length > 0) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `${strategy} takes ${known.length > 0 ? known.join(', ') : 'no options'}; got ${unknown.join(', ')}`,
      { field: 'strategyOptions' },
    );
  }
  const out = { ...defaults };
  for (const key of known as K[]) {
    const value = options[key];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `${strategy}: ${key} must be a finite number`,
        { field: `strategyOptions.${key}` },
      );
    }
    out[key] = value;
  }
  return out;
}

const factories: Record<string, (options: Record<string, unknown>) => Strategy> = {
  fedavg: (options) => {
    numericOptions('fedavg', options, {});
    return new FedAvg();
  },
  fedavgm: (options) =>
    new FedAvgM(numericOptions('fedavgm', options, { serverLearningRate: 1, momentum: 0.9 })),
  fedmedian: (options) => {
    numericOptions('fedmedian', options, {});
    return new FedMedian();
  },
  'trimmed-mean': (options) =>
    new TrimmedMean(numericOptions('trimmed-mean', options, { beta: 0.1 }).beta),
};

export const STRATEGY_NAMES = Object.keys(factories);

/** Builds a strategy by name; unknown names and options are refused with INVALID_ARGUMENT. */
export function createStrategy(name: string, options: Record<string, unknown> = {}): Strategy {
  const factory = factories[name];
  if (!factory) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `unknown strategy "${name}"; available: ${STRATEGY_NAMES.join(', ')}`,
      { field: 'strategy' },
    );
  }
  return factory(options);
}
