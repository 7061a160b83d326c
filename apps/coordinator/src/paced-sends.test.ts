import { describe, expect, it } from 'vitest';
import { createPacedSender } from './paced-sends.js';

/** Holds the thread for `ms`, as a large frame's write to one connection does. */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {}
}

const connections = (n: number) => Array.from({ length: n }, (_, k) => `c${k}`);

describe('paced sends', () => {
  it('gives the event loop back between slices while a slow frame goes to many connections', async () => {
    const paced = createPacedSender({ sliceMs: 8 });
    // For each send, how many turns of the loop had passed: sends between two turns are one
    // stretch that held the loop.
    let turns = 0;
    const turnOfSend: number[] = [];
    // The counting turn is queued first, so it runs before each of the sender's slices.
    const done = new Promise<void>((resolve) => {
      const tick = () => {
        turns += 1;
        if (paced.pending > 0) setImmediate(tick);
        else resolve();
      };
      setImmediate(tick);
    });
    paced.send(connections(60), (chunk) => {
      for (const _ of chunk) {
        busy(1);
        turnOfSend.push(turns);
      }
    });
    await done;
    expect(turnOfSend).toHaveLength(60);
    const perTurn = new Map<number, number>();
    for (const turn of turnOfSend) perTurn.set(turn, (perTurn.get(turn) ?? 0) + 1);
    // Each send takes at least 1 ms, so a slice of 8 ms holds at most 9 (the last one started
    // before the slice ended); a machine under load makes chunks smaller, never larger.
    expect(Math.max(...perTurn.values())).toBeLessThanOrEqual(9);
    expect(perTurn.size).toBeGreaterThanOrEqual(7);
  });

  it('sends each frame once to each connection, frames in the order given', async () => {
    const paced = createPacedSender({ sliceMs: 2 });
    const received = new Map<string, string[]>();
    const frame = (name: string, cost: number) => (chunk: string[]) => {
      for (const connection of chunk) {
        busy(cost);
        received.set(connection, [...(received.get(connection) ?? []), name]);
      }
    };
    paced.send(connections(40), frame('train', 0.2));
    paced.send(connections(40).slice(10), frame('round-closed', 0));
    paced.send(connections(5), frame('evaluate', 0.1));
    while (paced.pending > 0) await new Promise((resolve) => setImmediate(resolve));
    expect(received.get('c0')).toEqual(['train', 'evaluate']);
    expect(received.get('c12')).toEqual(['train', 'round-closed']);
    expect(received.get('c3')).toEqual(['train', 'evaluate']);
    expect([...received.values()].flat()).toHaveLength(40 + 30 + 5);
  });

  it('a send that throws is reported and the frame goes on to the other chunks', async () => {
    const errors: unknown[] = [];
    const paced = createPacedSender({ onError: (error) => errors.push(error) });
    const got: string[] = [];
    paced.send(connections(3), (chunk) => {
      if (chunk.includes('c0')) throw new Error('socket gone');
      got.push(...chunk);
    });
    while (paced.pending > 0) await new Promise((resolve) => setImmediate(resolve));
    expect(errors).toHaveLength(1);
    expect(got).toEqual(['c1', 'c2']);
  });
});
