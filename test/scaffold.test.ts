import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeStrategyState } from '@tessera/aggregation';
import {
  bytesToWeights,
  ErrorCode,
  PROTOCOL_VERSION,
  type TrainInstruction,
  weightsToBytes,
} from '@tessera/protocol';
import { counterfactualReplay, verifyRun } from '@tessera/research';
import { afterEach, describe, expect, it } from 'vitest';
import { createFederation, type Harness, quickRun, startHarness, waitFor } from './harness.js';
import { closeRawSockets, openRawSocket, rawClientInfo } from './raw-client.js';

/**
 * SCAFFOLD end to end (Karimireddy et al. 2020, option II): the train instruction carries the
 * server's control variate c (docs/protocol.md §5.2), real Node clients correct their steps by
 * c − c_i, reply with Δc_i and keep c_i in their --state-dir, and the coordinator folds Δc_i into
 * the c it commits with each round. Under full participation with N = |S|, c stays the mean of
 * the clients' c_i, which the test checks against the clients' own files.
 */

let harness: Harness | undefined;
const dirs: string[] = [];
afterEach(async () => {
  closeRawSockets();
  await harness?.dispose();
  harness = undefined;
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const mnistArgs = (k: number, n: number) => ['--mnist', `${k}/${n}`, '--max-examples', '400'];

function readFloat32File(file: string): Float32Array {
  const bytes = readFileSync(file);
  return bytesToWeights(
    new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength),
    bytes.length / 4,
  );
}

describe('a SCAFFOLD run', () => {
  it('sends c with every round; c after round r is the committed state; c stays the mean of the clients’ c_i', async () => {
    harness = await startHarness();
    const h = harness;
    const { federationId, tokens } = await createFederation(h, 3);
    const stateDirs = [0, 1].map(() => {
      const dir = mkdtempSync(join(tmpdir(), 'tessera-scaffold-client-'));
      dirs.push(dir);
      return dir;
    });
    for (const k of [0, 1]) {
      h.spawnClient(tokens[k]?.token as string, [
        ...mnistArgs(k, 2),
        '--state-dir',
        stateDirs[k] as string,
      ]);
    }
    // The third member reads the instructions off the wire and answers as a SCAFFOLD client
    // that did not move (y = x): Δc_i = c_i⁺ − c_i = −c, which it keeps track of itself.
    const observer = openRawSocket(h.coordinator.url, {
      token: tokens[2]?.token,
      protocolVersion: PROTOCOL_VERSION,
      client: rawClientInfo({ numHoldout: 0 }),
    });
    const seen: TrainInstruction[] = [];
    let observerControl: Float32Array | null = null;
    observer.on('train', (instruction) => {
      seen.push(instruction);
      const { paramCount } = instruction.model;
      const c = bytesToWeights(instruction.controlVariate as Uint8Array, paramCount);
      const before = observerControl ?? new Float32Array(paramCount);
      observerControl = Float32Array.from(before, (ci, i) => ci - (c[i] as number));
      observer.emit('update', {
        status: 'ok',
        runId: instruction.runId,
        round: instruction.round,
        weights: instruction.weights,
        numExamples: 1,
        durationMs: 0,
        metrics: {},
        controlDelta: weightsToBytes(Float32Array.from(c, (value) => -value)),
      });
    });
    await waitFor(() => h.coordinator.registry.list().length === 3, 'three clients to connect');

    const run = await h.api<{ id: string }>('POST', '/runs', {
      ...quickRun,
      rounds: 3,
      federationId,
      clientsPerRound: 3,
      minClients: 3,
      strategy: 'scaffold',
      strategyOptions: { clientCount: 3 },
    });
    expect(run.status, JSON.stringify(run.body)).toBe(201);
    const finished = new Promise((resolve) => h.coordinator.once('run-finished', resolve));
    expect((await h.api('POST', `/runs/${run.body.id}/start`)).status).toBe(202);
    expect(await finished).toMatchObject({ status: 'completed' });
    const rounds = await h.db.rounds.list(run.body.id);
    expect(rounds.map((r) => [r.number, r.participantClientIds.length])).toEqual([
      [1, 3],
      [2, 3],
      [3, 3],
    ]);

    expect(seen.map((i) => i.round)).toEqual([1, 2, 3]);
    const paramCount = seen[0]?.model.paramCount as number;
    const sent = seen.map((instruction) => {
      expect(instruction.strategy).toEqual({
        name: 'scaffold',
        settings: { controlVariateOption: 2 },
      });
      expect(instruction.controlVariate?.byteLength).toBe(4 * paramCount);
      return bytesToWeights(instruction.controlVariate as Uint8Array, paramCount);
    });
    // Round 1 starts from c = 0; round r + 1 sends the c committed with round r.
    expect(sent[0]?.every((value) => value === 0)).toBe(true);
    for (const round of [1, 2, 3]) {
      const checkpoint = await h.db.rounds.checkpoint(run.body.id, round);
      const state = decodeStrategyState(checkpoint.strategyState as Uint8Array);
      expect(state).toMatchObject({ strategy: 'scaffold', version: 1, round });
      if (round < 3) {
        expect([...(sent[round] as Float32Array)]).toEqual([
          ...Float32Array.from(state.arrays['c'] as Float64Array),
        ]);
      }
    }
    const c = sent[2] as Float32Array;
    const largest = c.reduce((max, value) => Math.max(max, Math.abs(value)), 0);
    expect(largest).toBeGreaterThan(1e-4);

    // The clients' c_i after round 2 (adopted when round 3 began, and written to their
    // state dirs): their mean with the observer's is the c the coordinator sent in round 3.
    const fileOf = (dir: string) => join(dir, `scaffold-c-${encodeURIComponent(run.body.id)}.f32`);
    const clientControls = stateDirs.map((dir) => readFloat32File(fileOf(dir)));
    // The observer's c_i after round 2: what it held before answering round 3.
    const observerAfterRound2 = Float32Array.from(
      observerControl as unknown as Float32Array,
      (ci, i) => ci + (c[i] as number),
    );
    let worst = 0;
    for (let i = 0; i < paramCount; i++) {
      const mean =
        ((clientControls[0]?.[i] as number) +
          (clientControls[1]?.[i] as number) +
          (observerAfterRound2[i] as number)) /
        3;
      worst = Math.max(worst, Math.abs(mean - (c[i] as number)));
    }
    // Float32 rounding of values of about `largest` only.
    expect(worst).toBeLessThan(1e-5 * Math.max(1, largest));
    // The real clients moved: their c_i are not the observer's.
    expect(clientControls[0]?.some((v, i) => v !== observerAfterRound2[i])).toBe(true);

    // Replay: the control-variate changes are not kept, so verify checks the checkpoints'
    // hashes and says why it recomputes nothing; replaying "as scaffold" is refused outright.
    const report = await verifyRun(h.db, run.body.id);
    expect(report.unchecked).toMatchObject({ fromRound: 1, cause: 'scaffold-control-variates' });
    expect(report.integrity).toEqual({ checked: 3, mismatched: [] });
    expect(report.identical).toBe(false);
    await expect(
      counterfactualReplay(h.db, run.body.id, { strategy: 'scaffold' }),
    ).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT, data: { field: 'strategy' } });
  }, 240_000);

  it('refuses the update of a client that did not run SCAFFOLD (no controlDelta), recording it rejected with its code', async () => {
    harness = await startHarness();
    const h = harness;
    const { federationId, tokens } = await createFederation(h, 2);
    h.spawnClient(tokens[0]?.token as string, mnistArgs(0, 2));
    const rogue = openRawSocket(h.coordinator.url, {
      token: tokens[1]?.token,
      protocolVersion: PROTOCOL_VERSION,
      client: rawClientInfo({ numHoldout: 0 }),
    });
    const acks: unknown[] = [];
    rogue.on('train', (instruction) => {
      // An update as every other strategy takes it, without Δc_i.
      rogue.emit(
        'update',
        {
          status: 'ok',
          runId: instruction.runId,
          round: instruction.round,
          weights: instruction.weights,
          numExamples: 5,
          durationMs: 0,
          metrics: {},
        },
        (ack: unknown) => acks.push(ack),
      );
    });
    await waitFor(() => h.coordinator.registry.list().length === 2, 'two clients to connect');
    const run = await h.api<{ id: string }>('POST', '/runs', {
      ...quickRun,
      rounds: 1,
      federationId,
      clientsPerRound: 2,
      minClients: 1,
      strategy: 'scaffold',
    });
    expect(run.status, JSON.stringify(run.body)).toBe(201);
    const finished = new Promise((resolve) => h.coordinator.once('run-finished', resolve));
    expect((await h.api('POST', `/runs/${run.body.id}/start`)).status).toBe(202);
    expect(await finished).toMatchObject({ status: 'completed' });
    expect(acks).toEqual([
      {
        ok: false,
        error: expect.objectContaining({
          code: 'INVALID_ARGUMENT',
          message: expect.stringMatching(/controlDelta/),
        }),
      },
    ]);
    const [round] = await h.db.rounds.list(run.body.id);
    expect(round?.participantClientIds).toHaveLength(1);
    const rejected = round?.outcomes.filter((o) => o.outcome === 'rejected') ?? [];
    expect(rejected).toHaveLength(1);
    expect(rejected[0]).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(rejected[0]?.reason).toMatch(/controlDelta/);
    // Nothing of it reached the model or c: the round's one update is the real client's.
    expect(round?.numExamples).toBeGreaterThan(5);
  }, 180_000);
});
