import { ErrorCode } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import { SecAggClient } from './client.js';
import type { SharesBundle } from './messages.js';
import {
  expectRefusal,
  makeInputs,
  makeSetup,
  maxDifference,
  plainFedAvg,
} from './round.fixtures.js';
import { SecAggServer } from './server.js';
import { simulateRound } from './simulate.js';
import { transcriptEntry, transcriptHash } from './transcript.js';

describe("the round's transcript", () => {
  const setup = makeSetup(6, { parameterCount: 30 });
  const inputs = makeInputs(setup, 4);

  it('has one digest per message accepted or sent, and each client finds its own in it', async () => {
    const { result, view } = await simulateRound(setup, inputs, {
      afterAdvertising: ['client-005'],
      afterMasking: ['client-003'],
    });
    const count = (step: string) => result.transcript.filter((entry) => entry.step === step).length;
    expect([
      count('advertise'),
      count('advertised'),
      count('shareKeys'),
      count('sharesBundle'),
      count('maskedInput'),
      count('unmaskRequest'),
      count('unmaskResponse'),
    ]).toEqual([6, 1, 5, 5, 5, 1, 4]);
    const digests = new Set(result.transcript.map((entry) => entry.sha256));
    for (const [id, message] of view.advertisements) {
      expect(digests).toContain((await transcriptEntry('advertise', id, 'server', message)).sha256);
    }
    for (const [id, message] of view.shareKeys) {
      expect(digests).toContain((await transcriptEntry('shareKeys', id, 'server', message)).sha256);
    }
    for (const [id, message] of view.maskedInputs) {
      expect(digests).toContain(
        (await transcriptEntry('maskedInput', id, 'server', message)).sha256,
      );
    }
    for (const [id, message] of view.unmaskResponses) {
      expect(digests).toContain(
        (await transcriptEntry('unmaskResponse', id, 'server', message)).sha256,
      );
    }
    expect(await transcriptHash(result.transcript)).toBe(result.transcriptHash);
    expect(result.transcriptHash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('differs between two rounds of the same inputs (fresh keys and masks)', async () => {
    const first = await simulateRound(setup, inputs);
    const second = await simulateRound(setup, inputs);
    expect(first.result.transcriptHash).not.toBe(second.result.transcriptHash);
  });

  it('refused messages leave no entry; a repeat sent while the first is still being checked is refused', async () => {
    const server = new SecAggServer(setup);
    const clients = await Promise.all(setup.clientIds.map((id) => SecAggClient.create(setup, id)));
    for (const client of clients)
      await server.receiveAdvertise(client.clientId, client.advertise());
    const advertised = server.closeAdvertising();
    for (const client of clients) {
      await server.receiveShareKeys(client.clientId, await client.shareKeys(advertised));
    }
    const bundles = server.closeSharing();
    for (const client of clients) {
      const input = inputs.get(client.clientId);
      if (input === undefined) throw new Error('no input');
      const masked = await client.maskInput(bundles.get(client.clientId) as SharesBundle, input);
      // The same message twice at once: one is accepted, the other refused, the sum has it once.
      const outcomes = await Promise.allSettled([
        server.receiveMaskedInput(client.clientId, masked),
        server.receiveMaskedInput(client.clientId, masked),
      ]);
      expect(outcomes.map((outcome) => outcome.status).sort()).toEqual(['fulfilled', 'rejected']);
      const rejected = outcomes.find((outcome) => outcome.status === 'rejected');
      expect((rejected as PromiseRejectedResult).reason).toMatchObject({
        code: ErrorCode.DUPLICATE_UPDATE,
      });
      await expectRefusal(
        () => server.receiveMaskedInput(client.clientId, masked),
        ErrorCode.DUPLICATE_UPDATE,
      );
    }
    const request = server.closeMasking();
    for (const client of clients) {
      await server.receiveUnmaskResponse(client.clientId, client.unmask(request));
    }
    const result = await server.finish();
    expect(result.transcript.filter((entry) => entry.step === 'maskedInput')).toHaveLength(6);
    const plain = plainFedAvg(setup, inputs, setup.clientIds);
    expect(maxDifference(result.weights, plain.weights)).toBeLessThanOrEqual(result.maxAbsError);
  });
});
