/**
 * Every bad input of a SecAgg round refused with its code (and data.field where a field is at
 * fault), and the round's result still the FedAvg of its survivors afterwards: a refused
 * message changes nothing.
 */
import { ErrorCode } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import { SecAggClient } from './client.js';
import { generateKeyPair } from './keys.js';
import type {
  AdvertisedKeys,
  AdvertiseKeys,
  MaskedInput,
  ParticipantKeys,
  ShareKeys,
  SharesBundle,
  UnmaskResponse,
} from './messages.js';
import {
  expectRefusal,
  makeInputs,
  makeSetup,
  maxDifference,
  plainFedAvg,
} from './round.fixtures.js';
import type { SecAggResult } from './server.js';
import type { SecAggSetup } from './setup.js';
import { type DropoutSchedule, type SimulationContext, simulateRound } from './simulate.js';

type Step = 'advertise' | 'share' | 'mask' | 'unmask';

function expectFedAvgOf(
  setup: SecAggSetup,
  seed: number,
  result: SecAggResult,
  survivors: string[],
) {
  expect(result.survivors).toEqual(survivors);
  const plain = plainFedAvg(setup, makeInputs(setup, seed), survivors);
  expect(result.totalExamples).toBe(plain.totalExamples);
  expect(maxDifference(result.weights, plain.weights)).toBeLessThanOrEqual(result.maxAbsError);
}

/** A round of 6 (t = 4) where `attack` runs before the server closes `step`. */
async function roundWith(
  step: Step,
  dropouts: DropoutSchedule,
  attack: (context: SimulationContext) => Promise<void>,
) {
  const setup = makeSetup(6, { parameterCount: 40 });
  const seed = 11;
  let attacked = false;
  const { result } = await simulateRound(setup, makeInputs(setup, seed), dropouts, {
    beforeClose: async (at, context) => {
      if (at !== step) return;
      await attack(context);
      attacked = true;
    },
  });
  expect(attacked).toBe(true);
  return { setup, seed, result };
}

const bytes = (length: number, fill = 1) => new Uint8Array(length).fill(fill);

describe('the server refuses bad client messages and the sum stays right', () => {
  it('advertising: another round, an outsider, a repeat, bad or copied keys, late keys', async () => {
    const { setup, seed, result } = await roundWith(
      'advertise',
      { beforeAdvertising: ['client-005'] },
      async ({ server }) => {
        const fresh = async () => {
          const pair = [
            await generateKeyPair('X25519', false),
            await generateKeyPair('X25519', false),
          ];
          return { encryptionPublicKey: pair[0]?.publicKey, maskingPublicKey: pair[1]?.publicKey };
        };
        const good = { roundId: server.setup.roundId, ...(await fresh()) };
        const send = (sender: string, message: unknown) => () =>
          server.receiveAdvertise(sender, message);
        await expectRefusal(
          send('client-005', { ...good, roundId: 'run-1/round-0' }),
          ErrorCode.WRONG_ROUND,
          'roundId',
        );
        await expectRefusal(send('mallory', good), ErrorCode.NOT_SELECTED);
        await expectRefusal(send('client-000', good), ErrorCode.DUPLICATE_UPDATE);
        await expectRefusal(
          send('client-005', { ...good, maskingPublicKey: bytes(31) }),
          ErrorCode.SECAGG_KEY_INVALID,
          'maskingPublicKey',
        );
        await expectRefusal(
          send('client-005', { ...good, encryptionPublicKey: bytes(32, 0) }),
          ErrorCode.SECAGG_KEY_INVALID,
          'encryptionPublicKey',
        );
        await expectRefusal(
          send('client-005', { ...good, maskingPublicKey: good.encryptionPublicKey }),
          ErrorCode.SECAGG_KEY_INVALID,
          'maskingPublicKey',
        );
        await expectRefusal(
          send('client-005', { ...good, encryptionPublicKey: 'not bytes' }),
          ErrorCode.MALFORMED_FRAME,
          'encryptionPublicKey',
        );
        await expectRefusal(send('client-005', null), ErrorCode.MALFORMED_FRAME, 'message');
        expect(server.stage).toBe('advertise');
      },
    );
    expect(result.neverAdvertised).toEqual(['client-005']);
    expectFedAvgOf(setup, seed, result, setup.clientIds.slice(0, 5));
  });

  it("advertising: a client's keys copied by another are refused", async () => {
    const { setup, seed, result } = await roundWith(
      'advertise',
      { beforeAdvertising: ['client-005'] },
      async ({ server, view }) => {
        const victim = view.advertisements.get('client-000') as AdvertiseKeys;
        const copy = {
          roundId: server.setup.roundId,
          encryptionPublicKey: (await generateKeyPair('X25519', false)).publicKey,
          // Replaying client-000's masking key would make masks cancel against the wrong party.
          maskingPublicKey: victim.maskingPublicKey,
        };
        await expectRefusal(
          () => server.receiveAdvertise('client-005', copy),
          ErrorCode.SECAGG_KEY_INVALID,
          'maskingPublicKey',
        );
      },
    );
    expectFedAvgOf(setup, seed, result, setup.clientIds.slice(0, 5));
  });

  it('advertising closed: a late advertisement is refused', async () => {
    await roundWith('share', { beforeAdvertising: ['client-005'] }, async ({ server }) => {
      const late = {
        roundId: server.setup.roundId,
        encryptionPublicKey: (await generateKeyPair('X25519', false)).publicKey,
        maskingPublicKey: (await generateKeyPair('X25519', false)).publicKey,
      };
      await expectRefusal(() => server.receiveAdvertise('client-005', late), ErrorCode.CONFLICT);
    });
  });

  it('sharing: shares for outsiders, for itself, twice, missing, of the wrong size; a repeat; a client out of U1', async () => {
    const { setup, seed, result } = await roundWith(
      'share',
      { beforeAdvertising: ['client-005'], afterAdvertising: ['client-004'] },
      async ({ server, view }) => {
        const setup = server.setup;
        // client-004 is in U1 but sent no shares: its messages are checked in full.
        const model = view.shareKeys.get('client-000') as ShareKeys;
        const forOthers = (sender: string) =>
          setup.clientIds
            .slice(0, 5)
            .filter((id) => id !== sender)
            .map((to) => ({ to, ciphertext: bytes(94) }));
        const good: ShareKeys = {
          roundId: setup.roundId,
          selfMaskCommitment: bytes(32),
          encryptedShares: forOthers('client-004'),
        };
        const send = (sender: string, message: unknown) => () =>
          server.receiveShareKeys(sender, message);
        const withShares = (encryptedShares: ShareKeys['encryptedShares']) => ({
          ...good,
          encryptedShares,
        });
        await expectRefusal(
          send(
            'client-004',
            withShares([
              ...good.encryptedShares.slice(1),
              { to: 'client-005', ciphertext: bytes(94) },
            ]),
          ),
          ErrorCode.NOT_SELECTED,
          'encryptedShares[3].to',
        );
        await expectRefusal(
          send(
            'client-004',
            withShares([...good.encryptedShares, { to: 'mallory', ciphertext: bytes(94) }]),
          ),
          ErrorCode.NOT_SELECTED,
          'encryptedShares[4].to',
        );
        await expectRefusal(
          send(
            'client-004',
            withShares([...good.encryptedShares, { to: 'client-004', ciphertext: bytes(94) }]),
          ),
          ErrorCode.NOT_SELECTED,
          'encryptedShares[4].to',
        );
        await expectRefusal(
          send(
            'client-004',
            withShares([...good.encryptedShares, good.encryptedShares[0] as never]),
          ),
          ErrorCode.DUPLICATE_UPDATE,
          'encryptedShares[4].to',
        );
        await expectRefusal(
          send('client-004', withShares(good.encryptedShares.slice(1))),
          ErrorCode.MALFORMED_FRAME,
          'encryptedShares',
        );
        await expectRefusal(
          send(
            'client-004',
            withShares([
              { to: 'client-000', ciphertext: bytes(93) },
              ...good.encryptedShares.slice(1),
            ]),
          ),
          ErrorCode.MALFORMED_FRAME,
          'encryptedShares[0].ciphertext',
        );
        await expectRefusal(
          send('client-004', { ...good, selfMaskCommitment: bytes(31) }),
          ErrorCode.MALFORMED_FRAME,
          'selfMaskCommitment',
        );
        await expectRefusal(
          send('client-004', { ...good, roundId: 'other' }),
          ErrorCode.WRONG_ROUND,
          'roundId',
        );
        await expectRefusal(send('client-000', model), ErrorCode.DUPLICATE_UPDATE);
        await expectRefusal(
          send('client-005', withShares(forOthers('client-005'))),
          ErrorCode.NOT_SELECTED,
        );
        expect(server.stage).toBe('share');
      },
    );
    expect(result.droppedAfterAdvertising).toEqual(['client-004']);
    expectFedAvgOf(setup, seed, result, setup.clientIds.slice(0, 4));
  });

  it('masking: wrong length, a repeat (not added twice), a replay from another round, a client out of U2, an outsider', async () => {
    const { setup, seed, result } = await roundWith(
      'mask',
      { afterAdvertising: ['client-005'], afterSharing: ['client-004'] },
      async ({ server, view }) => {
        const setup = server.setup;
        const words = setup.parameterCount + 1;
        const send = (sender: string, message: unknown) => () =>
          server.receiveMaskedInput(sender, message);
        const vector = (length: number) => ({
          roundId: setup.roundId,
          maskedVector: bytes(length, 7),
        });
        for (const length of [4 * words - 4, 4 * words + 4, 4 * words - 1, 0]) {
          const error = await expectRefusal(
            send('client-004', vector(length)),
            ErrorCode.WEIGHTS_LENGTH_MISMATCH,
            'maskedVector',
          );
          expect(error.data).toMatchObject({ expectedBytes: 4 * words, receivedBytes: length });
        }
        const original = view.maskedInputs.get('client-000') as MaskedInput;
        await expectRefusal(send('client-000', original), ErrorCode.DUPLICATE_UPDATE);
        await expectRefusal(send('client-000', vector(4 * words)), ErrorCode.DUPLICATE_UPDATE);
        await expectRefusal(
          send('client-004', { ...original, roundId: 'run-1/round-0' }),
          ErrorCode.WRONG_ROUND,
          'roundId',
        );
        await expectRefusal(send('client-005', vector(4 * words)), ErrorCode.NOT_SELECTED);
        await expectRefusal(send('mallory', vector(4 * words)), ErrorCode.NOT_SELECTED);
        await expectRefusal(
          send('client-004', { roundId: setup.roundId, maskedVector: [1, 2] }),
          ErrorCode.MALFORMED_FRAME,
          'maskedVector',
        );
      },
    );
    expect(result.droppedAfterSharing).toEqual(['client-004']);
    expectFedAvgOf(setup, seed, result, setup.clientIds.slice(0, 4));
  });

  it('masking closed: a late masked input is refused', async () => {
    await roundWith('unmask', { afterSharing: ['client-004'] }, async ({ server }) => {
      await expectRefusal(
        () =>
          server.receiveMaskedInput('client-004', {
            roundId: server.setup.roundId,
            maskedVector: bytes(164),
          }),
        ErrorCode.CONFLICT,
      );
    });
  });

  it('unmasking: shares of the wrong size, of outsiders, missing, replayed from another client, repeated; a response twice', async () => {
    const { setup, seed, result } = await roundWith(
      'unmask',
      { afterSharing: ['client-005'], afterMasking: ['client-004'] },
      async ({ server, clients, view }) => {
        const setup = server.setup;
        const request = {
          roundId: setup.roundId,
          survivors: setup.clientIds.slice(0, 5),
          dropped: ['client-005'],
        };
        const genuine = (clients.get('client-004') as SecAggClient).unmask(request);
        const other = view.unmaskResponses.get('client-000') as UnmaskResponse;
        const send = (message: unknown) => () =>
          server.receiveUnmaskResponse('client-004', message);
        const editSelfMask = (edit: (shares: UnmaskResponse['selfMaskShares']) => unknown) => ({
          ...genuine,
          selfMaskShares: edit(genuine.selfMaskShares.map((share) => ({ ...share }))),
        });
        await expectRefusal(
          send(
            editSelfMask((shares) =>
              shares.map((s, i) => (i === 2 ? { ...s, share: s.share.slice(1) } : s)),
            ),
          ),
          ErrorCode.MALFORMED_FRAME,
          'selfMaskShares[2].share',
        );
        await expectRefusal(
          send(editSelfMask((shares) => [...shares, { of: 'mallory', share: bytes(33) }])),
          ErrorCode.NOT_SELECTED,
          'selfMaskShares[5].of',
        );
        await expectRefusal(
          send(editSelfMask((shares) => [...shares, { of: 'client-005', share: bytes(33) }])),
          ErrorCode.NOT_SELECTED,
          'selfMaskShares[5].of',
        );
        await expectRefusal(
          send(editSelfMask((shares) => shares.slice(1))),
          ErrorCode.MALFORMED_FRAME,
          'selfMaskShares',
        );
        await expectRefusal(
          send(editSelfMask((shares) => [...shares, shares[0]])),
          ErrorCode.DUPLICATE_UPDATE,
          'selfMaskShares[5].of',
        );
        // client-000's share of client-001's seed, passed off as client-004's: a replay.
        await expectRefusal(
          send(
            editSelfMask((shares) => shares.map((s, i) => (i === 1 ? other.selfMaskShares[1] : s))),
          ),
          ErrorCode.DUPLICATE_UPDATE,
          'selfMaskShares[1].share',
        );
        await expectRefusal(
          send({ ...genuine, keyShares: [] }),
          ErrorCode.MALFORMED_FRAME,
          'keyShares',
        );
        await expectRefusal(
          send({ ...genuine, keyShares: [{ of: 'client-000', share: bytes(33) }] }),
          ErrorCode.NOT_SELECTED,
          'keyShares[0].of',
        );
        await expectRefusal(
          send({ ...genuine, roundId: 'other' }),
          ErrorCode.WRONG_ROUND,
          'roundId',
        );
        await expectRefusal(
          () => server.receiveUnmaskResponse('client-000', other),
          ErrorCode.DUPLICATE_UPDATE,
        );
        await expectRefusal(
          () => server.receiveUnmaskResponse('client-005', genuine),
          ErrorCode.NOT_SELECTED,
        );
        expect(server.stage).toBe('unmask');
      },
    );
    expect(result.droppedAfterMasking).toEqual(['client-004']);
    expectFedAvgOf(setup, seed, result, setup.clientIds.slice(0, 5));
  });

  /** client-000 (first in the setup's order, so among the first t shares tried) answers with one share corrupted. */
  async function corruptedShareRound(kind: 'selfMaskShares' | 'keyShares', answering: string[]) {
    return roundWith(
      'unmask',
      { afterSharing: ['client-005'], afterMasking: ['client-000', ...answering] },
      async ({ server, clients }) => {
        const setup = server.setup;
        const request = {
          roundId: setup.roundId,
          survivors: setup.clientIds.slice(0, 5),
          dropped: ['client-005'],
        };
        const response = (clients.get('client-000') as SecAggClient).unmask(request);
        // Flip a y-byte of its share of client-000's seed (or of client-005's key); keep x.
        const target = response[kind][0] as { of: string; share: Uint8Array };
        const share = target.share.slice();
        share[5] = (share[5] as number) ^ 0x40;
        target.share = share;
        await server.receiveUnmaskResponse('client-000', response);
      },
    );
  }

  it.each(['selfMaskShares', 'keyShares'] as const)(
    'unmasking: a wrong share in %s is found and passed over when more than t answered',
    async (kind) => {
      const { setup, seed, result } = await corruptedShareRound(kind, []);
      expect(result.faultyShareHolders).toEqual(['client-000']);
      expect(result.droppedAfterMasking).toEqual([]);
      expectFedAvgOf(setup, seed, result, setup.clientIds.slice(0, 5));
    },
  );

  it.each(['selfMaskShares', 'keyShares'] as const)(
    'unmasking: with only t answers a wrong share in %s is refused, and the round is left as it was',
    async (kind) => {
      // t = 4 answers (client-000 corrupt, client-001..003): no subset of t avoids the bad share.
      const refusal = await expectRefusal(
        () => corruptedShareRound(kind, ['client-004']),
        ErrorCode.SECAGG_KEY_INVALID,
      );
      expect(refusal.data?.['clientId']).toBe(kind === 'keyShares' ? 'client-005' : 'client-000');
    },
  );

  it('a step closed twice, or out of order, is refused', async () => {
    await roundWith('share', {}, async ({ server }) => {
      await expectRefusal(() => server.closeAdvertising(), ErrorCode.CONFLICT);
      await expectRefusal(() => server.closeMasking(), ErrorCode.CONFLICT);
      await expectRefusal(() => server.finish(), ErrorCode.CONFLICT);
    });
  });
});

/** A round of 4 (t = 3) driven by hand, to hand clients bad server messages. */
async function manualRound() {
  const setup = makeSetup(4, { parameterCount: 30 });
  const inputs = makeInputs(setup, 21);
  const { SecAggServer } = await import('./server.js');
  const server = new SecAggServer(setup);
  const clients = await Promise.all(setup.clientIds.map((id) => SecAggClient.create(setup, id)));
  for (const client of clients) await server.receiveAdvertise(client.clientId, client.advertise());
  const advertised = server.closeAdvertising();
  return { setup, inputs, server, clients, advertised };
}

describe('a client refuses bad server messages and can still go on', () => {
  it('advertised keys: another round, outsiders, repeats, its own keys changed, bad keys, too few, itself missing', async () => {
    const { setup, server, clients, advertised } = await manualRound();
    const client = clients[0] as SecAggClient;
    const participants = advertised.participants;
    const other = await generateKeyPair('X25519', false);
    const edit = (list: AdvertisedKeys['participants']) => ({
      roundId: setup.roundId,
      participants: list,
    });
    const cases: [AdvertisedKeys | unknown, string, string | undefined][] = [
      [{ ...advertised, roundId: 'other' }, ErrorCode.WRONG_ROUND, 'roundId'],
      [
        edit([...participants, { ...(participants[1] as ParticipantKeys), clientId: 'mallory' }]),
        ErrorCode.NOT_SELECTED,
        'participants[4].clientId',
      ],
      [
        edit([...participants, participants[1] as never]),
        ErrorCode.DUPLICATE_UPDATE,
        'participants[4].clientId',
      ],
      [
        edit(
          participants.map((p, i) => (i === 0 ? { ...p, maskingPublicKey: other.publicKey } : p)),
        ),
        ErrorCode.SECAGG_KEY_INVALID,
        'participants[0]',
      ],
      [
        edit(
          participants.map((p, i) =>
            i === 2
              ? { ...p, maskingPublicKey: participants[1]?.maskingPublicKey as Uint8Array }
              : p,
          ),
        ),
        ErrorCode.SECAGG_KEY_INVALID,
        'participants[2]',
      ],
      [
        edit(
          participants.map((p, i) => (i === 3 ? { ...p, encryptionPublicKey: bytes(32, 0) } : p)),
        ),
        ErrorCode.SECAGG_KEY_INVALID,
        'participants[3].encryptionPublicKey',
      ],
      [edit(participants.slice(0, 2)), ErrorCode.SECAGG_THRESHOLD_NOT_MET, undefined],
      [edit(participants.slice(1)), ErrorCode.NOT_SELECTED, 'participants'],
      [edit('everyone' as never), ErrorCode.MALFORMED_FRAME, 'participants'],
    ];
    for (const [message, code, field] of cases) {
      await expectRefusal(() => client.shareKeys(message as AdvertisedKeys), code, field);
      expect(client.stage).toBe('share');
    }
    // The same message twice at once: one set of secrets, the other call refused.
    const twice = await Promise.allSettled([
      client.shareKeys(advertised),
      client.shareKeys(advertised),
    ]);
    expect(twice.map((outcome) => outcome.status)).toEqual(['fulfilled', 'rejected']);
    expect((twice[1] as PromiseRejectedResult).reason).toMatchObject({ code: ErrorCode.CONFLICT });
    await server.receiveShareKeys(
      client.clientId,
      (twice[0] as PromiseFulfilledResult<ShareKeys>).value,
    );
    // The genuine message still works for the others, and the round completes.
    for (const each of clients.slice(1)) {
      await server.receiveShareKeys(each.clientId, await each.shareKeys(advertised));
    }
    expect(server.closeSharing().size).toBe(4);
  });

  it('shares: a tampered tag, a relabelled or replayed ciphertext, a wrong size, outsiders, repeats; then the round completes', async () => {
    const { setup, inputs, server, clients, advertised } = await manualRound();
    const sent = new Map<string, ShareKeys>();
    for (const client of clients) {
      const message = await client.shareKeys(advertised);
      sent.set(client.clientId, message);
      await server.receiveShareKeys(client.clientId, message);
    }
    const bundles = server.closeSharing();
    const victim = clients[0] as SecAggClient;
    // What the victim itself sent to client-001, under the key the pair shares both ways.
    const reflected = sent
      .get(victim.clientId)
      ?.encryptedShares.find((share) => share.to === 'client-001')?.ciphertext as Uint8Array;
    const bundle = bundles.get(victim.clientId) as SharesBundle;
    const input = inputs.get(victim.clientId);
    if (input === undefined) throw new Error('no input');
    const shares = bundle.encryptedShares;
    const flipped = (bytesIn: Uint8Array, index: number) => {
      const copy = bytesIn.slice();
      copy[index] = (copy[index] as number) ^ 1;
      return copy;
    };
    // Shares from an earlier round of the same clients (other keys, other round id).
    const earlier = await manualRound();
    for (const client of earlier.clients) {
      await earlier.server.receiveShareKeys(
        client.clientId,
        await client.shareKeys(earlier.advertised),
      );
    }
    const replayed = earlier.server.closeSharing().get(victim.clientId) as SharesBundle;
    const edit = (list: SharesBundle['encryptedShares']) => ({
      roundId: setup.roundId,
      encryptedShares: list,
    });
    const at = (i: number, change: (share: SharesBundle['encryptedShares'][number]) => object) =>
      edit(shares.map((share, j) => (j === i ? { ...share, ...change(share) } : share)));
    const cases: [unknown, string, string][] = [
      [
        at(1, (s) => ({ ciphertext: flipped(s.ciphertext, 93) })),
        ErrorCode.SECAGG_DECRYPTION_FAILED,
        'encryptedShares[1].ciphertext',
      ],
      [
        at(0, (s) => ({ ciphertext: flipped(s.ciphertext, 20) })),
        ErrorCode.SECAGG_DECRYPTION_FAILED,
        'encryptedShares[0].ciphertext',
      ],
      [
        at(2, (s) => ({ ciphertext: flipped(s.ciphertext, 0) })),
        ErrorCode.SECAGG_DECRYPTION_FAILED,
        'encryptedShares[2].ciphertext',
      ],
      // Its own ciphertext to client-001 reflected back as from client-001: the additional
      // data names sender and recipient, so one direction is not the other.
      [
        at(0, () => ({ ciphertext: reflected })),
        ErrorCode.SECAGG_DECRYPTION_FAILED,
        'encryptedShares[0].ciphertext',
      ],
      // client-002's ciphertext presented as client-001's: another pair's key.
      [
        at(0, () => ({ ciphertext: shares[1]?.ciphertext })),
        ErrorCode.SECAGG_DECRYPTION_FAILED,
        'encryptedShares[0].ciphertext',
      ],
      [
        edit(replayed.encryptedShares),
        ErrorCode.SECAGG_DECRYPTION_FAILED,
        'encryptedShares[0].ciphertext',
      ],
      [
        at(1, (s) => ({ ciphertext: s.ciphertext.slice(1) })),
        ErrorCode.MALFORMED_FRAME,
        'encryptedShares[1].ciphertext',
      ],
      [at(1, () => ({ from: 'mallory' })), ErrorCode.NOT_SELECTED, 'encryptedShares[1].from'],
      [at(1, () => ({ from: victim.clientId })), ErrorCode.NOT_SELECTED, 'encryptedShares[1].from'],
      [
        edit([...shares, shares[0] as never]),
        ErrorCode.DUPLICATE_UPDATE,
        'encryptedShares[3].from',
      ],
      [{ ...bundle, roundId: 'other' }, ErrorCode.WRONG_ROUND, 'roundId'],
    ];
    for (const [message, code, field] of cases) {
      await expectRefusal(() => victim.maskInput(message as SharesBundle, input), code, field);
      expect(victim.stage).toBe('mask');
    }
    await expectRefusal(
      () => victim.maskInput(edit(shares.slice(0, 1)), input),
      ErrorCode.SECAGG_THRESHOLD_NOT_MET,
    );
    for (const client of clients) {
      const mine = inputs.get(client.clientId);
      if (mine === undefined) throw new Error('no input');
      await server.receiveMaskedInput(
        client.clientId,
        await client.maskInput(bundles.get(client.clientId) as SharesBundle, mine),
      );
    }
    const request = server.closeMasking();

    // The unmask request: a client never reveals both shares of one client, nor answers twice.
    await expectRefusal(
      () => victim.unmask({ ...request, dropped: ['client-001'] }),
      ErrorCode.CONFLICT,
      'dropped[0]',
    );
    await expectRefusal(
      () =>
        victim.unmask({
          ...request,
          survivors: request.survivors.slice(1),
          dropped: [victim.clientId],
        }),
      ErrorCode.NOT_SELECTED,
      'survivors',
    );
    await expectRefusal(
      () => victim.unmask({ ...request, survivors: request.survivors.slice(0, 3) }),
      ErrorCode.MALFORMED_FRAME,
      'dropped',
    );
    await expectRefusal(
      () => victim.unmask({ ...request, survivors: [...request.survivors, 'mallory'] }),
      ErrorCode.NOT_SELECTED,
      'survivors[4]',
    );
    expect(victim.stage).toBe('unmask');
    for (const client of clients)
      await server.receiveUnmaskResponse(client.clientId, client.unmask(request));
    await expectRefusal(() => victim.unmask(request), ErrorCode.CONFLICT);
    const result = await server.finish();
    expectFedAvgOf(setup, 21, result, setup.clientIds);
  });
});
