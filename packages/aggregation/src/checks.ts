import { ErrorCode, firstNonFinite, TesseraError } from '@tessera/protocol';
import type { TrainUpdate } from './strategy.js';

/**
 * What every aggregator checks before it folds an update in, so that a refused update leaves
 * no trace in the round: the model's length, finite values, and an example count that is a
 * positive number up to 2^53 (which bounds every float64 weighted sum below overflow).
 */
export function checkUpdate(update: TrainUpdate, paramCount: number): void {
  const { weights, numExamples } = update;
  if (weights.length !== paramCount) {
    throw new TesseraError(
      ErrorCode.WEIGHTS_LENGTH_MISMATCH,
      `update has ${weights.length} parameters; the model has ${paramCount}`,
      { field: 'weights', expectedParameters: paramCount, receivedParameters: weights.length },
    );
  }
  // Weights are example counts. Bounding them by 2^53 bounds every product by
  // 2^53 * 3.4e38 (float32's largest), so the float64 sums cannot overflow.
  if (!(numExamples > 0) || numExamples > Number.MAX_SAFE_INTEGER) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `update weight must be a positive number up to 2^53 - 1, got ${numExamples}`,
      { field: 'numExamples' },
    );
  }
  const bad = firstNonFinite(weights);
  if (bad !== -1) {
    throw new TesseraError(
      ErrorCode.NON_FINITE_WEIGHTS,
      `weights[${bad}] is ${weights[bad]}: every parameter must be a finite number`,
      { field: 'weights', index: bad },
    );
  }
}

/** An aggregator used after `finish()`: a bug in the caller, refused with a code. */
export function roundFinished(strategy: string): TesseraError {
  return new TesseraError(ErrorCode.CONFLICT, `${strategy}: round already finished`);
}
