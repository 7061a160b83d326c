import { ErrorCode } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import { bytesToWords } from './bytes.js';
import { SecAggClient } from './client.js';
import { addInto } from './masking.js';
import { quantiseInput } from './quantise.js';
import {
  expectRefusal,
  makeInputs,
  makeSetup,
  maxDifference,
  plainFedAvg,
} from './round.fixtures.js';
import { checkSetup, type SecAggSetup } from './setup.js';
import { type DropoutSchedule, simulateRound } from './simulate.js';

type Stage = keyof DropoutSchedule;
const STAGES: Stage[] = ['afterAdvertising', 'afterSharing', 'afterMasking'];

/** Runs a round and checks it against plain FedAvg over the clients whose input counts. */
async function expectFedAvg(setup: SecAggSetup, dropouts: DropoutSchedule, seed: number) {
  const inputs = makeInputs(setup, seed);
  const { result } = await simulateRound(setup, inputs, dropouts);
  const gone = new Set([
    ...(dropouts.beforeAdvertising ?? []),
    ...(dropouts.afterAdvertising ?? []),
    ...(dropouts.afterSharing ?? []),
  ]);
  // Who dropped after masking still counts: their masked input is in the sum.
  const expectedSurvivors = setup.clientIds.filter((id) => !gone.has(id));
  expect(result.survivors).toEqual(expectedSurvivors);
  expect(result.droppedAfterAdvertising).toEqual(dropouts.afterAdvertising ?? []);
  expect(result.droppedAfterSharing).toEqual(dropouts.afterSharing ?? []);
  expect(result.droppedAfterMasking).toEqual(dropouts.afterMasking ?? []);
  const plain = plainFedAvg(setup, inputs, expectedSurvivors);
  expect(result.totalExamples).toBe(plain.totalExamples);
  expect(maxDifference(result.weights, plain.weights)).toBeLessThanOrEqual(result.maxAbsError);
  // The bound is tight enough to mean something: far below the spread of the inputs.
  expect(result.maxAbsError).toBeLessThan(1e-5);
  return result;
}

describe('a SecAgg round equals plain FedAvg over the survivors', () => {
  for (const n of [3, 10, 50]) {
    const setup = makeSetup(n, { parameterCount: 200 });
    const t = setup.threshold;
    const ids = setup.clientIds;
    // The last ones drop, so the order of ids (and so the mask signs) is exercised both ways.
    const lastOnes = (count: number) => ids.slice(n - count);

    // A round of 50 clients is thousands of WebCrypto calls: allow for a loaded machine.
    const timeout = n >= 50 ? 180_000 : 60_000;

    it(
      `n = ${n}, t = ${t}: no drop-outs`,
      async () => {
        await expectFedAvg(setup, {}, n);
      },
      timeout,
    );

    for (const stage of STAGES) {
      it(
        `n = ${n}: one client drops ${stage}`,
        async () => {
          await expectFedAvg(setup, { [stage]: [ids[1] as string] }, n + 1);
        },
        timeout,
      );
      it(
        `n = ${n}: n − t = ${n - t} clients drop ${stage}`,
        async () => {
          await expectFedAvg(setup, { [stage]: lastOnes(n - t) }, n + 2);
        },
        timeout,
      );
    }

    if (n >= 10) {
      it(
        `n = ${n}: drop-outs at every step, n − t in all`,
        async () => {
          const gone = ids.filter((_, i) => i % 2 === 0).slice(0, n - t);
          const third = Math.ceil(gone.length / 3);
          await expectFedAvg(
            setup,
            {
              afterAdvertising: gone.slice(0, third),
              afterSharing: gone.slice(third, 2 * third),
              afterMasking: gone.slice(2 * third),
            },
            n + 3,
          );
        },
        timeout,
      );
    }
  }

  it('on P-256 too (the fallback curve), with drop-outs', async () => {
    const setup = makeSetup(10, { curve: 'P-256', parameterCount: 50 });
    await expectFedAvg(
      setup,
      { afterSharing: ['client-002', 'client-007'], afterMasking: ['client-004'] },
      5,
    );
  });

  it('a client that never advertises is simply not in the round', async () => {
    const setup = makeSetup(5);
    const result = await expectFedAvg(setup, { beforeAdvertising: ['client-004'] }, 6);
    expect(result.neverAdvertised).toEqual(['client-004']);
  });

  it('a model-sized vector (199,210 parameters, the 2NN) with a drop-out', async () => {
    const setup = makeSetup(4, { parameterCount: 199_210, clipRange: 1 });
    await expectFedAvg(setup, { afterSharing: ['client-003'] }, 7);
  });
});

describe('fewer than t clients: refused with a code, nothing revealed', () => {
  const setup = makeSetup(10);
  const tooMany = setup.clientIds.slice(0, setup.clientIds.length - setup.threshold + 1);
  const inputs = makeInputs(setup, 1);

  it.each([
    ['afterAdvertising', 'share'],
    ['afterSharing', 'mask'],
    ['afterMasking', 'unmask'],
  ] as const)('n − t + 1 drop %s: the step "%s" is refused', async (stage, step) => {
    const refusal = await expectRefusal(
      () => simulateRound(setup, inputs, { [stage]: tooMany }),
      ErrorCode.SECAGG_THRESHOLD_NOT_MET,
    );
    expect(refusal.data).toMatchObject({
      step,
      count: setup.threshold - 1,
      threshold: setup.threshold,
    });
  });

  it('a client asked to unmask with fewer than t survivors refuses and reveals no share', async () => {
    const small = makeSetup(3);
    const [a, b, c] = await Promise.all(
      small.clientIds.map((id) => SecAggClient.create(small, id)),
    );
    const clients = [a, b, c] as SecAggClient[];
    const advertised = {
      roundId: small.roundId,
      participants: clients.map((client) => ({ clientId: client.clientId, ...client.advertise() })),
    };
    const shares = await Promise.all(clients.map((client) => client.shareKeys(advertised)));
    const bundleFor = (recipient: number) => ({
      roundId: small.roundId,
      encryptedShares: clients.flatMap((sender, i) =>
        i === recipient
          ? []
          : [
              {
                from: sender.clientId,
                ciphertext: shares[i]?.encryptedShares.find(
                  (s) => s.to === clients[recipient]?.clientId,
                )?.ciphertext as Uint8Array,
              },
            ],
      ),
    });
    const input = makeInputs(small, 2).get('client-000');
    if (input === undefined) throw new Error('no input');
    await (a as SecAggClient).maskInput(bundleFor(0), input);
    // A server asking client-000 alone to unmask (t = 2): it would learn client-000's b share.
    await expectRefusal(
      () =>
        (a as SecAggClient).unmask({
          roundId: small.roundId,
          survivors: ['client-000'],
          dropped: ['client-001', 'client-002'],
        }),
      ErrorCode.SECAGG_THRESHOLD_NOT_MET,
    );
    expect((a as SecAggClient).stage).toBe('unmask');
  });
});

/** Counts of each byte value, and Pearson's χ² against uniform. */
function chiSquaredOfBytes(bytes: Uint8Array): number {
  const counts = new Array<number>(256).fill(0);
  for (const byte of bytes) counts[byte] = (counts[byte] as number) + 1;
  const expected = bytes.length / 256;
  return counts.reduce((total, count) => total + (count - expected) ** 2 / expected, 0);
}

/** χ² with 255 degrees of freedom exceeds this with probability about 1e-6. */
const CHI_SQUARED_LIMIT = 255 + 5 * Math.sqrt(2 * 255);

describe("the server's view of one client's input looks uniform", () => {
  const setup = makeSetup(10, { parameterCount: 8191 });
  const inputs = makeInputs(setup, 3);
  const quantisation = checkSetup(setup);
  const plainWords = new Map(
    [...inputs].map(([id, input]) => [id, quantiseInput(setup, quantisation, input)]),
  );

  it('two rounds of the same inputs give unrelated masked vectors', async () => {
    const first = await simulateRound(setup, inputs);
    const second = await simulateRound(setup, inputs);
    for (const id of setup.clientIds) {
      const a = bytesToWords(first.view.maskedInputs.get(id)?.maskedVector as Uint8Array);
      const b = bytesToWords(second.view.maskedInputs.get(id)?.maskedVector as Uint8Array);
      expect(a.filter((word, i) => word === b[i]).length).toBeLessThan(5);
    }
    // ...while both rounds unmask to the same average.
    expect(maxDifference(first.result.weights, second.result.weights)).toBeLessThanOrEqual(
      2 * first.result.maxAbsError,
    );
  });

  it("no strict subset's masked sum is its plain sum, and each masked vector passes a χ² test that the plain one fails", async () => {
    const { view } = await simulateRound(setup, inputs);
    const ids = setup.clientIds;
    const subsets = [
      ids.slice(0, 1),
      ids.slice(0, 2),
      ids.slice(3, 9),
      ids.slice(0, ids.length - 1),
    ];
    for (const subset of subsets) {
      const masked = new Uint32Array(quantisation.vectorWords);
      const plain = new Uint32Array(quantisation.vectorWords);
      for (const id of subset) {
        addInto(masked, bytesToWords(view.maskedInputs.get(id)?.maskedVector as Uint8Array));
        addInto(plain, plainWords.get(id) as Uint32Array);
      }
      expect(masked.filter((word, i) => word === plain[i]).length, subset.join()).toBeLessThan(5);
    }
    for (const id of ids) {
      const maskedBytes = view.maskedInputs.get(id)?.maskedVector as Uint8Array;
      expect(chiSquaredOfBytes(maskedBytes), id).toBeLessThan(CHI_SQUARED_LIMIT);
    }
    const plainBytes = new Uint8Array((plainWords.get(ids[0] as string) as Uint32Array).buffer);
    expect(chiSquaredOfBytes(plainBytes)).toBeGreaterThan(CHI_SQUARED_LIMIT);
  });

  it('the server holds only ciphertexts of the shares, and one share per secret per survivor', async () => {
    const { view, result } = await simulateRound(setup, inputs, { afterSharing: ['client-005'] });
    for (const message of view.shareKeys.values()) {
      for (const share of message.encryptedShares) expect(share.ciphertext).toHaveLength(94);
    }
    for (const response of view.unmaskResponses.values()) {
      // b shares only for those whose input counts, key shares only for the one that dropped.
      expect(response.selfMaskShares.map((share) => share.of)).toEqual(result.survivors);
      expect(response.keyShares.map((share) => share.of)).toEqual(['client-005']);
    }
  });
});
