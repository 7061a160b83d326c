import type { RoundRecord, RunRecord } from '@tessera/db';
import { Accountant } from '@tessera/privacy';
import { bytesToWeights } from '@tessera/protocol';
import { verifyRun } from '@tessera/research';
import { describe, expect, it } from 'vitest';
import { createFederation, type Harness, quickRun, startHarness, waitFor } from './harness.js';
import {
  expectRefusedAtCreation,
  keptContribution,
  spawnKeepingClients,
  useRunCleanup,
} from './kept-contributions.js';
import { patternChange, scriptedSecAggClient } from './secagg-clients.js';

/**
 * Central DP on the secure sum in real runs: dp-fedavg under secure aggregation, with Node
 * client processes (the built CLI, training MNIST, clipping their change to C) beside scripted
 * SecAgg clients whose clipped changes the test chose. The coordinator unmasks the exact sum,
 * adds N(0, sigma^2 S^2) (S the sensitivity, C plus the encoding's share) from its CSPRNG and divides by m; the test checks the committed model
 * minus the noise-free result against that distribution.
 */

const cleanup = useRunCleanup();
const { folders } = cleanup;

const CLIP_NORM = 0.5;
const NOISE_MULTIPLIER = 0.05;
const DELTA = 1e-5;
const secureAggregation = { clipRange: 0.5, thresholdFraction: 0.6, stepDeadlineMs: 60_000 };
const dpOptions = (m: number) => ({
  noiseMultiplier: NOISE_MULTIPLIER,
  clipNorm: CLIP_NORM,
  expectedClientsPerRound: m,
  // Every connected client in every round: the sample is known, so the test knows the sum.
  samplingRate: 1,
  delta: DELTA,
});
const epsilonAfter = (steps: number, samplingRate = 1) =>
  Accountant.empty()
    .withSteps({ samplingRate, noiseMultiplier: NOISE_MULTIPLIER }, steps)
    .epsilon(DELTA).epsilon;

/** The change a Node client masked (kept with --keep-contributions), in float32 as it took it. */
function keptChange(dir: string, runId: string, round: number): Float64Array {
  const { global, weights } = keptContribution(dir, runId, round);
  return Float64Array.from(Float32Array.from(weights, (w, i) => w - (global[i] as number)));
}

/**
 * The residual r = committed - noise-free, which must be N(0, s^2) per coordinate with
 * s = sigma C / m, independent across the d coordinates. Checked: |mean| <= 6 s / sqrt(d)
 * (false failure 2e-9) and the sample variance within 5% of s^2 (its relative std is
 * sqrt(2 / d) = 0.32% at d = 199,210: 15 standard deviations, false failure below 1e-50).
 * The quantisation and float32 rounding (< 1e-7 per coordinate) are far below s.
 */
function expectGaussianResidual(residual: Float64Array, s: number): void {
  const d = residual.length;
  let sum = 0;
  for (const r of residual) sum += r;
  const mean = sum / d;
  let squares = 0;
  for (const r of residual) squares += (r - mean) ** 2;
  const variance = squares / (d - 1);
  expect(Math.abs(mean)).toBeLessThanOrEqual((6 * s) / Math.sqrt(d));
  expect(variance / s ** 2).toBeGreaterThan(0.95);
  expect(variance / s ** 2).toBeLessThan(1.05);
}

async function committed(h: Harness, runId: string, round: number, d: number) {
  return bytesToWeights((await h.db.rounds.checkpoint(runId, round)).weights, d);
}

describe('dp-fedavg under secure aggregation', () => {
  it('is created with fixed clipping inside the clip range, and refused otherwise with the reason; nothing is stored', async () => {
    const h = cleanup.set(await startHarness());
    const { federationId } = await createFederation(h, 1);
    const base = {
      ...quickRun,
      federationId,
      minClients: 2,
      strategy: 'dp-fedavg',
      secureAggregation,
    };
    await expectRefusedAtCreation(h, base, [
      [
        'secureAggregation.clipRange',
        { strategyOptions: { ...dpOptions(2), clipNorm: 0.8 } },
        /must cover dp-fedavg's clipNorm 0\.8/,
      ],
      [
        'strategyOptions.adaptive',
        {
          strategyOptions: {
            ...dpOptions(2),
            clipNorm: undefined,
            adaptive: { countNoiseMultiplier: 1 },
          },
        },
        /fixed clipNorm/,
      ],
    ]);
    const created = await h.api<RunRecord>('POST', '/runs', {
      ...base,
      strategyOptions: dpOptions(2),
    });
    expect(created.status).toBe(201);
  });

  it('commits the unmasked sum of clipped changes plus N(0, sigma^2 C^2), over m, with a dropout after masking; epsilon per round; both mechanisms recorded', async () => {
    const h = cleanup.set(await startHarness());
    const { federationId, tokens } = await createFederation(h, 4);
    const { root, dirs: nodeDirs } = spawnKeepingClients(
      h,
      [tokens[0]?.token as string, tokens[1]?.token as string],
      4,
    );
    folders.push(root);
    // Changes of norm ~0.32, inside C: weighed 1 each, as every client under dp-fedavg.
    const stayingChange = patternChange(1, 0.001);
    const droppingChange = patternChange(2, 0.001);
    const staying = await scriptedSecAggClient(h.coordinator.url, tokens[2]?.token as string, {
      numExamples: 1,
      change: stayingChange,
    });
    const dropping = await scriptedSecAggClient(h.coordinator.url, tokens[3]?.token as string, {
      numExamples: 1,
      change: droppingChange,
      dropAfterMasking: true,
    });
    await waitFor(() => h.coordinator.registry.list().length === 4, 'four clients', 120_000);

    const m = 4;
    const created = await h.api<RunRecord>('POST', '/runs', {
      ...quickRun,
      federationId,
      rounds: 2,
      minClients: 2,
      roundDeadlineMs: 240_000,
      strategy: 'dp-fedavg',
      strategyOptions: dpOptions(m),
      secureAggregation,
    });
    expect(created.status).toBe(201);
    const runId = created.body.id;
    const finished = new Promise((resolve) => h.coordinator.on('run-finished', resolve));
    expect((await h.api('POST', `/runs/${runId}/start`)).status).toBe(202);
    expect(await finished).toMatchObject({ runId, status: 'completed' });

    const records = (await h.api<RoundRecord[]>('GET', `/runs/${runId}/rounds`)).body;
    expect(records.map((r) => r.number)).toEqual([1, 2]);
    const nodeIds = [tokens[0]?.client.id, tokens[1]?.client.id];
    for (const record of records) {
      const round = record.number;
      // Round 1: all four, the dropout's masked input included; round 2: it has left.
      const survivors = round === 1 ? 4 : 3;
      expect(record.participantClientIds).toHaveLength(survivors);
      expect(record.privacy).toMatchObject({
        mechanism: 'sampled-gaussian+secure-aggregation',
        secureAggregation: 'secagg-bonawitz2017-v1',
        unmasked: true,
        u3: survivors,
        droppedAfterMasking: round === 1 ? 1 : 0,
        maxExamplesPerClient: 1,
        clipRange: 0.5,
        clipping: 'client',
        clippedCount: null,
        clipNorm: CLIP_NORM,
        denominator: m,
        samplingRate: 1,
        steps: round,
        delta: DELTA,
      });
      expect(record.privacy?.['epsilon']).toBeCloseTo(epsilonAfter(round), 9);
      expect(record.privacy?.['transcriptHash']).toMatch(/^[0-9a-f]{64}$/);
      // The sensitivity the noise covers: C and the fixed-point encoding's share, just above C.
      const sensitivity = record.privacy?.['sensitivity'] as number;
      expect(sensitivity).toBeGreaterThan(CLIP_NORM);
      expect(sensitivity).toBeLessThan(CLIP_NORM * 1.001);
      // The noise is scaled to it, so the accountant's z is the noise's std over the sensitivity.
      expect(record.privacy?.['noiseStd']).toBeCloseTo(NOISE_MULTIPLIER * sensitivity, 12);

      const global = staying.globals.get(round) as Float32Array;
      const d = global.length;
      const changes = [
        ...nodeDirs.map((dir) => keptChange(dir, runId, round)),
        Float64Array.from(stayingChange(d)),
        ...(round === 1 ? [Float64Array.from(droppingChange(d))] : []),
      ];
      // Every change that went in had norm <= C (the Node clients clipped theirs).
      for (const change of changes) {
        let squared = 0;
        for (const c of change) squared += c * c;
        expect(Math.sqrt(squared)).toBeLessThanOrEqual(CLIP_NORM);
      }
      const model = await committed(h, runId, round, d);
      const residual = new Float64Array(d);
      for (let i = 0; i < d; i++) {
        let sum = 0;
        for (const change of changes) sum += change[i] as number;
        residual[i] = (model[i] as number) - ((global[i] as number) + sum / m);
      }
      expectGaussianResidual(residual, (NOISE_MULTIPLIER * CLIP_NORM) / m);
    }
    expect(nodeIds.every((id) => records[1]?.participantClientIds.includes(id as string))).toBe(
      true,
    );
    expect([...staying.errors, ...dropping.errors]).toEqual([]);
    // Nothing individual is kept; replay states both causes and checks the hashes.
    expect(await h.db.rounds.updates(runId, 1)).toEqual([]);
    const report = await verifyRun(h.db, runId);
    expect(report.checks).toEqual([]);
    expect(report.unchecked).toMatchObject({ fromRound: 1, cause: 'differential-privacy' });
    expect(report.unchecked?.reason).toMatch(/two causes.*noise.*aggregated securely/);
    expect(report.integrity).toEqual({ checked: 2, mismatched: [] });
  }, 500_000);

  it('never retries: a round that cannot unmask, and samples below the minimum, release the noise alone and count a step', async () => {
    const h = cleanup.set(await startHarness());
    const m = 3;
    const s = (NOISE_MULTIPLIER * CLIP_NORM) / m;
    const startRun = async (federationId: string, rounds: number, samplingRate: number) => {
      const created = await h.api<RunRecord>('POST', '/runs', {
        ...quickRun,
        federationId,
        rounds,
        minClients: 2,
        strategy: 'dp-fedavg',
        strategyOptions: { ...dpOptions(m), samplingRate },
        secureAggregation: { ...secureAggregation, stepDeadlineMs: 20_000 },
      });
      expect(created.status).toBe(201);
      const runId = created.body.id;
      const started: number[] = [];
      const onStarted = (event: { runId: string; round: number }) => {
        if (event.runId === runId) started.push(event.round);
      };
      h.coordinator.on('round-started', onStarted);
      const finished = new Promise((resolve) => h.coordinator.on('run-finished', resolve));
      expect((await h.api('POST', `/runs/${runId}/start`)).status).toBe(202);
      expect(await finished).toMatchObject({ runId, status: 'completed' });
      h.coordinator.off('round-started', onStarted);
      const records = (await h.api<RoundRecord[]>('GET', `/runs/${runId}/rounds`)).body;
      return { runId, started, records };
    };

    // Two of three drop after masking: one unmask response, below the threshold of 2.
    const failing = await createFederation(h, 3);
    const clients = await Promise.all(
      [false, true, true].map((dropAfterMasking, k) =>
        scriptedSecAggClient(h.coordinator.url, failing.tokens[k]?.token as string, {
          numExamples: 1,
          change: patternChange(k + 1, 0.001),
          dropAfterMasking,
        }),
      ),
    );
    await waitFor(() => h.coordinator.registry.list().length === 3, 'three clients');
    const unmaskFails = await startRun(failing.federationId, 1, 1);
    // One attempt: nothing re-drawn.
    expect(unmaskFails.started).toEqual([1]);
    const [failed] = unmaskFails.records;
    expect(failed?.participantClientIds).toEqual([]);
    expect(failed?.privacy).toMatchObject({
      mechanism: 'sampled-gaussian+secure-aggregation',
      unmasked: false,
      endedAtStep: 'unmask',
      selected: 3,
      threshold: 2,
      steps: 1,
      clipping: 'client',
    });
    expect(failed?.privacy?.['epsilon']).toBeCloseTo(epsilonAfter(1), 9);
    const global = clients[0]?.globals.get(1) as Float32Array;
    const model = await committed(h, unmaskFails.runId, 1, global.length);
    // g + N(0, sigma^2 C^2) / m: the noised zero sum.
    expectGaussianResidual(
      Float64Array.from(model, (w, i) => w - (global[i] as number)),
      s,
    );

    // q = 0.001 over two clients: both are sampled with probability 1e-6 a round (the test's
    // false failure, 2e-6 over two rounds); otherwise the sample is below minClients, no one
    // trains, and the round releases the noise alone.
    const sparse = await createFederation(h, 2);
    const idle = await Promise.all(
      [1, 2].map((k) =>
        scriptedSecAggClient(h.coordinator.url, sparse.tokens[k - 1]?.token as string, {
          numExamples: 1,
          change: patternChange(k, 0.001),
        }),
      ),
    );
    await waitFor(() => h.coordinator.registry.list().length >= 3, 'two more clients');
    const belowMinimum = await startRun(sparse.federationId, 2, 0.001);
    expect(belowMinimum.started).toEqual([1, 2]);
    for (const record of belowMinimum.records) {
      expect(record.selectedClientIds).toEqual([]);
      expect(record.privacy).toMatchObject({ unmasked: false, steps: record.number });
      expect(record.privacy?.['sampled']).toBeLessThan(2);
      expect(record.privacy?.['epsilon']).toBeCloseTo(epsilonAfter(record.number, 0.001), 9);
      expect(record.privacy?.['noise']).toBeUndefined();
    }
    // No train instruction went out: nobody trained in a round below the minimum.
    for (const client of idle) expect(client.globals.size).toBe(0);
    const first = await committed(h, belowMinimum.runId, 1, global.length);
    const second = await committed(h, belowMinimum.runId, 2, global.length);
    expectGaussianResidual(
      Float64Array.from(second, (w, i) => w - (first[i] as number)),
      s,
    );
  }, 300_000);
});
