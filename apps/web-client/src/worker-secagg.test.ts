import {
  type OpenSecAggSession,
  RoundFailure,
  SecAggParticipation,
  type SecAggSession,
} from '@tessera/client/core';
import {
  type Ack,
  type SecAggClientFrame,
  type SecAggServerFrame,
  TesseraError,
} from '@tessera/protocol';
import { SECAGG_PROTOCOL, SecAggServer, type SecAggSetup, supportedCurves } from '@tessera/secagg';
import { afterEach, describe, expect, it } from 'vitest';
import type { SecAggToWorker } from './messages.js';
import { secAggInWorker } from './secagg-in-worker.js';
import { openSecAggInWorker, type SecAggWorker } from './worker-secagg.js';

/**
 * A client's part of a SecAgg round, one suite for both places it computes: in this thread
 * (SecAggParticipation, the Node client's) and in the training worker (the page side,
 * worker-secagg.ts, and the worker side, secagg-in-worker.ts, over a real MessageChannel:
 * structured cloning, transfers; each client its own channel). Against @tessera/secagg's real
 * server, its steps called in the engine's order.
 */

const RUN = 'run-1';
const ROUND = 1;
const channels: MessageChannel[] = [];
afterEach(() => {
  for (const channel of channels.splice(0)) {
    channel.port1.close();
    channel.port2.close();
  }
});

/** The page's end of a channel whose other end serves secagg messages as worker.ts does. */
function workerOverChannel(): SecAggWorker {
  const channel = new MessageChannel();
  channels.push(channel);
  const serve = secAggInWorker((message) => channel.port2.postMessage(message));
  channel.port2.addEventListener('message', (event: MessageEvent<SecAggToWorker>) =>
    serve(event.data),
  );
  channel.port2.start();
  channel.port1.start();
  return channel.port1 as unknown as SecAggWorker;
}

async function setupOf(clientIds: string[], parameterCount: number): Promise<SecAggSetup> {
  const curves = await supportedCurves();
  return {
    protocol: SECAGG_PROTOCOL,
    roundId: `${RUN}/${ROUND}/1`,
    curve: curves.includes('X25519') ? 'X25519' : 'P-256',
    clientIds,
    threshold: 2,
    parameterCount,
    clipRange: 1,
    maxExamplesPerClient: 100,
  };
}

/** The coordinator's socket edge for one client: the server's step, or a refusal as an ack. */
function sendTo(server: SecAggServer, clientId: string, sent: SecAggClientFrame['step'][]) {
  return async (frame: SecAggClientFrame): Promise<Ack> => {
    sent.push(frame.step);
    try {
      if (frame.step === 'advertise') await server.receiveAdvertise(clientId, frame.message);
      else if (frame.step === 'share') await server.receiveShareKeys(clientId, frame.message);
      else if (frame.step === 'mask') await server.receiveMaskedInput(clientId, frame.message);
      else await server.receiveUnmaskResponse(clientId, frame.message);
      return { ok: true };
    } catch (error) {
      return { ok: false, error: TesseraError.from(error).toWire() };
    }
  };
}

const frameOf = (step: SecAggServerFrame['step'], message: object): SecAggServerFrame => ({
  runId: RUN,
  round: ROUND,
  step,
  message: message as Record<string, unknown>,
});

/** Where a part computes, and what its host's log gets told. */
const PLACES: [string, (logged: string[], id: string) => OpenSecAggSession][] = [
  ['in this thread', () => SecAggParticipation.create],
  [
    'in the training worker',
    (logged, id) =>
      openSecAggInWorker(workerOverChannel(), (line) => logged.push(`${id}: ${line}`)),
  ],
];

describe.each(PLACES)("a client's part of a secure-aggregation round %s", (place, openIn) => {
  it('sums the changes of the others when one cannot be masked, that one failing with the code (its ack was left pending)', async () => {
    const ids = ['a', 'b', 'c'];
    const global = Float32Array.from([0.5, -0.25, 0.125]);
    const setup = await setupOf(ids, global.length);
    const server = new SecAggServer(setup);
    const sent = new Map(ids.map((id) => [id, [] as SecAggClientFrame['step'][]]));
    const logged: string[] = [];
    const parts = await Promise.all(
      ids.map((id) =>
        openIn(logged, id)(
          RUN,
          ROUND,
          setup,
          id,
          sendTo(server, id, sent.get(id) as SecAggClientFrame['step'][]),
        ),
      ),
    );
    const [a, b, c] = parts as [SecAggSession, SecAggSession, SecAggSession];
    for (const part of parts) await part.advertise();
    const advertised = frameOf('advertised', server.closeAdvertising());
    for (const part of parts) await part.handle(advertised);
    const bundles = server.closeSharing();

    const aTrained = Float32Array.from([0.6, -0.25, 0.125]);
    a.provide(global, aTrained, 10);
    b.provide(global, Float32Array.from([0.5, 0.25, 0.125]), 30);
    // What a detached global (a zero-length array) made of the change: NaN.
    c.provide(new Float32Array(0), Float32Array.from([0.5, -0.25, 0.125]), 20);
    // The page's arrays stay its own: copies crossed to the worker.
    expect([...global]).toEqual([0.5, -0.25, 0.125]);
    expect(aTrained.length).toBe(3);
    for (const [k, part] of parts.entries()) {
      await part.handle(frameOf('shares', bundles.get(ids[k] as string) as object));
    }
    await expect(a.masked).resolves.toEqual({ ok: true });
    await expect(b.masked).resolves.toEqual({ ok: true });
    const refused = await c.masked.then(
      () => null,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(RoundFailure);
    expect(refused).toMatchObject({ code: 'NON_FINITE_WEIGHTS' });
    expect((refused as Error).message).toMatch(/the update contains NaN/);
    expect(sent.get('c')).toEqual(['advertise', 'share']);
    // The page's log says where the masking ran, for the two that masked.
    expect(logged.map((line) => line.replace(/\d+ ms/, 'N ms')).sort()).toEqual(
      place === 'in this thread'
        ? []
        : [
            'a: round 1: masked in the training worker, taken by the coordinator N ms after training',
            'b: round 1: masked in the training worker, taken by the coordinator N ms after training',
          ],
    );

    const request = server.closeMasking();
    expect(request.survivors).toEqual(['a', 'b']);
    for (const part of [a, b]) await part.handle(frameOf('unmask', request));
    expect(sent.get('a')).toEqual(['advertise', 'share', 'mask', 'unmask']);
    const result = await server.finish();
    expect(result.totalExamples).toBe(40);
    const expected = [(10 * 0.1) / 40, (30 * 0.5) / 40, 0];
    for (const [i, value] of expected.entries()) {
      expect(Math.abs((result.weights[i] as number) - value)).toBeLessThanOrEqual(
        result.maxAbsError + 1e-7,
      );
    }
  });

  it('throws a failure after masking to the host (the ack is already settled)', async () => {
    const ids = ['a', 'b'];
    const setup = await setupOf(ids, 2);
    const server = new SecAggServer(setup);
    const parts = await Promise.all(
      ids.map((id) => openIn([], id)(RUN, ROUND, setup, id, sendTo(server, id, []))),
    );
    for (const part of parts) await part.advertise();
    const advertised = frameOf('advertised', server.closeAdvertising());
    for (const part of parts) await part.handle(advertised);
    const bundles = server.closeSharing();
    for (const [k, part] of parts.entries()) {
      part.provide(new Float32Array(2), Float32Array.from([0.1, 0.2]), 5);
      await part.handle(frameOf('shares', bundles.get(ids[k] as string) as object));
      await expect(part.masked).resolves.toEqual({ ok: true });
    }
    // An unmask request naming a client outside the round cannot be answered.
    const request = server.closeMasking();
    await expect(
      parts[0]?.handle(frameOf('unmask', { ...request, survivors: ['a', 'zz'] })),
    ).rejects.toThrow();
  });
});

describe('a part computed in the training worker', () => {
  it('refuses a setup the worker cannot take part in, and the calls of a part a newer round replaced', async () => {
    const worker = workerOverChannel();
    const open = openSecAggInWorker(worker);
    const setup = await setupOf(['a', 'b'], 2);
    const noSend = async (): Promise<Ack> => ({ ok: true });
    // This client is not among the setup's clients: refused in the worker, with the code.
    await expect(open(RUN, ROUND, setup, 'zz', noSend)).rejects.toMatchObject({
      name: 'RoundFailure',
      code: 'NOT_SELECTED',
    });
    const first = await open(RUN, ROUND, setup, 'a', noSend);
    await open(RUN, ROUND + 1, { ...setup, roundId: `${RUN}/2/1` }, 'a', noSend);
    await expect(first.advertise()).rejects.toMatchObject({ code: 'WRONG_ROUND' });
  });
});
