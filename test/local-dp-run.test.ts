import type { RoundRecord, RunRecord } from '@tessera/db';
import { l2Norm, localDpGuarantee, localDpNormRange } from '@tessera/privacy';
import { bytesToWeights, PROTOCOL_VERSION, weightsToBytes } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import { createFederation, quickRun, startHarness, waitFor } from './harness.js';
import {
  expectRefusedAtCreation,
  keptContribution,
  spawnKeepingClients,
  useRunCleanup,
} from './kept-contributions.js';
import { ackCode, connectRaw, rawClientInfo, sendWithAck } from './raw-client.js';

/**
 * Local DP in a real run: a real coordinator on port 0, two Node client processes (the built
 * CLI, training MNIST) that clip and noise their changes before sending, and a client written
 * from docs/protocol.md that skips the noise (it only clips): the coordinator refuses its
 * update by its norm, with a code, and commits FedAvg of what the honest clients sent.
 */

const cleanup = useRunCleanup();
const { folders } = cleanup;

const localDp = { clipNorm: 0.5, noiseMultiplier: 0.02, delta: 1e-5 };

/** A client that honours the clip and not the noise: its change has norm <= C. */
async function noiseSkippingClient(url: string, token: string) {
  const { socket, error } = await connectRaw(url, {
    token,
    protocolVersion: PROTOCOL_VERSION,
    client: rawClientInfo({ numExamples: 40 }),
  });
  expect(error).toBeUndefined();
  const acks = new Map<number, string>();
  const settings: unknown[] = [];
  socket.on('train', ({ runId, round, model, weights, strategy }) => {
    settings.push(strategy);
    // A change of norm 0.4 (inside C = 0.5): clipped, never noised.
    const step = 0.4 / Math.sqrt(model.paramCount);
    const next = bytesToWeights(weights, model.paramCount).map((w) => w + step);
    void sendWithAck(
      socket,
      'update',
      {
        status: 'ok',
        runId,
        round,
        weights: weightsToBytes(next),
        numExamples: 40,
        durationMs: 1,
        metrics: {},
      },
      120_000,
    )
      .then((ack) => acks.set(round, ackCode(ack)))
      .catch(() => acks.set(round, 'no ack'));
  });
  socket.on('evaluate', ({ runId, round }) => {
    void sendWithAck(socket, 'evaluation', {
      status: 'failed',
      runId,
      round,
      error: { message: 'no held-out data' },
    }).catch(() => {});
  });
  return { acks, settings };
}

describe('a local-DP run', () => {
  it('is refused at creation with secure aggregation, with scaffold, or with bad settings; nothing is stored', async () => {
    const h = cleanup.set(await startHarness());
    const { federationId } = await createFederation(h, 1);
    await expectRefusedAtCreation(h, { ...quickRun, federationId }, [
      [
        'localDp',
        { localDp, minClients: 2, secureAggregation: { clipRange: 1 } },
        /not built under secure aggregation/,
      ],
      ['localDp', { localDp, strategy: 'scaffold' }, /control-variate change/],
      ['localDp.clipNorm', { localDp: { ...localDp, clipNorm: 0 } }, /above 0/],
      ['localDp.noiseMultiplier', { localDp: { ...localDp, noiseMultiplier: -1 } }, /from 0/],
      ['localDp.delta', { localDp: { ...localDp, delta: 1 } }, /below 1/],
      ['localDp', { localDp: { ...localDp, sigma: 1 } }, /unrecognized|sigma/i],
    ]);
    const created = await h.api<RunRecord>('POST', '/runs', {
      ...quickRun,
      federationId,
      localDp: { clipNorm: 1, noiseMultiplier: 0.5 },
    });
    expect(created.status).toBe(201);
    const run = await h.api<RunRecord>('GET', `/runs/${created.body.id}`);
    expect(run.body.config.localDp).toEqual({ clipNorm: 1, noiseMultiplier: 0.5, delta: 1e-5 });
  });

  it('commits FedAvg of the Node clients’ clipped, noised updates, refuses the client that skipped the noise, and records the guarantee', async () => {
    const h = cleanup.set(await startHarness());
    const { federationId, tokens } = await createFederation(h, 3);
    const { root, dirs: nodeDirs } = spawnKeepingClients(
      h,
      [tokens[0]?.token as string, tokens[1]?.token as string],
      3,
    );
    folders.push(root);
    const skipper = await noiseSkippingClient(h.coordinator.url, tokens[2]?.token as string);
    await waitFor(() => h.coordinator.registry.list().length === 3, 'three clients', 120_000);

    const rounds = 2;
    const created = await h.api<RunRecord>('POST', '/runs', {
      ...quickRun,
      federationId,
      rounds,
      clientsPerRound: 3,
      minClients: 2,
      roundDeadlineMs: 240_000,
      localDp,
    });
    expect(created.status).toBe(201);
    const runId = created.body.id;
    const finished = new Promise((resolve) => h.coordinator.on('run-finished', resolve));
    expect((await h.api('POST', `/runs/${runId}/start`)).status).toBe(202);
    expect(await finished).toMatchObject({ runId, status: 'completed' });

    // The instruction carried the settings under the strategy's name.
    expect(skipper.settings[0]).toEqual({
      name: 'fedavg',
      settings: { localClipNorm: 0.5, localNoiseMultiplier: 0.02 },
    });
    const records = (await h.api<RoundRecord[]>('GET', `/runs/${runId}/rounds`)).body;
    expect(records).toHaveLength(rounds);
    const nodeIds = [tokens[0]?.client.id, tokens[1]?.client.id].sort();
    const skipperId = tokens[2]?.client.id;
    for (const record of records) {
      const round = record.number;
      expect(skipper.acks.get(round)).toBe('LOCAL_DP_NORM_OUT_OF_RANGE');
      const outcome = record.outcomes.find((o) => o.clientId === skipperId);
      expect(outcome).toMatchObject({ outcome: 'rejected', code: 'LOCAL_DP_NORM_OUT_OF_RANGE' });
      expect(record.metrics['rejected']).toBe(1);
      expect([...record.participantClientIds].sort()).toEqual(nodeIds);
      const guarantee = localDpGuarantee(localDp, round, localDp.delta);
      expect(record.privacy).toEqual({
        localMechanism: 'local-gaussian',
        localClipNorm: 0.5,
        localNoiseMultiplier: 0.02,
        localNoiseStd: 0.01,
        localAdjacency: 'replace-one-client',
        localEpsilonPerRound: guarantee.epsilonPerRound,
        localEpsilon: guarantee.epsilon,
        localDelta: 1e-5,
        localNormRefused: 1,
        localFalseRejection: 1e-9,
      });

      // What each Node client sent: a change whose norm is where clip + noise put it.
      const sent = nodeDirs.map((dir) => keptContribution(dir, runId, round));
      const global = sent[0]?.global as Float32Array;
      const range = localDpNormRange(localDp, global.length);
      for (const { weights, global: theirs } of sent) {
        expect(theirs).toEqual(global);
        const norm = l2Norm(Float64Array.from(weights, (w, i) => w - (global[i] as number)));
        expect(norm).toBeGreaterThan(range.min);
        expect(norm).toBeLessThan(range.max);
      }
      // The round's model is FedAvg of exactly those two updates: the refused one left no trace.
      const total = sent.reduce((n, s) => n + s.numExamples, 0);
      const committed = bytesToWeights(
        (await h.db.rounds.checkpoint(runId, round)).weights,
        global.length,
      );
      let worst = 0;
      for (let i = 0; i < global.length; i++) {
        let mean = 0;
        for (const s of sent) mean += ((s.weights[i] as number) * s.numExamples) / total;
        worst = Math.max(worst, Math.abs((committed[i] as number) - mean));
      }
      expect(worst).toBeLessThan(1e-6);
    }
    // Epsilon composes over the rounds.
    expect(records[1]?.privacy?.['localEpsilon'] as number).toBeGreaterThan(
      records[0]?.privacy?.['localEpsilon'] as number,
    );
  }, 400_000);
});
