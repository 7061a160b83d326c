import {
  ErrorCode,
  PROTOCOL_VERSION,
  type TrainInstruction,
  type WireError,
  weightsToBytes,
} from '@tessera/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { createFederation, type Harness, quickRun, startHarness, waitFor } from './harness.js';
import {
  ackCode,
  type ClientSocket,
  closeRawSockets,
  connectRaw as connect,
  rawClientInfo,
  sendWithAck,
} from './raw-client.js';

let harness: Harness | undefined;
afterEach(async () => {
  closeRawSockets();
  await harness?.dispose();
  harness = undefined;
});

const send = (socket: ClientSocket, event: 'update' | 'evaluation', frame: unknown) =>
  sendWithAck(socket, event, frame, 10_000);

const codeOf = ackCode;
const client = rawClientInfo();

describe('bad input from clients', () => {
  it('refuses bad handshakes with a code and a log line', async () => {
    harness = await startHarness();
    const h = harness;
    const { tokens } = await createFederation(h, 2);
    await h.api('POST', `/clients/${tokens[1]?.client.id}/revoke`);

    const cases: Array<[string, Record<string, unknown>, string]> = [
      [
        'a wrong token',
        { token: 'tsr_wrong', protocolVersion: PROTOCOL_VERSION, client },
        ErrorCode.UNAUTHORIZED,
      ],
      [
        'a revoked token',
        { token: tokens[1]?.token, protocolVersion: PROTOCOL_VERSION, client },
        ErrorCode.UNAUTHORIZED,
      ],
      [
        'another protocol version',
        { token: tokens[0]?.token, protocolVersion: PROTOCOL_VERSION + 1, client },
        ErrorCode.PROTOCOL_VERSION_MISMATCH,
      ],
      ['no token at all', { protocolVersion: PROTOCOL_VERSION, client }, ErrorCode.MALFORMED_FRAME],
    ];
    for (const [what, auth, code] of cases) {
      const outcome = await connect(h.coordinator.url, auth);
      expect(outcome.error?.code, what).toBe(code);
      expect(outcome.socket.connected, what).toBe(false);
    }
    expect(h.coordinator.registry.list()).toHaveLength(0);
    expect(h.logs.filter((l) => l.includes('connection refused'))).toHaveLength(4);
    // The good token still works afterwards.
    expect(
      (
        await connect(h.coordinator.url, {
          token: tokens[0]?.token,
          protocolVersion: PROTOCOL_VERSION,
          client,
        })
      ).error,
    ).toBeUndefined();
  });

  it('refuses bad frames during a round; nothing of them is kept and the run completes', async () => {
    harness = await startHarness({ maxFrameBytes: 1_000_000 });
    const h = harness;
    const { federationId, tokens } = await createFederation(h, 2);
    const outsiderFederation = await createFederation(h, 1);
    const honestId = tokens[0]?.client.id as string;
    const rogueId = tokens[1]?.client.id as string;
    // The honest client trains for several seconds a round on the plain JavaScript backend, so
    // the rogue's frames below reach an open round (the round closes as soon as every selected
    // client has answered; on the native loop the honest client would answer in a fraction of a
    // second, before the rogue's duplicate below).
    h.spawnClient(tokens[0]?.token as string, [
      '--mnist',
      '0/2',
      '--max-examples',
      '2000',
      '--backend',
      'cpu',
    ]);

    const { socket: rogue } = await connect(h.coordinator.url, {
      token: tokens[1]?.token,
      protocolVersion: PROTOCOL_VERSION,
      client,
    });
    const { socket: outsider } = await connect(h.coordinator.url, {
      token: outsiderFederation.tokens[0]?.token,
      protocolVersion: PROTOCOL_VERSION,
      client,
    });
    const instructions: TrainInstruction[] = [];
    rogue.on('train', (instruction) => instructions.push(instruction));
    // The rogue declines evaluation so that rounds do not wait for it.
    rogue.on(
      'evaluate',
      ({ runId, round }) =>
        void send(rogue, 'evaluation', {
          status: 'failed',
          runId,
          round,
          error: { message: 'no data' },
        }),
    );
    const rejected: WireError[] = [];
    rogue.on('rejected', (error) => rejected.push(error));
    await waitFor(() => h.coordinator.registry.list().length === 3, 'all clients to connect');

    const run = await h.api<{ id: string }>('POST', '/runs', {
      ...quickRun,
      rounds: 2,
      localEpochs: 1,
      federationId,
      clientsPerRound: 2,
      roundDeadlineMs: 30_000,
    });
    const finished = new Promise((resolve) => h.coordinator.on('run-finished', resolve));
    await h.api('POST', `/runs/${run.body.id}/start`);

    const first = await waitFor(() => instructions[0], 'round 1 to reach the rogue');
    const { runId, round, model } = first;
    const good = {
      status: 'ok',
      runId,
      round,
      numExamples: 10,
      durationMs: 5,
      metrics: { loss: 1 },
    };
    const zeros = new Float32Array(model.paramCount);
    const nan = new Float32Array(model.paramCount);
    nan[1234] = Number.NaN;

    expect(codeOf(await send(rogue, 'update', { ...good, weights: [1, 2, 3] }))).toBe(
      ErrorCode.MALFORMED_FRAME,
    );
    expect(codeOf(await send(rogue, 'update', 'not even an object'))).toBe(
      ErrorCode.MALFORMED_FRAME,
    );
    expect(
      codeOf(
        await send(rogue, 'update', {
          ...good,
          runId: 'another-run',
          weights: weightsToBytes(zeros),
        }),
      ),
    ).toBe(ErrorCode.WRONG_RUN);
    expect(
      codeOf(await send(rogue, 'update', { ...good, round: 7, weights: weightsToBytes(zeros) })),
    ).toBe(ErrorCode.WRONG_ROUND);
    expect(
      codeOf(await send(outsider, 'update', { ...good, weights: weightsToBytes(zeros) })),
    ).toBe(ErrorCode.NOT_SELECTED);
    expect(
      codeOf(await send(rogue, 'update', { ...good, weights: new Uint8Array(1_200_000) })),
    ).toBe(ErrorCode.PAYLOAD_TOO_LARGE);
    // Bytes that are not MessagePack at all, straight onto the WebSocket.
    rogue.io.engine.write(new Uint8Array([0xc1, 0xc1, 0xc1]) as unknown as string);
    await waitFor(() => rejected.length > 0, 'the garbage frame to be refused');
    expect(rejected[0]?.code).toBe(ErrorCode.MALFORMED_FRAME);
    // Until now the rogue is still in the round; a NaN update takes it out, and it cannot retry.
    expect(codeOf(await send(rogue, 'update', { ...good, weights: weightsToBytes(nan) }))).toBe(
      ErrorCode.NON_FINITE_WEIGHTS,
    );
    expect(codeOf(await send(rogue, 'update', { ...good, weights: weightsToBytes(zeros) }))).toBe(
      ErrorCode.DUPLICATE_UPDATE,
    );
    expect(h.coordinator.registry.get(honestId)?.task).toMatchObject({ round: 1, phase: 'train' });

    const second = await waitFor(() => instructions[1], 'round 2 to reach the rogue');
    const short = {
      ...good,
      round: second.round,
      weights: weightsToBytes(new Float32Array(model.paramCount - 1)),
    };
    expect(codeOf(await send(rogue, 'update', short))).toBe(ErrorCode.WEIGHTS_LENGTH_MISMATCH);

    expect(await finished).toMatchObject({ status: 'completed' });
    const rounds = await h.db.rounds.list(runId);
    expect(rounds.map((r) => r.participantClientIds)).toEqual([[honestId], [honestId]]);
    for (const r of rounds) {
      expect(r.selectedClientIds.slice().sort()).toEqual([honestId, rogueId].sort());
      expect(r.metrics['rejected']).toBe(1);
      // Only the honest client's 1,800 training examples count in m_t.
      expect(r.numExamples).toBe(1800);
      expect((await h.db.rounds.updates(runId, r.number)).map((u) => u.clientId)).toEqual([
        honestId,
      ]);
    }
    const refused = h.logs.filter((line) => line.includes('frame refused'));
    for (const code of Object.values(ErrorCode).filter(
      (c) =>
        ![
          'UNAUTHORIZED',
          'PROTOCOL_VERSION_MISMATCH',
          'INVALID_ARGUMENT',
          'NOT_FOUND',
          'CONFLICT',
          'UNAVAILABLE',
          'INTERNAL',
          // REST-only codes of the console API (issue 4)
          'FORBIDDEN',
          'RATE_LIMITED',
          'UNSUPPORTED_MEDIA_TYPE',
          // @tessera/secagg's codes (issue 14): not on the socket until SecAgg is wired in
          'SECAGG_THRESHOLD_NOT_MET',
          'SECAGG_DECRYPTION_FAILED',
          'SECAGG_KEY_INVALID',
          // Local DP's norm check: only in runs with localDp (test/local-dp-run.test.ts)
          'LOCAL_DP_NORM_OUT_OF_RANGE',
        ].includes(c),
    )) {
      expect(
        refused.some((line) => line.includes(`"code":"${code}"`)),
        code,
      ).toBe(true);
    }
    expect((await fetch(`${h.coordinator.url}/healthz`)).status).toBe(200);
  }, 240_000); // the honest client trains on the plain JavaScript backend: slow on a loaded machine
});
