import {
  type Ack,
  type SecAggClientFrame,
  type SecAggServerFrame,
  TesseraError,
} from '@tessera/protocol';
import { SECAGG_PROTOCOL, SecAggServer, type SecAggSetup, supportedCurves } from '@tessera/secagg';
import { describe, expect, it } from 'vitest';
import { SecAggParticipation } from './secure-aggregation.js';
import { RoundFailure } from './trainer.js';

/**
 * A client's part of a SecAgg round, three participations against @tessera/secagg's real
 * server in memory: the coordinator's steps are the server's, called in the engine's order.
 */

const RUN = 'run-1';
const ROUND = 1;

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

/** What the coordinator's socket edge does with a client's frame: the server's step, or a refusal. */
function sendTo(server: SecAggServer, clientId: string) {
  return async (frame: SecAggClientFrame): Promise<Ack> => {
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

describe("a client's part of a secure-aggregation round", () => {
  it('settles the masked ack with the code when its change cannot be masked (it was left pending), and the others still sum', async () => {
    const ids = ['a', 'b', 'c'];
    const global = Float32Array.from([0.5, -0.25, 0.125]);
    const setup = await setupOf(ids, global.length);
    const server = new SecAggServer(setup);
    const clients = await Promise.all(
      ids.map((id) => SecAggParticipation.create(RUN, ROUND, setup, id, sendTo(server, id))),
    );
    const [a, b, c] = clients as [SecAggParticipation, SecAggParticipation, SecAggParticipation];
    for (const client of clients) await client.advertise();
    const advertised = frameOf('advertised', server.closeAdvertising());
    for (const client of clients) await client.handle(advertised);
    const bundles = server.closeSharing();

    a.provide(global, Float32Array.from([0.6, -0.25, 0.125]), 10);
    b.provide(global, Float32Array.from([0.5, 0.25, 0.125]), 30);
    // What a detached global (a zero-length array) made of the change: NaN everywhere.
    c.provide(new Float32Array(0), Float32Array.from([0.5, -0.25, 0.125]), 20);
    for (const [id, client] of [
      ['a', a],
      ['b', b],
      ['c', c],
    ] as const) {
      // Resolves for c too: its failure is the masked ack's, not a rejection the host drops.
      await client.handle(frameOf('shares', bundles.get(id) as object));
    }
    await expect(a.masked).resolves.toEqual({ ok: true });
    await expect(b.masked).resolves.toEqual({ ok: true });
    const refused = await c.masked.then(
      () => null,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(RoundFailure);
    expect(refused).toMatchObject({ code: 'NON_FINITE_WEIGHTS' });
    expect((refused as Error).message).toMatch(/step shares: the update contains NaN/);

    // c is out of U3; the sum of a and b is unmasked with its pairwise masks rebuilt.
    const request = server.closeMasking();
    expect(request.survivors).toEqual(['a', 'b']);
    for (const client of [a, b]) await client.handle(frameOf('unmask', request));
    const result = await server.finish();
    expect(result.droppedAfterSharing).toEqual(['c']);
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
    const clients = await Promise.all(
      ids.map((id) => SecAggParticipation.create(RUN, ROUND, setup, id, sendTo(server, id))),
    );
    for (const client of clients) await client.advertise();
    const advertised = frameOf('advertised', server.closeAdvertising());
    for (const client of clients) await client.handle(advertised);
    const bundles = server.closeSharing();
    for (const [k, client] of clients.entries()) {
      client.provide(new Float32Array(2), Float32Array.from([0.1, 0.2]), 5);
      await client.handle(frameOf('shares', bundles.get(ids[k] as string) as object));
      await expect(client.masked).resolves.toEqual({ ok: true });
    }
    // An unmask request naming a client outside the round cannot be answered.
    const request = server.closeMasking();
    await expect(
      clients[0]?.handle(frameOf('unmask', { ...request, survivors: ['a', 'zz'] })),
    ).rejects.toThrow();
  });
});
