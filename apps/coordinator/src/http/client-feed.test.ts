import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type ClientRegistry, type ClientSession, LocalClientRegistry } from '../registry.js';
import { type ClientRow, type ClientsDelta, LiveClientList } from './client-feed.js';

const INTERVAL_MS = 250;

function session(k: number): ClientSession {
  return {
    clientId: `client-${k}`,
    federationId: 'federation',
    organisation: `org-${k}`,
    connectionId: `socket-${k}`,
    info: { name: 'test', version: '0', runtime: 'node', backend: 'cpu', numExamples: 10 },
    connectedAt: new Date(0),
    lastSeenAt: new Date(0),
    task: null,
    progress: null,
  };
}

/** Rebuilds the list from a snapshot and deltas, as the console does (upserts by id). */
function apply(rows: ClientRow[], delta: ClientsDelta): ClientRow[] {
  const byId = new Map(rows.map((row) => [row.clientId, row]));
  for (const id of delta.removed) byId.delete(id);
  for (const row of [...delta.added, ...delta.changed]) byId.set(row.clientId, row);
  return [...byId.values()];
}

describe('the live client list', () => {
  let registry: ClientRegistry;
  let listeners: number;
  let frames: ClientsDelta[];
  let feed: LiveClientList;

  beforeEach(() => {
    vi.useFakeTimers();
    registry = new LocalClientRegistry();
    listeners = 0;
    frames = [];
    feed = new LiveClientList({
      registry,
      intervalMs: INTERVAL_MS,
      listeners: () => listeners,
      send: (delta) => frames.push(delta),
    });
  });
  afterEach(() => {
    feed.close();
    vi.useRealTimers();
  });

  it('builds nothing and sends nothing for 1,000 changes while no console listens', () => {
    for (let k = 0; k < 1000; k++) registry.add(session(k));
    for (let k = 0; k < 1000; k++) registry.release(`client-${k}`, 'run'); // no task: no event
    for (let k = 0; k < 500; k++) registry.remove(`client-${k}`, `socket-${k}`);
    vi.advanceTimersByTime(10 * INTERVAL_MS);
    expect(feed.builds).toBe(0);
    expect(frames).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('sends 1,000 changes with one console as a bounded number of deltas that add up to the list', () => {
    for (let k = 0; k < 100; k++) registry.add(session(k));
    listeners = 1;
    const { rows, delta } = feed.subscribe(false);
    expect(delta).toBeNull();
    expect(rows.map((row) => row.clientId)).toEqual(registry.list().map((s) => s.clientId));
    expect(rows[0]).not.toHaveProperty('connectionId');
    expect(rows[0]?.connectedAt).toBe(new Date(0).toISOString());

    // 1,000 changes, one a millisecond: 900 joins, then 100 leaves.
    for (let k = 100; k < 1000; k++) {
      registry.add(session(k));
      vi.advanceTimersByTime(1);
    }
    for (let k = 0; k < 100; k++) {
      registry.remove(`client-${k}`, `socket-${k}`);
      vi.advanceTimersByTime(1);
    }
    vi.advanceTimersByTime(INTERVAL_MS);
    // At most one frame per interval (plus the last one): not one per change.
    expect(frames.length).toBeGreaterThan(0);
    expect(frames.length).toBeLessThanOrEqual(Math.ceil(1000 / INTERVAL_MS) + 1);
    expect(feed.builds).toBe(1 + frames.length);
    const rebuilt = frames.reduce(apply, rows);
    expect(rebuilt.map((row) => row.clientId).sort()).toEqual(
      registry
        .list()
        .map((s) => s.clientId)
        .sort(),
    );
    expect(frames.flatMap((f) => f.removed)).toHaveLength(100);
  });

  it('sends a change that emits no registry event (progress) once, as a changed row', () => {
    registry.add(session(1));
    registry.add(session(2));
    listeners = 1;
    const { rows } = feed.subscribe(false);
    const client = registry.get('client-1');
    if (!client) throw new Error('client-1 missing');
    client.progress = { epoch: 1, epochs: 2, batch: 3, batches: 4, loss: 0.5 };
    feed.changed();
    feed.changed();
    vi.advanceTimersByTime(INTERVAL_MS);
    expect(frames).toHaveLength(1);
    expect(frames[0]?.added).toEqual([]);
    expect(frames[0]?.removed).toEqual([]);
    expect(frames[0]?.changed.map((row) => row.clientId)).toEqual(['client-1']);
    expect(frames[0]?.changed[0]?.progress?.loss).toBe(0.5);
    // Nothing changed since: the next look sends nothing.
    feed.changed();
    vi.advanceTimersByTime(INTERVAL_MS);
    expect(frames).toHaveLength(1);
    expect(apply(rows, frames[0] as ClientsDelta)[0]?.progress?.epoch).toBe(1);
  });

  it('brings the consoles already listening up to date before a new one gets its snapshot', () => {
    registry.add(session(1));
    listeners = 1;
    const first = feed.subscribe(false);
    registry.add(session(2)); // pending: not flushed yet
    listeners = 2;
    const second = feed.subscribe(true);
    expect(second.rows.map((row) => row.clientId)).toEqual(['client-1', 'client-2']);
    expect(second.delta?.added.map((row) => row.clientId)).toEqual(['client-2']);
    expect(apply(first.rows, second.delta as ClientsDelta)).toEqual(second.rows);
    vi.advanceTimersByTime(10 * INTERVAL_MS);
    expect(frames).toEqual([]);
  });

  it('forgets its baseline when the last console leaves', () => {
    registry.add(session(1));
    listeners = 1;
    feed.subscribe(false);
    registry.add(session(2));
    listeners = 0;
    vi.advanceTimersByTime(INTERVAL_MS);
    expect(frames).toEqual([]);
    listeners = 1;
    const again = feed.subscribe(false);
    expect(again.rows.map((row) => row.clientId)).toEqual(['client-1', 'client-2']);
  });
});
