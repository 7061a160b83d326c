import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PendingAnswers } from './pending-answers.js';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** The promise's outcome so far: pending until it settled. */
function track<T>(promise: Promise<T>) {
  const state: { outcome: 'pending' | 'resolved' | 'rejected'; value?: T; error?: unknown } = {
    outcome: 'pending',
  };
  promise.then(
    (value) => {
      state.outcome = 'resolved';
      state.value = value;
    },
    (error) => {
      state.outcome = 'rejected';
      state.error = error;
    },
  );
  return state;
}

describe('PendingAnswers', () => {
  it('settles a waiting request with its answer, once, before the timeout', async () => {
    const pending = new PendingAnswers<string>();
    const onTimeout = vi.fn(() => 'late');
    const answer = track(pending.wait('a', 1000, onTimeout));
    const other = track(pending.wait('b', 1000, () => 'late'));
    expect(pending.size).toBe(2);
    expect(pending.settle('a', 'yes')).toBe(true);
    expect(pending.settle('a', 'again')).toBe(false);
    expect(pending.settle('unknown', 'no')).toBe(false);
    await vi.advanceTimersByTimeAsync(0);
    expect(answer).toEqual({ outcome: 'resolved', value: 'yes' });
    expect(other.outcome).toBe('pending');
    expect(pending.size).toBe(1);
    // Its timer was cleared: the timeout never fires for it.
    await vi.advanceTimersByTimeAsync(2000);
    expect(onTimeout).not.toHaveBeenCalled();
    expect(answer.value).toBe('yes');
    expect(other).toEqual({ outcome: 'resolved', value: 'late' });
  });

  it("answers with onTimeout's value past the timeout, not before, and ignores a late answer", async () => {
    const pending = new PendingAnswers<string>();
    const answer = track(pending.wait('a', 1000, () => 'unavailable'));
    await vi.advanceTimersByTimeAsync(999);
    expect(answer.outcome).toBe('pending');
    expect(pending.size).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(answer).toEqual({ outcome: 'resolved', value: 'unavailable' });
    expect(pending.size).toBe(0);
    expect(pending.settle('a', 'late')).toBe(false);
    await vi.advanceTimersByTimeAsync(0);
    expect(answer.value).toBe('unavailable');
  });

  it('rejects with what onTimeout throws', async () => {
    const pending = new PendingAnswers<string>();
    const refusal = new Error('did not answer');
    const answer = track(
      pending.wait('a', 500, () => {
        throw refusal;
      }),
    );
    await vi.advanceTimersByTimeAsync(499);
    expect(answer.outcome).toBe('pending');
    await vi.advanceTimersByTimeAsync(1);
    expect(answer).toEqual({ outcome: 'rejected', error: refusal });
    expect(pending.settle('a', 'late')).toBe(false);
  });

  it('a cancelled request never settles and takes no answer', async () => {
    const pending = new PendingAnswers<string>();
    const onTimeout = vi.fn(() => 'late');
    const answer = track(pending.wait('a', 1000, onTimeout));
    pending.cancel('a');
    pending.cancel('unknown');
    expect(pending.size).toBe(0);
    expect(pending.settle('a', 'yes')).toBe(false);
    await vi.advanceTimersByTimeAsync(5000);
    expect(answer.outcome).toBe('pending');
    expect(onTimeout).not.toHaveBeenCalled();
  });

  it('closeAll answers every waiting request with its own answer and clears their timers', async () => {
    const pending = new PendingAnswers<string>();
    const onTimeout = vi.fn(() => 'late');
    const a = track(pending.wait('a', 1000, onTimeout));
    const b = track(pending.wait('b', 3000, onTimeout));
    const settled = track(pending.wait('c', 1000, onTimeout));
    pending.settle('c', 'answered');
    pending.closeAll((id) => `closed ${id}`);
    expect(pending.size).toBe(0);
    await vi.advanceTimersByTimeAsync(0);
    expect(a).toEqual({ outcome: 'resolved', value: 'closed a' });
    expect(b).toEqual({ outcome: 'resolved', value: 'closed b' });
    expect(settled.value).toBe('answered');
    expect(pending.settle('a', 'late')).toBe(false);
    await vi.advanceTimersByTimeAsync(5000);
    expect(onTimeout).not.toHaveBeenCalled();
    expect(a.value).toBe('closed a');
  });
});
