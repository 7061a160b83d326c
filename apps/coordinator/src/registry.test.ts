import { describe, expect, it } from 'vitest';
import { LocalClientRegistry } from './registry.js';
import { testSession as session } from './testing/sessions.js';

describe('ClientRegistry timeout back-off', () => {
  const clock = { now: 0 };
  const make = () => {
    clock.now = 0;
    const registry = new LocalClientRegistry({
      timeoutBackoff: { baseMs: 1000, maxMs: 5000 },
      now: () => clock.now,
    });
    registry.add(session('a'));
    registry.add(session('b'));
    return registry;
  };

  it('leaves a timed-out client out for baseMs, doubling per timeout in a row, capped at maxMs', () => {
    const registry = make();
    const delays: number[] = [];
    for (let k = 0; k < 5; k++) {
      registry.timedOut('a');
      expect(registry.eligible('fed')).toEqual(['b']);
      // Still idle: it is not in any round, only not sampled.
      expect(registry.idle('fed')).toEqual(['a', 'b']);
      const until = registry.backoffUntil('a') as number;
      delays.push(until - clock.now);
      clock.now = until - 1;
      expect(registry.eligible('fed')).toEqual(['b']);
      clock.now = until;
      expect(registry.eligible('fed')).toEqual(['a', 'b']);
      expect(registry.backoffUntil('a')).toBeNull();
    }
    expect(delays).toEqual([1000, 2000, 4000, 5000, 5000]);
  });

  it('ends the back-off at any frame from the client (touch), and starts counting again', () => {
    const registry = make();
    registry.timedOut('a');
    registry.timedOut('a');
    let changes = 0;
    registry.on('change', () => changes++);
    registry.touch('a');
    expect(changes).toBe(1);
    expect(registry.eligible('fed')).toEqual(['a', 'b']);
    registry.timedOut('a');
    expect(registry.backoffUntil('a')).toBe(1000);
  });

  it('keeps the back-off across a reconnect (it is the client that is silent, not the socket)', () => {
    const registry = make();
    registry.timedOut('a');
    registry.remove('a', 'conn-a');
    registry.add(session('a', 'conn-a2'));
    expect(registry.eligible('fed')).toEqual(['b']);
  });
});

describe('ClientRegistry.revoke', () => {
  it('removes the session at once and announces it as disconnected; the socket close that follows is a no-op', () => {
    const registry = new LocalClientRegistry();
    registry.add(session('a'));
    const gone: string[] = [];
    registry.on('disconnected', (s) => gone.push(s.clientId));
    expect(registry.revoke('a')?.connectionId).toBe('conn-a');
    expect(registry.get('a')).toBeUndefined();
    expect(gone).toEqual(['a']);
    expect(registry.remove('a', 'conn-a')).toBeUndefined();
    expect(registry.revoke('a')).toBeUndefined();
    expect(gone).toEqual(['a']);
  });
});
