import { createMsgpackParser } from '@tessera/protocol';
import { io, type Socket } from 'socket.io-client';
import { afterEach, describe, expect, it } from 'vitest';
import { applyClientsDelta, type ClientsDelta } from '../apps/console/src/clients-delta.js';
import type { LiveClient } from '../apps/console/src/live.js';
import { createFederation, type Harness, quickRun, startHarness, waitFor } from './harness.js';

/**
 * The console's live client list over a raw `/admin` socket, against a coordinator on port 0
 * and real client processes: one snapshot, then deltas by client id that the console's own
 * `applyClientsDelta` turns into the coordinator's list.
 */

let harness: Harness | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.disconnect();
  await harness?.dispose();
  harness = undefined;
});

interface Watcher {
  clients: () => LiveClient[];
  frames: ClientsDelta<LiveClient>[];
  fullLists: number;
  openRoundFrames: number;
}

async function watch(url: string): Promise<Watcher> {
  const socket = io(`${url}/admin`, {
    parser: createMsgpackParser(),
    transports: ['websocket'],
    reconnection: false,
  });
  sockets.push(socket);
  let clients: LiveClient[] = [];
  const watcher: Watcher = { clients: () => clients, frames: [], fullLists: 0, openRoundFrames: 0 };
  socket.on('clients', () => watcher.fullLists++); // the old whole-list event: must not come
  socket.on('round-progress', () => watcher.openRoundFrames++);
  socket.on('clients-delta', (delta: ClientsDelta<LiveClient>) => {
    watcher.frames.push(delta);
    clients = applyClientsDelta(clients, delta);
  });
  await new Promise<void>((resolve, reject) => {
    socket.on('snapshot', (snapshot: { clients: LiveClient[] }) => {
      clients = snapshot.clients;
      resolve();
    });
    socket.on('connect_error', reject);
  });
  return watcher;
}

const ids = (clients: readonly { clientId: string }[]) => clients.map((c) => c.clientId).sort();

describe('the /admin client list', () => {
  it('comes whole once, then as deltas that follow joins, tasks and leaves', async () => {
    const h = await startHarness();
    harness = h;
    const { federationId, tokens } = await createFederation(h, 3);
    const first = await watch(h.coordinator.url);
    expect(first.clients()).toEqual([]);

    const children = tokens.map((t, k) =>
      h.spawnClient(t.token, ['--mnist', `${k}/3`, '--max-examples', '200']),
    );
    await waitFor(() => h.coordinator.registry.list().length === 3, 'three clients to connect');
    await waitFor(() => first.clients().length === 3, 'three clients in the live list');
    expect(first.frames.flatMap((f) => f.added).length).toBeGreaterThanOrEqual(3);
    const row = first.clients()[0];
    expect(row).not.toHaveProperty('connectionId');
    expect(typeof row?.connectedAt).toBe('string');

    // A console that subscribes now gets the same list in its snapshot.
    const second = await watch(h.coordinator.url);
    expect(ids(second.clients())).toEqual(ids(first.clients()));

    // A round: each client's task (and progress) reaches both consoles as changed rows.
    const run = await h.api<{ id: string }>('POST', '/runs', {
      ...quickRun,
      rounds: 1,
      federationId,
    });
    const committed = new Promise((resolve) => h.coordinator.once('round-committed', resolve));
    await h.api('POST', `/runs/${run.body.id}/start`);
    await committed;
    for (const watcher of [first, second]) {
      expect(watcher.frames.some((f) => f.changed.some((c) => c.task?.runId === run.body.id))).toBe(
        true,
      );
    }

    // Leaves come as removed ids.
    const leaving = tokens[0]?.client.id as string;
    children[0]?.kill('SIGKILL');
    await waitFor(
      () => first.clients().length === 2 && second.clients().length === 2,
      'the killed client leaves both lists',
    );
    expect(first.frames.some((f) => f.removed.includes(leaving))).toBe(true);

    // Both lists end as the coordinator's, and no whole-list frame was ever sent.
    const registry = ids(h.coordinator.registry.list());
    await waitFor(
      () =>
        JSON.stringify(ids(first.clients())) === JSON.stringify(registry) &&
        JSON.stringify(ids(second.clients())) === JSON.stringify(registry),
      'both consoles in step with the registry',
    );
    const tasks = (clients: LiveClient[]) =>
      clients.map((c) => [c.clientId, c.task]).sort() as unknown[];
    await waitFor(
      () =>
        JSON.stringify(tasks(first.clients())) ===
        JSON.stringify(tasks(h.coordinator.registry.list() as unknown as LiveClient[])),
      'tasks in step',
    );
    expect(first.fullLists + second.fullLists).toBe(0);
  }, 120_000);
});
