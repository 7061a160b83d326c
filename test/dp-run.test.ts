import type { RoundRecord, RunRecord } from '@tessera/db';
import { Accountant } from '@tessera/privacy';
import { bytesToWeights, PROTOCOL_VERSION, weightsToBytes } from '@tessera/protocol';
import { verifyRun } from '@tessera/research';
import { afterEach, describe, expect, it } from 'vitest';
import { createFederation, type Harness, quickRun, startHarness, waitFor } from './harness.js';
import { closeRawSockets, connectRaw, rawClientInfo, sendWithAck } from './raw-client.js';

/**
 * A dp-fedavg run on a real coordinator with six clients written from docs/protocol.md (they
 * move every weight by a small step and send it back): Poisson sampling at q = 0.5, each
 * round's epsilon as the accountant computes it, and the run ending at its privacy budget.
 */

let harness: Harness | undefined;
afterEach(async () => {
  closeRawSockets();
  await harness?.dispose();
  harness = undefined;
});

const SAMPLING_RATE = 0.5;
const NOISE_MULTIPLIER = 1.2;
const DELTA = 1e-5;
const step = { samplingRate: SAMPLING_RATE, noiseMultiplier: NOISE_MULTIPLIER };
const epsilonAfter = (steps: number) =>
  Accountant.empty().withSteps(step, steps).epsilon(DELTA).epsilon;
// Between epsilon after 2 and after 3 rounds: the budget pays for two rounds, not a third.
const BUDGET = (epsilonAfter(2) + epsilonAfter(3)) / 2;

const dpOptions = {
  noiseMultiplier: NOISE_MULTIPLIER,
  clipNorm: 0.5,
  expectedClientsPerRound: 3,
  samplingRate: SAMPLING_RATE,
  budget: { epsilon: BUDGET, delta: DELTA },
};

async function rawClient(url: string, token: string, sampled: Map<number, number>) {
  const { socket, welcome, error } = await connectRaw(url, {
    token,
    protocolVersion: PROTOCOL_VERSION,
    client: rawClientInfo({ numExamples: 20 }),
  });
  expect(error).toBeUndefined();
  expect(welcome).toBeDefined();
  socket.on('train', ({ runId, round, model, weights }) => {
    sampled.set(round, (sampled.get(round) ?? 0) + 1);
    const next = bytesToWeights(weights, model.paramCount).map((w) => w + 2e-3);
    void sendWithAck(
      socket,
      'update',
      {
        status: 'ok',
        runId,
        round,
        weights: weightsToBytes(next),
        numExamples: 20,
        durationMs: 1,
        metrics: {},
        // A slow ack on a loaded machine must not crash the worker; the round records tell.
      },
      60_000,
    ).catch(() => {});
  });
  socket.on('evaluate', ({ runId, round }) => {
    void sendWithAck(
      socket,
      'evaluation',
      {
        status: 'failed',
        runId,
        round,
        error: { message: 'no held-out data' },
      },
      60_000,
    ).catch(() => {});
  });
}

describe('a dp-fedavg run', () => {
  it('is refused at creation without samplingRate, with keepUpdates, or with a fixed sample size; nothing is stored', async () => {
    harness = await startHarness();
    const h = harness;
    const { federationId } = await createFederation(h, 1);
    const before = await h.db.runs.list();
    const create = (overrides: Record<string, unknown>, options: Record<string, unknown> = {}) =>
      h.api<{ error: { code: string; data?: { field?: string } } }>('POST', '/runs', {
        ...quickRun,
        federationId,
        strategy: 'dp-fedavg',
        strategyOptions: { ...dpOptions, ...options },
        ...overrides,
      });
    const { budget: _budget, samplingRate: _q, ...withoutRate } = dpOptions;
    const cases: Array<
      [
        string,
        Promise<{ status: number; body: { error: { code: string; data?: { field?: string } } } }>,
      ]
    > = [
      [
        'strategyOptions.samplingRate',
        h.api('POST', '/runs', {
          ...quickRun,
          federationId,
          strategy: 'dp-fedavg',
          strategyOptions: withoutRate,
        }),
      ],
      ['keepUpdates', create({ keepUpdates: true })],
      ['clientsPerRound', create({ clientsPerRound: 3 })],
      ['fractionFit', create({ fractionFit: 0.5 })],
    ];
    for (const [field, pending] of cases) {
      const answer = await pending;
      expect(answer.status, field).toBe(400);
      expect(answer.body.error.code, field).toBe('INVALID_ARGUMENT');
      expect(answer.body.error.data?.field, field).toBe(field);
    }
    expect(await h.db.runs.list()).toEqual(before);
  });

  it("records each round's epsilon as the accountant computes it, stops at its budget with the reason, and keeps no update", async () => {
    harness = await startHarness();
    const h = harness;
    const { federationId, tokens } = await createFederation(h, 6);
    const sampled = new Map<number, number>();
    for (const { token } of tokens) await rawClient(h.coordinator.url, token, sampled);
    await waitFor(() => h.coordinator.registry.list().length === 6, 'six clients to connect');

    const created = await h.api<RunRecord>('POST', '/runs', {
      ...quickRun,
      federationId,
      rounds: 10,
      minClients: 1,
      strategy: 'dp-fedavg',
      strategyOptions: dpOptions,
    });
    expect(created.status).toBe(201);
    const runId = created.body.id;
    const finished = new Promise((resolve) => h.coordinator.on('run-finished', resolve));
    expect((await h.api('POST', `/runs/${runId}/start`)).status).toBe(202);
    expect(await finished).toMatchObject({ runId, status: 'completed' });

    // Two rounds paid for, the third refused before anyone was sampled for it.
    const run = await h.api<RunRecord>('GET', `/runs/${runId}`);
    expect(run.body.status).toBe('completed');
    expect(run.body.currentRound).toBe(2);
    expect(run.body.endReason).toBe(
      `privacy budget: epsilon would be ${epsilonAfter(3)} > budget ${BUDGET} (delta ${DELTA}) after round 3`,
    );
    expect(h.logs.some((line) => line.includes('would exceed its privacy budget'))).toBe(true);
    expect(sampled.has(3)).toBe(false);

    const rounds = await h.api<RoundRecord[]>('GET', `/runs/${runId}/rounds`);
    expect(rounds.body.map((round) => round.number)).toEqual([1, 2]);
    const epsilons = rounds.body.map((round) => round.privacy?.['epsilon']);
    expect(epsilons).toEqual([epsilonAfter(1), epsilonAfter(2)]);
    expect(epsilons[1] as number).toBeGreaterThan(epsilons[0] as number);
    expect(epsilons[1] as number).toBeLessThanOrEqual(BUDGET);
    for (const [index, round] of rounds.body.entries()) {
      expect(round.privacy).toMatchObject({
        mechanism: 'sampled-gaussian',
        steps: index + 1,
        delta: DELTA,
        clipNorm: 0.5,
        noiseStd: NOISE_MULTIPLIER * 0.5,
        denominator: 3,
        samplingRate: SAMPLING_RATE,
      });
      // Each client moved every weight by 2e-3: 0.89 in norm over the 2NN's 199,210
      // parameters, so every update was clipped.
      expect(round.privacy?.['clippedCount']).toBe(round.participantClientIds.length);
      // Committed with whatever the Poisson sample brought, none included: its size is not fixed.
      expect(round.selectedClientIds.length).toBe(sampled.get(round.number) ?? 0);
    }

    // No individual update's bytes were kept: only their hashes and counts are recorded.
    expect(run.body.config.keepUpdates).toBe(false);
    for (const round of [1, 2]) {
      await expect(h.db.rounds.updatesWithWeights(runId, round)).rejects.toMatchObject({
        code: 'NOT_FOUND',
      });
    }
    const updates = await h.db.rounds.allUpdates(runId);
    expect(updates.length).toBeGreaterThan(0);
    expect(updates.every((update) => !update.kept)).toBe(true);

    // The export carries the accounting in its own columns.
    const jsonl = await fetch(`${h.coordinator.url}/api/runs/${runId}/export/rounds?format=jsonl`);
    const rows = (await jsonl.text())
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(rows.map((row) => row['dp_epsilon'])).toEqual([epsilonAfter(1), epsilonAfter(2)]);
    expect(rows.map((row) => row['dp_steps'])).toEqual([1, 2]);
    expect(rows[0]).toMatchObject({ dp_delta: DELTA, dp_clip_norm: 0.5, dp_noise_std: 0.6 });

    // Replay says it cannot recompute the noise, and checks the recorded hashes instead.
    const report = await verifyRun(h.db, runId);
    expect(report.identical).toBe(false);
    expect(report.checks).toEqual([]);
    expect(report.unchecked).toMatchObject({ fromRound: 1, cause: 'differential-privacy' });
    expect(report.integrity).toEqual({ checked: 2, mismatched: [] });
  });
});
