import type { RoundRecord } from '@tessera/db';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createFederation,
  type Harness,
  NODE_AUTO_BACKEND,
  quickRun,
  startHarness,
  waitFor,
} from './harness.js';

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.dispose();
  harness = undefined;
});

const mnistArgs = (k: number, n: number) => ['--mnist', `${k}/${n}`, '--max-examples', '400'];

describe('a federation of real client processes', () => {
  it('trains rounds to completion, and goes on without a client that drops mid-round', async () => {
    harness = await startHarness({ centralEvaluation: true });
    const h = harness;
    const { federationId, tokens } = await createFederation(h, 3);
    const children = tokens.map(({ token }, k) => h.spawnClient(token, mnistArgs(k, 3)));
    await waitFor(() => h.coordinator.registry.list().length === 3, 'three clients to connect');

    const run = await h.api<{ id: string }>('POST', '/runs', {
      ...quickRun,
      federationId,
      minClients: 2,
    });
    expect(run.status).toBe(201);
    const victim = tokens[2]?.client.id as string;
    expect(h.coordinator.registry.get(victim)?.info.backend).toBe(NODE_AUTO_BACKEND);

    // Kill one client the moment round 2 is sent out: it is selected (all three are) and never answers.
    h.coordinator.on('round-started', ({ round }) => {
      if (round === 2) children[2]?.kill('SIGKILL');
    });
    const finished = new Promise((resolve) => h.coordinator.on('run-finished', resolve));
    expect((await h.api('POST', `/runs/${run.body.id}/start`)).status).toBe(202);
    expect(await finished).toMatchObject({ status: 'completed' });

    const rounds = (await h.api<RoundRecord[]>('GET', `/runs/${run.body.id}/rounds`)).body;
    expect(rounds.map((r) => r.number)).toEqual([1, 2, 3]);
    expect(rounds[0]).toMatchObject({ participantClientIds: expect.arrayContaining([victim]) });
    expect(rounds[1]?.selectedClientIds).toContain(victim);
    expect(rounds[1]?.droppedClientIds).toEqual([victim]);
    expect(rounds[1]?.participantClientIds).toHaveLength(2);
    expect(rounds[2]?.selectedClientIds).not.toContain(victim);
    for (const round of rounds) {
      expect(round.trainLoss).toBeGreaterThan(0);
      expect(round.centralAccuracy).toBeGreaterThan(0.5);
    }
    // Each client trained on 360 examples (400 minus a 10% hold-out): m_t is their sum.
    expect(rounds[0]?.numExamples).toBe(3 * 360);
    expect(rounds[1]?.numExamples).toBe(2 * 360);
    const updates = await h.db.rounds.updates(run.body.id, 2);
    expect(updates.map((u) => u.clientId).sort()).toEqual(
      (rounds[1]?.participantClientIds ?? []).slice().sort(),
    );
    expect(h.logs.some((line) => line.includes('client dropped out of a round'))).toBe(true);
  });

  it('resumes an unfinished run from its last committed round after a coordinator restart', async () => {
    harness = await startHarness();
    const h = harness;
    const { federationId, tokens } = await createFederation(h, 2);
    for (const [k, { token }] of tokens.entries()) h.spawnClient(token, mnistArgs(k, 2));
    await waitFor(() => h.coordinator.registry.list().length === 2, 'two clients to connect');
    const run = await h.api<{ id: string }>('POST', '/runs', {
      ...quickRun,
      rounds: 4,
      federationId,
    });
    const firstCommit = new Promise((resolve) => h.coordinator.once('round-committed', resolve));
    await h.api('POST', `/runs/${run.body.id}/start`);
    await firstCommit;
    const beforeRestart = await h.db.rounds.checkpoint(run.body.id, 1);

    await h.restart();
    const finished = new Promise((resolve) => h.coordinator.on('run-finished', resolve));
    expect(await finished).toMatchObject({ status: 'completed' });

    const rounds = await h.db.rounds.list(run.body.id);
    expect(rounds.map((r) => r.number)).toEqual([1, 2, 3, 4]);
    expect((await h.db.runs.get(run.body.id)).currentRound).toBe(4);
    expect((await h.db.rounds.checkpoint(run.body.id, 1))?.sha256).toBe(beforeRestart?.sha256);
    expect(h.logs.some((line) => line.includes('resuming run'))).toBe(true);
    // The clients reconnect to the new process on their own, each after its own back-off: the
    // resumed rounds may be over before the second one is back.
    await waitFor(() => h.coordinator.registry.list().length === 2, 'both clients to reconnect');
  });
});

describe('a federation nobody can evaluate', () => {
  it('completes, its rounds committed but not evaluated, when clients keep no held-out data and there is no test set', async () => {
    harness = await startHarness({ centralEvaluation: false });
    const h = harness;
    const { federationId, tokens } = await createFederation(h, 2);
    for (const [k, { token }] of tokens.entries()) {
      h.spawnClient(token, [...mnistArgs(k, 2), '--holdout', '0']);
    }
    await waitFor(() => h.coordinator.registry.list().length === 2, 'two clients to connect');
    expect(h.coordinator.registry.list().map((s) => s.info.numHoldout)).toEqual([0, 0]);
    const run = await h.api<{ id: string }>('POST', '/runs', {
      ...quickRun,
      federationId,
      rounds: 2,
      minClients: 2,
    });
    const finished = new Promise((resolve) => h.coordinator.on('run-finished', resolve));
    await h.api('POST', `/runs/${run.body.id}/start`);
    expect(await finished).toMatchObject({ status: 'completed' });
    const rounds = await h.db.rounds.list(run.body.id);
    expect(rounds.map((r) => [r.number, r.status, r.federatedAccuracy])).toEqual([
      [1, 'committed', null],
      [2, 'committed', null],
    ]);
    expect(h.logs.some((line) => line.includes('round not evaluated'))).toBe(true);
  });
});
