import type { RoundRecord } from '@tessera/db';
import {
  type Ack,
  type ClientToServerEvents,
  createMsgpackParser,
  PROTOCOL_VERSION,
  type ServerToClientEvents,
  weightsToBytes,
} from '@tessera/protocol';
import { io, type Socket } from 'socket.io-client';
import { afterEach, describe, expect, it } from 'vitest';
import { createFederation, type Harness, quickRun, startHarness, waitFor } from './harness.js';

/**
 * Each selected client's outcome in a round, with its reason, over REST: a real Node client
 * that trains, and two clients written from docs/protocol.md, one that reports it cannot
 * train and one whose update the coordinator refuses.
 */

type ClientSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

let harness: Harness | undefined;
const sockets: ClientSocket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.disconnect();
  await harness?.dispose();
  harness = undefined;
});

const announce = {
  name: 'protocol-client',
  version: '0',
  runtime: 'other',
  backend: 'none',
  numExamples: 10,
} as const;

async function connect(url: string, token: string): Promise<ClientSocket> {
  const socket: ClientSocket = io(url, {
    parser: createMsgpackParser(),
    auth: { token, protocolVersion: PROTOCOL_VERSION, client: announce },
    transports: ['websocket'],
    reconnection: false,
  });
  sockets.push(socket);
  await new Promise<void>((resolve, reject) => {
    socket.on('welcome', () => resolve());
    socket.on('connect_error', reject);
  });
  // Neither holds evaluation data: evaluation does not wait for them.
  socket.on('evaluate', ({ runId, round }) => {
    void socket.emitWithAck('evaluation', {
      status: 'failed',
      runId,
      round,
      error: { message: 'no held-out data' },
    });
  });
  return socket;
}

const REASON = 'the CSV has 30 features per row; fedavg-2nn expects 784';

describe("a round's client outcomes", () => {
  it('are returned by the rounds routes and exported: failed with its message and code, rejected with the refusal code', async () => {
    harness = await startHarness();
    const h = harness;
    const { federationId, tokens } = await createFederation(h, 3);
    const [honest, failing, rejected] = tokens.map((t) => t.client.id) as [string, string, string];
    h.spawnClient(tokens[0]?.token as string, ['--mnist', '0/2', '--max-examples', '400']);

    const failer = await connect(h.coordinator.url, tokens[1]?.token as string);
    const acks: Record<string, Ack> = {};
    failer.on('train', async ({ runId, round }) => {
      acks['failed'] = (await failer.emitWithAck('update', {
        status: 'failed',
        runId,
        round,
        error: { message: REASON, code: 'DATA_SHAPE_MISMATCH' },
      })) as Ack;
    });
    const nan = await connect(h.coordinator.url, tokens[2]?.token as string);
    nan.on('train', async ({ runId, round, model }) => {
      const weights = new Float32Array(model.paramCount);
      weights[0] = Number.NaN;
      acks['nan'] = (await nan.emitWithAck('update', {
        status: 'ok',
        runId,
        round,
        weights: weightsToBytes(weights),
        numExamples: 10,
        durationMs: 1,
        metrics: {},
      })) as Ack;
    });
    await waitFor(() => h.coordinator.registry.list().length === 3, 'three clients to connect');

    const run = await h.api<{ id: string }>('POST', '/runs', {
      ...quickRun,
      federationId,
      rounds: 1,
    });
    expect(run.status).toBe(201);
    const finished = new Promise((resolve) => h.coordinator.on('run-finished', resolve));
    expect((await h.api('POST', `/runs/${run.body.id}/start`)).status).toBe(202);
    expect(await finished).toMatchObject({ status: 'completed' });
    expect(acks['failed']).toEqual({ ok: true });
    expect(acks['nan']).toMatchObject({ ok: false, error: { code: 'NON_FINITE_WEIGHTS' } });

    const rounds = await h.api<RoundRecord[]>('GET', `/runs/${run.body.id}/rounds`);
    expect(rounds.status).toBe(200);
    const outcomes = rounds.body[0]?.outcomes ?? [];
    const byClient = new Map(outcomes.map((entry) => [entry.clientId, entry]));
    expect(outcomes).toHaveLength(3);
    expect(byClient.get(honest)).toEqual({
      clientId: honest,
      outcome: 'updated',
      code: null,
      reason: null,
    });
    expect(byClient.get(failing)).toEqual({
      clientId: failing,
      outcome: 'failed',
      code: 'DATA_SHAPE_MISMATCH',
      reason: REASON,
    });
    expect(byClient.get(rejected)).toMatchObject({
      outcome: 'rejected',
      code: 'NON_FINITE_WEIGHTS',
      reason: expect.stringMatching(/finite/i),
    });

    // The round page's route carries the same record.
    const detail = await h.api<{ round: RoundRecord }>('GET', `/runs/${run.body.id}/rounds/1`);
    expect(detail.body.round.outcomes).toEqual(outcomes);

    // Exported as JSON text, in CSV and JSON Lines alike.
    const jsonl = await fetch(
      `${h.coordinator.url}/api/runs/${run.body.id}/export/rounds?format=jsonl`,
    );
    const row = JSON.parse((await jsonl.text()).trim()) as { client_outcomes: string };
    expect(JSON.parse(row.client_outcomes)).toEqual(outcomes);
    const csv = await (
      await fetch(`${h.coordinator.url}/api/runs/${run.body.id}/export/rounds?format=csv`)
    ).text();
    expect(csv.split('\n')[0]?.split(',').at(-1)).toBe('client_outcomes');
    expect(csv).toContain(REASON);
  });
});
