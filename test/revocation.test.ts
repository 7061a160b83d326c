import {
  type Ack,
  ErrorCode,
  PROTOCOL_VERSION,
  type TrainInstruction,
  type WireError,
} from '@tessera/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { createFederation, type Harness, quickRun, startHarness, waitFor } from './harness.js';
import { closeRawSockets, connectRaw, rawClientInfo } from './raw-client.js';

let harness: Harness | undefined;
afterEach(async () => {
  closeRawSockets();
  await harness?.dispose();
  harness = undefined;
});

// numHoldout 0: neither client is asked to evaluate, so the run ends right after training.
const client = rawClientInfo({ name: 'raw', numExamples: 10, numHoldout: 0 });

const connect = (url: string, token: string) =>
  connectRaw(url, { token, protocolVersion: PROTOCOL_VERSION, client });

describe('revoking a client token', () => {
  it('closes its live connection at once and drops it from the open round; nothing of it is stored', async () => {
    harness = await startHarness();
    const h = harness;
    const { federationId, tokens } = await createFederation(h, 2);
    const [honest, revoked] = tokens as [(typeof tokens)[0], (typeof tokens)[0]];
    const { socket: honestSocket } = await connect(h.coordinator.url, honest.token);
    const { socket: revokedSocket } = await connect(h.coordinator.url, revoked.token);
    const honestTrain: TrainInstruction[] = [];
    const revokedTrain: TrainInstruction[] = [];
    honestSocket.on('train', (instruction) => honestTrain.push(instruction));
    revokedSocket.on('train', (instruction) => revokedTrain.push(instruction));
    const notices: WireError[] = [];
    revokedSocket.on('rejected', (notice) => notices.push(notice));
    let disconnectReason = '';
    revokedSocket.on('disconnect', (reason) => {
      disconnectReason = reason;
    });
    await waitFor(() => h.coordinator.registry.list().length === 2, 'both clients to connect');

    const run = await h.api<{ id: string }>('POST', '/runs', {
      ...quickRun,
      rounds: 1,
      federationId,
      roundDeadlineMs: 600_000,
    });
    const finished = new Promise((resolve) => h.coordinator.on('run-finished', resolve));
    await h.api('POST', `/runs/${run.body.id}/start`);
    const instruction = await waitFor(() => honestTrain[0], 'round 1 to start');
    await waitFor(() => revokedTrain[0], 'round 1 to reach the client to revoke');

    // Revoked while it trains for the open round.
    expect((await h.api('POST', `/clients/${revoked.client.id}/revoke`)).status).toBe(204);
    await waitFor(() => disconnectReason, 'the revoked connection to close', 20_000);
    expect(notices).toEqual([{ code: ErrorCode.UNAUTHORIZED, message: 'token revoked' }]);
    expect(disconnectReason).toBe('io server disconnect');
    expect(h.coordinator.registry.get(revoked.client.id)).toBeUndefined();
    expect(honestSocket.connected).toBe(true);

    // The round does not wait for it (600 s deadline): the honest update closes it.
    const ack = (await honestSocket.timeout(10_000).emitWithAck('update', {
      status: 'ok',
      runId: instruction.runId,
      round: instruction.round,
      weights: instruction.weights,
      numExamples: 10,
      durationMs: 1,
      metrics: { loss: 1 },
    })) as Ack;
    expect(ack).toEqual({ ok: true });
    expect(await finished).toMatchObject({ status: 'completed' });
    const [round] = await h.db.rounds.list(run.body.id);
    expect(round?.participantClientIds).toEqual([honest.client.id]);
    expect(round?.droppedClientIds).toEqual([revoked.client.id]);
    expect((await h.db.rounds.updates(run.body.id, 1)).map((u) => u.clientId)).toEqual([
      honest.client.id,
    ]);

    // And it cannot come back.
    const again = await connect(h.coordinator.url, revoked.token);
    expect(again.error?.code).toBe(ErrorCode.UNAUTHORIZED);
    expect(h.logs.some((line) => line.includes('client token revoked'))).toBe(true);
  });

  it('revoking a client that is not connected, or twice, answers 204; an unknown id 404', async () => {
    harness = await startHarness();
    const h = harness;
    const { tokens } = await createFederation(h, 1);
    const id = tokens[0]?.client.id as string;
    expect((await h.api('POST', `/clients/${id}/revoke`)).status).toBe(204);
    expect((await h.api('POST', `/clients/${id}/revoke`)).status).toBe(204);
    expect(
      (await h.api('POST', '/clients/00000000-0000-4000-8000-000000000000/revoke')).status,
    ).toBe(404);
  });
});
