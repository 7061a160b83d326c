import type { SecAggClientFrame } from '@tessera/protocol';
import { SecAggClient } from '@tessera/secagg';
import { describe, expect, it } from 'vitest';
import { createLogger } from './logger.js';
import { type SecAggOutcome, SecAggRound } from './secagg-round.js';
import { InMemoryTransport } from './testing/memory-transport.js';
import { Wakeup } from './wakeup.js';

/**
 * SecAggRound over the in-memory Transport: real @tessera/secagg clients answer what the
 * round sends them, through receive() as the socket edge calls it. The steps, a dropout after
 * masking, a step deadline, and bad frames refused with their codes, the sum unchanged.
 */

const RUN = 'run-1';
const PARAMS = 64;
const config = {
  clipRange: 1,
  maxExamplesPerClient: 100,
  thresholdFraction: 0.6,
  stepDeadlineMs: 30_000,
};

const changeOf = (k: number) =>
  Float32Array.from({ length: PARAMS }, (_, i) => 0.1 * Math.sin(k * 3.3 + i * 0.7));

interface Behaviour {
  /** Never advertises (left out at the first step). */
  silent?: boolean;
  /** Leaves after its masked input is taken: never answers the unmask request. */
  dropAfterMasking?: boolean;
  numExamples: number;
}

async function setUp(behaviours: Behaviour[], stepDeadlineMs = 30_000) {
  const clientIds = behaviours.map((_, k) => `client-${k}`);
  const transport = new InMemoryTransport();
  const wakeup = new Wakeup();
  const logs: string[] = [];
  const round = await SecAggRound.open(
    { transport, logger: createLogger('info', (line) => logs.push(line)), wakeup },
    RUN,
    1,
    1,
    { ...config, stepDeadlineMs },
    clientIds,
    PARAMS,
    Date.now() + 120_000,
  );
  const out = new Set<string>();
  const errors: string[] = [];
  const clients = await Promise.all(clientIds.map((id) => SecAggClient.create(round.setup, id)));
  const frame = (step: SecAggClientFrame['step'], message: unknown) =>
    ({ runId: RUN, round: 1, step, message }) as SecAggClientFrame;
  for (const [k, id] of clientIds.entries()) {
    const client = clients[k] as SecAggClient;
    const behaviour = behaviours[k] as Behaviour;
    transport.connect(id, (sent) => {
      if (sent.event !== 'secagg') return;
      const { step, message } = sent.payload;
      void (async () => {
        if (step === 'advertised') {
          await round.receive(id, frame('share', await client.shareKeys(message as never)));
        } else if (step === 'shares') {
          const masked = await client.maskInput(message as never, {
            weights: changeOf(k),
            numExamples: behaviour.numExamples,
          });
          await round.receive(id, frame('mask', masked));
          if (behaviour.dropAfterMasking) {
            out.add(id);
            wakeup.notify();
          }
        } else if (!out.has(id)) {
          await round.receive(id, frame('unmask', client.unmask(message as never)));
        }
      })().catch((error: unknown) => errors.push(`${id}: ${String(error)}`));
    });
  }
  const advertiseAll = async () => {
    for (const [k, id] of clientIds.entries()) {
      if (behaviours[k]?.silent) continue;
      await round.receive(id, frame('advertise', (clients[k] as SecAggClient).advertise()));
    }
  };
  return { round, transport, clientIds, clients, out, errors, logs, frame, advertiseAll };
}

/** FedAvg of the clients' changes, weighted by examples, in float64. */
function fedAvg(members: number[], behaviours: Behaviour[]): Float64Array {
  const total = members.reduce((n, k) => n + (behaviours[k] as Behaviour).numExamples, 0);
  const mean = new Float64Array(PARAMS);
  for (const k of members) {
    const change = changeOf(k);
    const n = (behaviours[k] as Behaviour).numExamples;
    for (let i = 0; i < PARAMS; i++)
      mean[i] = (mean[i] as number) + (n * (change[i] as number)) / total;
  }
  return mean;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++)
    worst = Math.max(worst, Math.abs((a[i] as number) - (b[i] as number)));
  return worst;
}

/** The outcome's sum, which must be the FedAvg of `members` to within its stated error. */
function expectSumOf(outcome: SecAggOutcome, members: number[], behaviours: Behaviour[]) {
  if (outcome.kind !== 'summed') throw new Error(`no sum: ${JSON.stringify(outcome)}`);
  const { result } = outcome;
  expect(maxDiff(result.weights, fedAvg(members, behaviours))).toBeLessThanOrEqual(
    result.maxAbsError,
  );
  return result;
}

async function codeOf(work: Promise<unknown>): Promise<string> {
  try {
    await work;
    return 'ok';
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

describe('SecAggRound over the in-memory transport', () => {
  it('runs the four steps and returns the FedAvg of the changes, sending each step to those left', async () => {
    const behaviours = [{ numExamples: 10 }, { numExamples: 30 }, { numExamples: 60 }];
    const s = await setUp(behaviours);
    const running = s.round.run(
      (id) => s.out.has(id),
      () => false,
    );
    await s.advertiseAll();
    const result = expectSumOf(await running, [0, 1, 2], behaviours);
    expect(s.errors).toEqual([]);
    expect(result.survivors).toEqual(s.clientIds);
    expect(result.totalExamples).toBe(100);
    for (const id of s.clientIds) {
      expect(s.transport.sentTo(id, 'secagg').map((m) => m.payload.step)).toEqual([
        'advertised',
        'shares',
        'unmask',
      ]);
    }
  });

  it('sums a client that leaves after masking: its self-mask is rebuilt from the others’ shares', async () => {
    const behaviours = [
      { numExamples: 10 },
      { numExamples: 20 },
      { numExamples: 30 },
      { numExamples: 40, dropAfterMasking: true },
    ];
    const s = await setUp(behaviours);
    const running = s.round.run(
      (id) => s.out.has(id),
      () => false,
    );
    await s.advertiseAll();
    const result = expectSumOf(await running, [0, 1, 2, 3], behaviours);
    expect(result.survivors).toHaveLength(4);
    expect(result.droppedAfterMasking).toEqual(['client-3']);
  });

  it('closes a step at its deadline without the silent client, and sums the others', async () => {
    const behaviours = [
      { numExamples: 10 },
      { numExamples: 20 },
      { numExamples: 30 },
      { numExamples: 40, silent: true },
    ];
    const s = await setUp(behaviours, 300);
    const started = Date.now();
    const running = s.round.run(
      (id) => s.out.has(id),
      () => false,
    );
    await s.advertiseAll();
    const result = expectSumOf(await running, [0, 1, 2], behaviours);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(result.neverAdvertised).toEqual(['client-3']);
    expect(s.transport.sentTo('client-3', 'secagg')).toEqual([]);
  });

  it('ends without a sum, saying at which step, when too few are left to unmask', async () => {
    const behaviours = [
      { numExamples: 10 },
      { numExamples: 20, dropAfterMasking: true },
      { numExamples: 30, dropAfterMasking: true },
    ];
    const s = await setUp(behaviours);
    const running = s.round.run(
      (id) => s.out.has(id),
      () => false,
    );
    await s.advertiseAll();
    expect(await running).toMatchObject({ kind: 'too-few', step: 'unmask' });
    expect(s.logs.some((line) => line.includes('SECAGG_THRESHOLD_NOT_MET'))).toBe(true);
  });

  it('refuses bad frames with their codes, and the sum is unchanged', async () => {
    const behaviours = [{ numExamples: 10 }, { numExamples: 30 }, { numExamples: 60 }];
    const s = await setUp(behaviours);
    const running = s.round.run(
      (id) => s.out.has(id),
      () => false,
    );
    const first = s.clients[0] as SecAggClient;
    const advertise = first.advertise();
    const codes: Record<string, string> = {};
    codes['wrong run'] = await codeOf(
      s.round.receive('client-0', { ...s.frame('advertise', advertise), runId: 'other' }),
    );
    codes['wrong round'] = await codeOf(
      s.round.receive('client-0', { ...s.frame('advertise', advertise), round: 2 }),
    );
    codes['outsider'] = await codeOf(s.round.receive('client-9', s.frame('advertise', advertise)));
    codes['short key'] = await codeOf(
      s.round.receive(
        'client-0',
        s.frame('advertise', { ...advertise, maskingPublicKey: new Uint8Array(31) }),
      ),
    );
    codes['first'] = await codeOf(s.round.receive('client-0', s.frame('advertise', advertise)));
    codes['replayed'] = await codeOf(s.round.receive('client-0', s.frame('advertise', advertise)));
    codes['mask too early'] = await codeOf(
      s.round.receive(
        'client-1',
        s.frame('mask', { roundId: s.round.setup.roundId, maskedVector: new Uint8Array(4) }),
      ),
    );
    for (const k of [1, 2]) {
      await s.round.receive(
        `client-${k}`,
        s.frame('advertise', (s.clients[k] as SecAggClient).advertise()),
      );
    }
    const outcome = await running;
    expect(codes).toEqual({
      'wrong run': 'WRONG_RUN',
      'wrong round': 'WRONG_ROUND',
      outsider: 'NOT_SELECTED',
      'short key': 'SECAGG_KEY_INVALID',
      first: 'ok',
      replayed: 'DUPLICATE_UPDATE',
      'mask too early': 'CONFLICT',
    });
    expect(expectSumOf(outcome, [0, 1, 2], behaviours).survivors).toEqual(s.clientIds);
  });
});
