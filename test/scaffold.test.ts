import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeStrategyState } from '@tessera/aggregation';
import { REPLAY_EXIT, replayExitCode } from '@tessera/cli';
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
import {
  createKeptScaffoldRun,
  nodeControlVariate,
  spawnScaffoldClients,
} from './scaffold-clients.js';

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

describe('a SCAFFOLD run', () => {
  it('sends c with every round; c after round r is the committed state; c stays the mean of the clients’ c_i', async () => {
    harness = await startHarness();
    const h = harness;
    const { federationId, tokens } = await createFederation(h, 3);
    const stateDirs = spawnScaffoldClients(
      h,
      [0, 1].map((k) => tokens[k]?.token as string),
      400,
      dirs,
    );
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

    // Every update and its Δc_i kept: the run can be recomputed (checkReplay below).
    const runId = await createKeptScaffoldRun(h, federationId);
    const finished = new Promise((resolve) => h.coordinator.once('run-finished', resolve));
    expect((await h.api('POST', `/runs/${runId}/start`)).status).toBe(202);
    expect(await finished).toMatchObject({ status: 'completed' });
    const rounds = await h.db.rounds.list(runId);
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
      const checkpoint = await h.db.rounds.checkpoint(runId, round);
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
    const clientControls = stateDirs.map((dir) => nodeControlVariate(dir, runId));
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

    await checkReplay(h, runId);
  }, 360_000);

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

  it('a Node client restarted between rounds adopts the c_i⁺ it staged in --state-dir; c stays the mean of the clients’ c_i', async () => {
    harness = await startHarness();
    const h = harness;
    const { federationId, tokens } = await createFederation(h, 3);
    const stateDirs = [0, 1, 2].map(() => {
      const dir = mkdtempSync(join(tmpdir(), 'tessera-scaffold-client-'));
      dirs.push(dir);
      return dir;
    });
    const spawn = (k: number) =>
      h.spawnClient(tokens[k]?.token as string, [
        ...mnistArgs(k, 3),
        '--state-dir',
        stateDirs[k] as string,
      ]);
    const first = spawn(0);
    spawn(1);
    spawn(2);
    await waitFor(() => h.coordinator.registry.list().length === 3, 'three clients to connect');

    const runId = await createKeptScaffoldRun(h, federationId);
    // Paused after round 1, so that client 0 restarts between rounds 1 and 2.
    const roundOne = new Promise<void>((resolve) =>
      h.coordinator.on('round-started', (event) => {
        if (event.runId === runId && event.round === 1) resolve();
      }),
    );
    const finishes: { status: string }[] = [];
    h.coordinator.on('run-finished', (event) => finishes.push(event));
    expect((await h.api('POST', `/runs/${runId}/start`)).status).toBe(202);
    await roundOne;
    expect((await h.api('POST', `/runs/${runId}/pause`)).status).toBe(202);
    await waitFor(() => finishes.length === 1, 'the run to pause after round 1', 180_000);
    expect(finishes[0]?.status).toBe('paused');
    expect((await h.db.runs.get(runId)).currentRound).toBe(1);
    // Round 1's c_i⁺ is staged on disk, not adopted (round 2 has not arrived).
    const staged = join(
      stateDirs[0] as string,
      `scaffold-c-${encodeURIComponent(runId)}.f32.staged`,
    );
    expect(existsSync(staged)).toBe(true);

    first.kill('SIGKILL');
    await waitFor(() => h.coordinator.registry.list().length === 2, 'client 0 to be gone');
    spawn(0);
    await waitFor(() => h.coordinator.registry.list().length === 3, 'client 0 to reconnect');
    expect((await h.api('POST', `/runs/${runId}/start`)).status).toBe(202);
    await waitFor(() => finishes.length === 2, 'the run to finish', 300_000);
    expect(finishes[1]?.status).toBe('completed');

    // The c committed with round 2 is the mean of the clients' c_i after round 2 (adopted when
    // round 3 arrived): true only if the restarted client started round 2 from its staged c_i⁺.
    const checkpoint = await h.db.rounds.checkpoint(runId, 2);
    const c = decodeStrategyState(checkpoint.strategyState as Uint8Array).arrays['c'];
    const controls = stateDirs.map((dir) => nodeControlVariate(dir, runId));
    let largest = 0;
    let worst = 0;
    for (let i = 0; i < (c?.length ?? 0); i++) {
      const mean = controls.reduce((sum, ci) => sum + (ci[i] as number), 0) / 3;
      largest = Math.max(largest, Math.abs(c?.[i] as number));
      worst = Math.max(worst, Math.abs(mean - (c?.[i] as number)));
    }
    expect(largest).toBeGreaterThan(1e-4);
    expect(worst).toBeLessThan(1e-5 * Math.max(1, largest));
    await checkReplay(h, runId);
  }, 600_000);
});

/** The stored Δc_i of update `arrivalIndex` of `round`, and a way to write other bytes there. */
async function storedControlDelta(h: Harness, runId: string, round: number, arrivalIndex: number) {
  const where = { round: { runId, number: round }, arrivalIndex };
  const row = await h.db.prisma.clientUpdate.findFirstOrThrow({
    where,
    select: { id: true, controlDelta: true, controlDeltaSha256: true },
  });
  const original = { bytes: row.controlDelta, sha256: row.controlDeltaSha256 };
  const write = (bytes: Uint8Array | null, sha256: string | null) =>
    h.db.prisma.clientUpdate.update({
      where: { id: row.id },
      data: {
        controlDelta: bytes === null ? null : new Uint8Array(bytes),
        controlDeltaSha256: sha256,
      },
    });
  return { original, write, restore: () => write(original.bytes, original.sha256) };
}

const sha256Hex = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/**
 * The replay of a SCAFFOLD run that kept its updates: verify recomputes every round (weights
 * and c); a counterfactual as scaffold works; a changed Δc_i is caught with its round; a run
 * whose Δc_i are missing (as one recorded before they were kept) is checked by its hashes.
 */
async function checkReplay(h: Harness, runId: string) {
  const report = await verifyRun(h.db, runId);
  expect(report.unchecked).toBeNull();
  expect(report.integrity).toBeNull();
  expect(
    report.checks.map((check) => [check.round, check.updates, check.match, check.stateMatch]),
  ).toEqual([
    [1, 3, true, true],
    [2, 3, true, true],
    [3, 3, true, true],
  ]);
  expect(report.identical).toBe(true);
  expect(replayExitCode(report)).toBe(REPLAY_EXIT.identical);
  // The coordinator's /verify reads the database too: the same recomputation.
  const overRest = await h.api<{ identical: boolean; unchecked: unknown }>(
    'GET',
    `/runs/${runId}/verify`,
  );
  expect(overRest.body).toMatchObject({ identical: true, unchecked: null });

  const sourceHashes = (await h.db.rounds.checkpointHashes(runId)).map((c) => c.sha256);
  const sourceStates = await Promise.all(
    [1, 2, 3].map(async (round) => (await h.db.rounds.checkpoint(runId, round)).strategyState),
  );
  // As scaffold with the same options: each update re-based onto the same model is itself, so
  // the counterfactual commits the source's checkpoints and states, bit for bit.
  const same = await counterfactualReplay(h.db, runId, {
    strategy: 'scaffold',
    strategyOptions: { clientCount: 3 },
  });
  expect(same.status).toBe('completed');
  expect((await h.db.rounds.checkpointHashes(same.id)).map((c) => c.sha256)).toEqual(sourceHashes);
  // With a server learning rate of 0.5: other models; c, folded from the same Δc_i, the same.
  const halfStep = await counterfactualReplay(h.db, runId, {
    strategy: 'scaffold',
    strategyOptions: { clientCount: 3, serverLearningRate: 0.5 },
  });
  expect(halfStep).toMatchObject({ status: 'completed', origin: 'replay', sourceRunId: runId });
  const halfHashes = (await h.db.rounds.checkpointHashes(halfStep.id)).map((c) => c.sha256);
  expect(halfHashes).toHaveLength(4);
  expect(halfHashes[0]).toBe(sourceHashes[0]);
  for (const round of [1, 2, 3]) {
    expect(halfHashes[round]).not.toBe(sourceHashes[round]);
    const replayed = await h.db.rounds.checkpoint(halfStep.id, round);
    const c = decodeStrategyState(replayed.strategyState as Uint8Array).arrays['c'];
    const sourceC = decodeStrategyState(sourceStates[round - 1] as Uint8Array).arrays['c'];
    expect(
      Buffer.from((c as Float64Array).buffer).equals(Buffer.from((sourceC as Float64Array).buffer)),
    ).toBe(true);
  }

  // Mutation: another Δc_i for update 1 of round 2, hashed to match. The models of round 2 do
  // not depend on it, but c does: the state of round 2 (and of round 3 after it) differs.
  const target = await storedControlDelta(h, runId, 2, 1);
  const changed = new Uint8Array(target.original.bytes as Uint8Array);
  changed[0] = (changed[0] as number) ^ 0x01;
  await target.write(changed, sha256Hex(changed));
  const mutated = await verifyRun(h.db, runId);
  expect(mutated.identical).toBe(false);
  const failing = mutated.checks.filter((check) => !check.match || check.stateMatch === false);
  expect(failing[0]).toMatchObject({ round: 2, match: true, stateMatch: false });
  expect(mutated.checks[0]).toMatchObject({ round: 1, match: true, stateMatch: true });
  expect(replayExitCode(mutated)).toBe(REPLAY_EXIT.differs);
  // Bytes changed under their recorded hash: the read refuses them, naming the round.
  await target.write(changed, target.original.sha256);
  await expect(verifyRun(h.db, runId)).rejects.toMatchObject({
    code: ErrorCode.INTERNAL,
    message: expect.stringMatching(/controlDelta of update 1 of round 2 of run .* is corrupt/),
  });
  await target.restore();
  expect((await verifyRun(h.db, runId)).identical).toBe(true);

  // A run recorded before Δc_i were kept: its rows hold none. Verify checks the hashes and
  // says why; a counterfactual as scaffold is refused, naming the round; nothing is stored.
  await h.db.prisma.clientUpdate.updateMany({
    where: { round: { runId } },
    data: { controlDelta: null, controlDeltaSha256: null },
  });
  const old = await verifyRun(h.db, runId);
  expect(old.unchecked).toMatchObject({ fromRound: 1, cause: 'scaffold-control-variates' });
  expect(old.unchecked?.reason).toMatch(/round 1 were read without theirs/);
  expect(old.checks).toEqual([]);
  expect(old.integrity).toEqual({ checked: 3, mismatched: [] });
  expect(old.identical).toBe(false);
  expect(replayExitCode(old)).toBe(REPLAY_EXIT.notReplayable);
  const runsBefore = await h.db.prisma.run.count();
  await expect(counterfactualReplay(h.db, runId, { strategy: 'scaffold' })).rejects.toMatchObject({
    code: ErrorCode.INVALID_ARGUMENT,
    data: { field: 'strategy', round: 1 },
    message: expect.stringMatching(/kept without their control-variate changes/),
  });
  expect(await h.db.prisma.run.count()).toBe(runsBefore);
  // Another strategy needs no Δc_i: the kept models replay as FedAvg.
  const asFedAvg = await counterfactualReplay(h.db, runId, { strategy: 'fedavg' });
  expect(asFedAvg.status).toBe('completed');
}
