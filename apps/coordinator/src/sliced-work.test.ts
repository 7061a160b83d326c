import { describe, expect, it } from 'vitest';
import { createSlicedWork } from './sliced-work.js';

function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {}
}

const settled = async (work: { queued: number }) => {
  while (work.queued > 0) await new Promise((resolve) => setImmediate(resolve));
};

describe('sliced work', () => {
  it('takes work queued by a running item: it runs in order, and the drain it scheduled finds nothing and ends', async () => {
    const errors: unknown[] = [];
    const work = createSlicedWork({ sliceMs: 8, onError: (error) => errors.push(error) });
    const ran: string[] = [];
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    try {
      work.run(() => {
        ran.push('first');
        // Queued from inside a drain: this slice runs it, and the drain it scheduled is empty.
        work.run(() => ran.push('second'), 10);
      }, 10);
      await settled(work);
      // Two more turns: the drain scheduled from inside the first item has run by then.
      for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('uncaughtException', onUncaught);
    }
    expect(ran).toEqual(['first', 'second']);
    expect(errors).toEqual([]);
    expect(uncaught).toEqual([]);
    expect(work.queued).toBe(0);
  });

  it('runs queued work in order, giving the loop back between slices', async () => {
    const work = createSlicedWork({ sliceMs: 8 });
    let turns = 0;
    const done = new Promise<void>((resolve) => {
      const tick = () => {
        turns += 1;
        if (work.queued > 0) setImmediate(tick);
        else resolve();
      };
      setImmediate(tick);
    });
    const ran: Array<{ item: number; turn: number }> = [];
    for (let item = 0; item < 60; item++) {
      work.run(() => {
        busy(1);
        ran.push({ item, turn: turns });
      }, 1000);
    }
    // Nothing runs inside the callback that handed the work over.
    expect(ran).toHaveLength(0);
    await done;
    expect(ran.map((r) => r.item)).toEqual(Array.from({ length: 60 }, (_, k) => k));
    const perTurn = new Map<number, number>();
    for (const { turn } of ran) perTurn.set(turn, (perTurn.get(turn) ?? 0) + 1);
    // 1 ms each: a slice of 8 ms runs at most 9 (the last started before it ended).
    expect(Math.max(...perTurn.values())).toBeLessThanOrEqual(9);
  });

  it('past the byte bound asks the edge to stop reading, never runs work inline, and lets it read again at half the bound', async () => {
    const pressure: boolean[] = [];
    const work = createSlicedWork({
      maxQueuedBytes: 2500,
      sliceMs: 0,
      onPressure: (pressured) => pressure.push(pressured),
    });
    const ran: number[] = [];
    work.run(() => ran.push(0), 1000);
    work.run(() => ran.push(1), 1000);
    expect(pressure).toEqual([]);
    work.run(() => ran.push(2), 1000);
    work.run(() => ran.push(3), 1000);
    // Nothing ran in the callers; the edge was asked once to stop reading.
    expect(ran).toEqual([]);
    expect(pressure).toEqual([true]);
    expect(work.pressured).toBe(true);
    // A slice of 0 ms runs one item a turn: 3,000 bytes left, then 2,000, then 1,000.
    await new Promise((resolve) => setImmediate(resolve));
    expect(ran).toEqual([0]);
    expect(pressure).toEqual([true]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(ran).toEqual([0, 1]);
    // 2,000 bytes still exceed half the bound (1,250): still pressured.
    expect(pressure).toEqual([true]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(ran).toEqual([0, 1, 2]);
    expect(pressure).toEqual([true, false]);
    expect(work.pressured).toBe(false);
    await settled(work);
    expect(ran).toEqual([0, 1, 2, 3]);
  });

  it('a throwing pressure callback is reported and the work still runs', async () => {
    const errors: unknown[] = [];
    const work = createSlicedWork({
      maxQueuedBytes: 10,
      onPressure: () => {
        throw new Error('edge gone');
      },
      onError: (error) => errors.push(error),
    });
    const ran: number[] = [];
    work.run(() => ran.push(0), 100);
    await settled(work);
    expect(ran).toEqual([0]);
    expect(errors).toHaveLength(2);
  });

  it('work that throws is reported and the rest still runs', async () => {
    const errors: unknown[] = [];
    const work = createSlicedWork({ onError: (error) => errors.push(error) });
    const ran: number[] = [];
    work.run(() => {
      throw new Error('bad frame');
    }, 0);
    work.run(() => ran.push(1), 0);
    await settled(work);
    expect(errors).toHaveLength(1);
    expect(ran).toEqual([1]);
  });
});
