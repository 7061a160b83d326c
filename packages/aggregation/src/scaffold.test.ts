import { ErrorCode, TesseraError } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import {
  createStrategy,
  parseStrategyOptions,
  SCAFFOLD_MAX_PARAMETERS,
  type TrainUpdate,
} from './index.js';

function update(
  clientId: string,
  numExamples: number,
  weights: number[],
  controlDelta?: number[],
): TrainUpdate {
  return {
    clientId,
    numExamples,
    weights: Float32Array.from(weights),
    metrics: { loss: numExamples },
    ...(controlDelta === undefined ? {} : { controlDelta: Float32Array.from(controlDelta) }),
  };
}

function expectCode(fn: () => unknown, code: string, field: string): void {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(TesseraError);
    expect((error as TesseraError).code).toBe(code);
    expect((error as TesseraError).data?.['field']).toBe(field);
    return;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}

describe('scaffold', () => {
  it('steps x by eta_g mean(y - x) and c by |S|/N mean(delta c), by hand', () => {
    const strategy = createStrategy('scaffold', { serverLearningRate: 0.5, clientCount: 4 });
    // Round 1 from x = [1, 2], c = 0.
    const first = strategy.beginRound(1, Float32Array.of(1, 2));
    expect([...(first.controlVariate ?? [])]).toEqual([0, 0]);
    first.add(update('a', 1, [2, 2], [0.5, -1]));
    first.add(update('b', 3, [6, -2], [1.5, 3]));
    const one = first.finish();
    // mean y = [4, 0], mean(y - x) = [3, -2]: x = [1 + 1.5, 2 - 1]. mean dc = [1, 1], c = 2/4 [1, 1].
    expect([...(one.weights ?? [])]).toEqual([2.5, 1]);
    expect(one.numExamples).toBe(4);
    // Metrics stay example-weighted: (1 * 1 + 3 * 3) / 4.
    expect(one.metrics['loss']).toBe(2.5);
    expect([...(strategy.state()?.arrays['c'] ?? [])]).toEqual([0.5, 0.5]);

    // Round 2 sends c = [0.5, 0.5]; one client: x = 2.5 + 0.5 (3.5 - 2.5), c = c + 1/4 [-1, 2].
    const second = strategy.beginRound(2, Float32Array.of(2.5, 1));
    expect([...(second.controlVariate ?? [])]).toEqual([0.5, 0.5]);
    second.add(update('a', 7, [3.5, 1], [-1, 2]));
    expect([...(second.finish().weights ?? [])]).toEqual([3, 1]);
    expect([...(strategy.beginRound(3, Float32Array.of(3, 1)).controlVariate ?? [])]).toEqual([
      0.25, 1,
    ]);
  });

  it('without clientCount moves c by the whole mean delta c (every client in every round)', () => {
    const strategy = createStrategy('scaffold');
    const round = strategy.beginRound(1, Float32Array.of(0));
    round.add(update('a', 1, [1], [2]));
    round.add(update('b', 1, [3], [4]));
    expect([...(round.finish().weights ?? [])]).toEqual([2]);
    expect([...(strategy.state()?.arrays['c'] ?? [])]).toEqual([3]);
  });

  it('refuses an update without, or with a bad, controlDelta, keeping nothing of it', () => {
    const strategy = createStrategy('scaffold');
    const round = strategy.beginRound(1, Float32Array.of(0, 0));
    round.add(update('a', 1, [1, 1], [1, 1]));
    expectCode(() => round.add(update('b', 1, [9, 9])), ErrorCode.INVALID_ARGUMENT, 'controlDelta');
    expectCode(
      () => round.add(update('b', 1, [9, 9], [1])),
      ErrorCode.WEIGHTS_LENGTH_MISMATCH,
      'controlDelta',
    );
    expectCode(
      () => round.add(update('b', 1, [9, 9], [1, Number.NaN])),
      ErrorCode.NON_FINITE_WEIGHTS,
      'controlDelta',
    );
    expect(round.numUpdates).toBe(1);
    expect([...(round.finish().weights ?? [])]).toEqual([1, 1]);
    expect([...(strategy.state()?.arrays['c'] ?? [])]).toEqual([1, 1]);
  });

  it('refuses a round of more updates than clientCount clients', () => {
    const strategy = createStrategy('scaffold', { clientCount: 1 });
    const round = strategy.beginRound(1, Float32Array.of(0));
    round.add(update('a', 1, [1], [1]));
    round.add(update('b', 1, [1], [1]));
    expectCode(() => round.finish(), ErrorCode.INVALID_ARGUMENT, 'strategyOptions.clientCount');
    expect(strategy.state()).toBeNull();
  });

  it('refuses a model whose x and c do not fit one frame, before the round begins', () => {
    expect(SCAFFOLD_MAX_PARAMETERS).toBe(1_040_384);
    const strategy = createStrategy('scaffold');
    expectCode(
      () => strategy.beginRound(1, new Float32Array(SCAFFOLD_MAX_PARAMETERS + 1)),
      ErrorCode.PAYLOAD_TOO_LARGE,
      'strategy',
    );
    expect(
      strategy.beginRound(1, new Float32Array(SCAFFOLD_MAX_PARAMETERS)).controlVariate,
    ).toHaveLength(SCAFFOLD_MAX_PARAMETERS);
  });

  it('asks every client for option II, and checks its options', () => {
    expect(createStrategy('scaffold').configureTrain?.(1, ['a'])).toEqual({
      controlVariateOption: 2,
    });
    expect(parseStrategyOptions('scaffold')).toEqual({
      serverLearningRate: 1,
      arithmetic: 'float64-sequential',
    });
    for (const [options, field] of [
      [{ serverLearningRate: 0 }, 'strategyOptions.serverLearningRate'],
      [{ clientCount: 0 }, 'strategyOptions.clientCount'],
      [{ clientCount: 2.5 }, 'strategyOptions.clientCount'],
      [{ mu: 1 }, 'strategyOptions'],
    ] as const) {
      expectCode(
        () => parseStrategyOptions('scaffold', options),
        ErrorCode.INVALID_ARGUMENT,
        field,
      );
    }
  });
});
