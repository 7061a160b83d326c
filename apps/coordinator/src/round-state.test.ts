import { ErrorCode, TesseraError } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import { RoundState } from './round-state.js';
import { sampleSize, selectClients } from './sampling.js';

function codeOf(fn: () => void): string {
  try {
    fn();
    return 'ok';
  } catch (error) {
    return (error as TesseraError).code;
  }
}

describe('RoundState', () => {
  it('accepts one reply per selected client and closes when all answered', () => {
    const state = new RoundState('run', 2, ['a', 'b', 'c']);
    expect(codeOf(() => state.checkReply('a', 'run', 2))).toBe('ok');
    state.record('a', 'updated');
    expect(codeOf(() => state.checkReply('a', 'run', 2))).toBe(ErrorCode.DUPLICATE_UPDATE);
    state.record('b', 'rejected');
    expect(codeOf(() => state.checkReply('b', 'run', 2))).toBe(ErrorCode.DUPLICATE_UPDATE);
    expect(state.allAnswered).toBe(false);
    expect(state.drop('c')).toBe(true);
    expect(state.allAnswered).toBe(true);
    expect(state.arrivals).toEqual(['a']);
    expect(state.clientsWith('dropped')).toEqual(['c']);
  });

  it('names what is wrong with a reply', () => {
    const state = new RoundState('run', 2, ['a']);
    expect(codeOf(() => state.checkReply('a', 'other', 2))).toBe(ErrorCode.WRONG_RUN);
    expect(codeOf(() => state.checkReply('a', 'run', 1))).toBe(ErrorCode.WRONG_ROUND);
    expect(codeOf(() => state.checkReply('z', 'run', 2))).toBe(ErrorCode.NOT_SELECTED);
    state.drop('a');
    expect(codeOf(() => state.checkReply('a', 'run', 2))).toBe(ErrorCode.NOT_SELECTED);
    state.close();
    expect(() => state.checkReply('a', 'run', 2)).toThrow(/already closed/);
    expect(() => state.checkReply('a', 'run', 2)).toThrow(TesseraError);
  });

  it('ignores a drop after a reply', () => {
    const state = new RoundState('run', 1, ['a']);
    state.record('a', 'updated');
    expect(state.drop('a')).toBe(false);
    expect(state.arrivals).toEqual(['a']);
  });
});

describe('client sampling', () => {
  const policy = { clientsPerRound: null, fractionFit: 0.1, minClients: 2 };

  it('takes ceil(C * available), at least the minimum, never more than available', () => {
    expect(sampleSize(policy, 100)).toBe(10);
    expect(sampleSize(policy, 15)).toBe(2);
    expect(sampleSize(policy, 1)).toBe(0);
    expect(sampleSize({ clientsPerRound: 5, fractionFit: null, minClients: 1 }, 3)).toBe(3);
    expect(sampleSize({ clientsPerRound: null, fractionFit: null, minClients: 1 }, 7)).toBe(7);
  });

  it('is reproducible for a seed and independent of connection order', () => {
    const ids = Array.from({ length: 50 }, (_, i) => `client-${i}`);
    const rng = (seed: number) => {
      let s = seed;
      return () => {
        s = (s * 1103515245 + 12345) % 2 ** 31;
        return s / 2 ** 31;
      };
    };
    const a = selectClients(ids, policy, rng(1));
    const b = selectClients([...ids].reverse(), policy, rng(1));
    expect(a).toEqual(b);
    expect(new Set(a).size).toBe(5);
    expect(selectClients(ids, policy, rng(2))).not.toEqual(a);
  });
});
