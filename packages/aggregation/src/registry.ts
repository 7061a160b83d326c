import { ErrorCode, TesseraError } from '@tessera/protocol';
import { FedAvg } from './fedavg.js';
import type { Strategy } from './strategy.js';

const factories: Record<string, (options: Record<string, unknown>) => Strategy> = {
  fedavg: (options) => {
    const unknown = Object.keys(options);
    if (unknown.length > 0) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `fedavg takes no options; got ${unknown.join(', ')}`,
      );
    }
    return new FedAvg();
  },
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
