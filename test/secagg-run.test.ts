import type { RoundRecord, RunRecord } from '@tessera/db';
import { bytesToWeights } from '@tessera/protocol';
import { verifyRun } from '@tessera/research';
import { describe, expect, it } from 'vitest';
import { createFederation, type Harness, quickRun, startHarness, waitFor } from './harness.js';
import { keptContribution, spawnKeepingClients, useRunCleanup } from './kept-contributions.js';
import {
  fedAvgOfChanges,
  maxAbsDifference,
  patternChange,
  type ScriptedStep,
  scriptedSecAggClient,
} from './secagg-clients.js';

/**
 * Secure aggregation in real runs: a real coordinator on port 0, real Node client processes
 * (the built CLI, training MNIST) beside scripted SecAgg clients whose contributions the test
 * chose; the committed model is compared with plain FedAvg of what every client of U3 sent.
 */

const cleanup = useRunCleanup();
const { folders } = cleanup;

const secureAggregation = {
  clipRange: 0.5,
  maxExamplesPerClient: 1000,
  thresholdFraction: 0.6,
  stepDeadlineMs: 60_000,
};

async function committedWeights(h: Harness, runId: string, round: number, paramCount: number) {
  return bytesToWeights((await h.db.rounds.checkpoint(runId, round)).weights, paramCount);
}

describe('a secure-aggregation run', () => {
  it('is refused at creation for strategies that need individual updates, with keepUpdates, or with one client a round; nothing is stored', async () => {
    const h = cleanup.set(await startHarness());
    const { federationId } = await createFederation(h, 1);
    const before = await h.db.runs.list();
    const create = (overrides: Record<string, unknown>) =>
      h.api<{ error: { code: string; message: string; data?: { field?: string } } }>(
        'POST',
        '/runs',
        { ...quickRun, federationId, minClients: 2, secureAggregation, ...overrides },
      );
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['secureAggregation', { strategy: 'fedmedian' }, /median needs the individual updates/],
      ['secureAggregation', { strategy: 'krum', minClients: 5 }, /Krum.*individual updates/],
      ['secureAggregation', { strategy: 'trimmed-mean' }, /trimmed mean needs/],
      ['secureAggregation', { strategy: 'bulyan', minClients: 7 }, /Bulyan/],
      ['secureAggregation', { strategy: 'centered-clipping' }, /centered clipping/],
      ['keepUpdates', { keepUpdates: true }, /cannot keep them for replay/],
      ['minClients', { minClients: 1 }, /at least 2 clients/],
      ['clientsPerRound', { clientsPerRound: 256 }, /at most 255/],
      [
        'secureAggregation.thresholdFraction',
        { secureAggregation: { thresholdFraction: 0.5 } },
        /above 0\.5/,
      ],
    ];
    for (const [field, overrides, reason] of cases) {
      const answer = await create(overrides);
      expect(answer.status, field).toBe(400);
      expect(answer.body.error.code, field).toBe('INVALID_ARGUMENT');
      expect(answer.body.error.data?.field, field).toBe(field);
      expect(answer.body.error.message, field).toMatch(reason);
    }
    expect(await h.db.runs.list()).toEqual(before);
    // The linear rules are taken, the settings stored with their defaults.
    const created = await create({ strategy: 'fedadam', secureAggregation: { clipRange: 0.2 } });
    expect(created.status).toBe(201);
    const run = await h.api<RunRecord>('GET', `/runs/${(created.body as unknown as RunRecord).id}`);
    expect(run.body.config.secureAggregation).toEqual({
      clipRange: 0.2,
      maxExamplesPerClient: 10_000,
      thresholdFraction: 2 / 3,
      stepDeadlineMs: 30_000,
    });
  });

  it('commits plain FedAvg of the masked changes of Node client processes and scripted clients, one dropping after masking; no update is kept', async () => {
    const h = cleanup.set(await startHarness());
    const { federationId, tokens } = await createFederation(h, 4);
    const { root, dirs: nodeDirs } = spawnKeepingClients(
      h,
      [tokens[0]?.token as string, tokens[1]?.token as string],
      4,
    );
    folders.push(root);
    const staying = await scriptedSecAggClient(h.coordinator.url, tokens[2]?.token as string, {
      numExamples: 50,
      change: patternChange(1),
    });
    const dropping = await scriptedSecAggClient(h.coordinator.url, tokens[3]?.token as string, {
      numExamples: 80,
      change: patternChange(2),
      dropAfterMasking: true,
    });
    await waitFor(() => h.coordinator.registry.list().length === 4, 'four clients', 120_000);

    const created = await h.api<RunRecord>('POST', '/runs', {
      ...quickRun,
      federationId,
      rounds: 1,
      clientsPerRound: 4,
      minClients: 3,
      roundDeadlineMs: 240_000,
      secureAggregation,
    });
    expect(created.status).toBe(201);
    const runId = created.body.id;
    const finished = new Promise((resolve) => h.coordinator.on('run-finished', resolve));
    expect((await h.api('POST', `/runs/${runId}/start`)).status).toBe(202);
    expect(await finished).toMatchObject({ runId, status: 'completed' });

    const [round] = (await h.api<RoundRecord[]>('GET', `/runs/${runId}/rounds`)).body;
    if (round === undefined) throw new Error('no round recorded');
    // U3 has all four: the client that dropped after masking counts, its self-mask rebuilt.
    expect([...round.participantClientIds].sort()).toEqual(tokens.map((t) => t.client.id).sort());
    // Its update counts: 'updated', though it left before the round ended.
    expect(round.outcomes.find((o) => o.clientId === dropping.clientId)?.outcome).toBe('updated');
    expect(round.droppedClientIds).toEqual([]);
    expect(round.privacy).toMatchObject({
      mechanism: 'secure-aggregation',
      protocol: 'secagg-bonawitz2017-v1',
      selected: 4,
      threshold: 3,
      u1: 4,
      u2: 4,
      u3: 4,
      droppedAfterMasking: 1,
      clipRange: 0.5,
      maxExamplesPerClient: 1000,
      clipping: 'client',
    });
    expect(round.privacy?.['transcriptHash']).toMatch(/^[0-9a-f]{64}$/);
    expect(dropping.acks).toEqual(['ok', 'ok', 'ok']);
    expect(staying.acks).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect([...staying.errors, ...dropping.errors]).toEqual([]);

    const global = staying.globals.get(1) as Float32Array;
    const fromNodeClients = nodeDirs.map((dir) => keptContribution(dir, runId, 1));
    // Each Node client trained from the same global model the scripted ones were sent.
    for (const { global: theirs } of fromNodeClients) {
      expect(maxAbsDifference(theirs, global)).toBe(0);
    }
    const contributions = [
      ...fromNodeClients,
      { change: patternChange(1)(global.length), numExamples: 50 },
      { change: patternChange(2)(global.length), numExamples: 80 },
    ];
    const expected = fedAvgOfChanges(global, contributions, secureAggregation.clipRange);
    const committed = await committedWeights(h, runId, 1, global.length);
    const maxAbsError = round.privacy?.['maxAbsError'] as number;
    expect(maxAbsError).toBeGreaterThan(0);
    expect(maxAbsError).toBeLessThan(1e-6);
    // The quantisation bound, and float32 rounding of global + mean change.
    expect(maxAbsDifference(committed, expected)).toBeLessThanOrEqual(maxAbsError + 2e-7);
    // Not trivially equal: the round moved the model by more than the tolerance.
    expect(maxAbsDifference(committed, global)).toBeGreaterThan(1e-3);
    // The dropout's contribution is in it: without it the result is measurably different.
    const withoutDropout = fedAvgOfChanges(global, contributions.slice(0, 3), 0.5);
    expect(maxAbsDifference(committed, withoutDropout)).toBeGreaterThan(1e-4);

    // Nothing individual is recorded: no update rows, no bytes.
    expect(await h.db.rounds.updates(runId, 1)).toEqual([]);
    // Replay says why it cannot recompute the sum, and checks the aggregate's hash.
    const report = await verifyRun(h.db, runId);
    expect(report.checks).toEqual([]);
    expect(report.unchecked).toMatchObject({ fromRound: 1, cause: 'secure-aggregation' });
    expect(report.integrity).toEqual({ checked: 1, mismatched: [] });
  }, 400_000);

  it('refuses bad input with a code and still commits the right sum: wrong lengths, a sender outside the round, replays, keys that do not verify', async () => {
    const h = cleanup.set(await startHarness());
    const { federationId, tokens } = await createFederation(h, 3);
    // A client of another federation: outside the round, whatever it claims.
    const elsewhere = await createFederation(h, 1);
    const outsider = await scriptedSecAggClient(
      h.coordinator.url,
      elsewhere.tokens[0]?.token as string,
      { numExamples: 10, change: patternChange(9) },
    );
    const refusals = new Map<string, string>();
    const accepted = new Map<ScriptedStep, unknown>();
    const probe = async (
      what: string,
      send: (frame: unknown) => Promise<{ ok: boolean; error?: { code: string } }>,
      frame: unknown,
    ) => {
      const ack = await send(frame);
      refusals.set(what, ack.ok ? 'ok' : (ack.error?.code ?? '?'));
    };
    const attacker = await scriptedSecAggClient(h.coordinator.url, tokens[0]?.token as string, {
      numExamples: 30,
      change: patternChange(3),
      before: async (step: ScriptedStep, real, send) => {
        const message = real.message as Record<string, unknown>;
        // Replays: the previous step's message, already accepted, sent again.
        const previous = { share: 'advertise', mask: 'share', unmask: 'mask' } as const;
        if (step !== 'advertise') {
          await probe(`replayed ${previous[step]}`, send, accepted.get(previous[step]));
        }
        accepted.set(step, real);
        if (step === 'advertise') {
          // A small-order X25519 point (all zeros) does not verify as a key.
          await probe('zero key', send, {
            ...real,
            message: { ...message, maskingPublicKey: new Uint8Array(32) },
          });
          await probe('short key', send, {
            ...real,
            message: { ...message, encryptionPublicKey: new Uint8Array(31).fill(9) },
          });
        } else if (step === 'share') {
          await probe(
            'outsider',
            (frame) =>
              outsider.socket.timeout(10_000).emitWithAck('secagg', frame as never) as never,
            {
              runId: real.runId,
              round: real.round,
              step: 'advertise',
              message: {
                roundId: message['roundId'],
                encryptionPublicKey: new Uint8Array(32).fill(5),
                maskingPublicKey: new Uint8Array(32).fill(6),
              },
            },
          );
          const shares = message['encryptedShares'] as { to: string; ciphertext: Uint8Array }[];
          await probe('short ciphertext', send, {
            ...real,
            message: {
              ...message,
              encryptedShares: shares.map((s, i) =>
                i === 0 ? { ...s, ciphertext: s.ciphertext.subarray(0, 93) } : s,
              ),
            },
          });
        } else if (step === 'mask') {
          const vector = message['maskedVector'] as Uint8Array;
          await probe('short vector', send, {
            ...real,
            message: { ...message, maskedVector: vector.subarray(0, vector.length - 4) },
          });
          await probe('long vector', send, {
            ...real,
            message: { ...message, maskedVector: new Uint8Array(vector.length + 4) },
          });
          await probe('other round', send, { ...real, message: { ...message, roundId: 'x/1/1' } });
        } else {
          const shares = message['selfMaskShares'] as { of: string; share: Uint8Array }[];
          await probe('short share', send, {
            ...real,
            message: {
              ...message,
              selfMaskShares: shares.map((s, i) =>
                i === 0 ? { ...s, share: s.share.subarray(0, 32) } : s,
              ),
            },
          });
        }
      },
    });
    const honest = [1, 2].map((k) =>
      scriptedSecAggClient(h.coordinator.url, tokens[k]?.token as string, {
        numExamples: 20 * k,
        change: patternChange(3 + k),
      }),
    );
    const [first, second] = await Promise.all(honest);
    await waitFor(() => h.coordinator.registry.list().length === 4, 'four clients');

    const created = await h.api<RunRecord>('POST', '/runs', {
      ...quickRun,
      federationId,
      rounds: 1,
      clientsPerRound: 3,
      minClients: 3,
      secureAggregation,
    });
    const runId = created.body.id;
    const finished = new Promise((resolve) => h.coordinator.on('run-finished', resolve));
    expect((await h.api('POST', `/runs/${runId}/start`)).status).toBe(202);
    expect(await finished).toMatchObject({ runId, status: 'completed' });

    expect(Object.fromEntries(refusals)).toEqual({
      outsider: 'NOT_SELECTED',
      'replayed advertise': 'DUPLICATE_UPDATE',
      'replayed share': 'DUPLICATE_UPDATE',
      'replayed mask': 'DUPLICATE_UPDATE',
      'zero key': 'SECAGG_KEY_INVALID',
      'short key': 'SECAGG_KEY_INVALID',
      'short ciphertext': 'MALFORMED_FRAME',
      'short vector': 'WEIGHTS_LENGTH_MISMATCH',
      'long vector': 'WEIGHTS_LENGTH_MISMATCH',
      'other round': 'WRONG_ROUND',
      'short share': 'MALFORMED_FRAME',
    });
    // After its bad frames, each real one was taken.
    expect(attacker.acks).toEqual(['ok', 'ok', 'ok', 'ok']);

    const [round] = (await h.api<RoundRecord[]>('GET', `/runs/${runId}/rounds`)).body;
    expect(round?.privacy).toMatchObject({ u1: 3, u2: 3, u3: 3 });
    const global = first?.globals.get(1) as Float32Array;
    const expected = fedAvgOfChanges(
      global,
      [
        { change: patternChange(3)(global.length), numExamples: 30 },
        { change: patternChange(4)(global.length), numExamples: 20 },
        { change: patternChange(5)(global.length), numExamples: 40 },
      ],
      secureAggregation.clipRange,
    );
    const committed = await committedWeights(h, runId, 1, global.length);
    expect(maxAbsDifference(committed, expected)).toBeLessThanOrEqual(
      (round?.privacy?.['maxAbsError'] as number) + 2e-7,
    );
    expect(second?.acks).toEqual(['ok', 'ok', 'ok', 'ok']);
  }, 300_000);
});
