import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  PROTOCOL_VERSION,
  type TaskAck,
  type TrainInstruction,
  WIRE_LIMITS,
} from '@tessera/protocol';
import { taskSha256 } from '@tessera/tasks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFederation, type Harness, startHarness, waitFor } from './harness.js';
import {
  ackCode,
  closeRawSockets,
  openRawSocket,
  rawClientInfo,
  sendWithAck,
} from './raw-client.js';
import {
  flowersTask,
  tabularParams,
  tabularTopology,
  wardRiskTask,
  writeWardCsv,
} from './task-fixtures.js';

/**
 * A run that trains a task (issue 17): the run config names the task, the coordinator resolves
 * it to one stored version and builds that task's model, train carries the reference, and
 * clients fetch the definition with the `task` event. Real Node clients train it from CSV
 * files with named columns (--data); one started on MNIST data says it cannot, with a code.
 */

const wardRisk = wardRiskTask();

interface ErrorBody {
  error: { code: string; message: string; data?: { field?: string } };
}
interface RunBody {
  id: string;
  name: string;
  config: { task: { name: string; version: number; sha256: string }; model: string | null };
}

let h: Harness;
let federationId: string;
let tokens: { token: string; client: { id: string } }[];
const dataDir = mkdtempSync(join(tmpdir(), 'tessera-task-run-'));

beforeAll(async () => {
  h = await startHarness();
  const created = await h.api('POST', '/tasks', wardRisk);
  expect(created.status).toBe(201);
  ({ federationId, tokens } = await createFederation(h, 2));
});
afterAll(async () => {
  closeRawSockets();
  await h?.dispose();
  rmSync(dataDir, { recursive: true, force: true });
});

const runCount = async () => (await h.db.runs.list()).length;

/** Expects POST /runs to refuse `body` with 400, this code and field, and to store nothing. */
async function refusedRun(body: Record<string, unknown>, field: string): Promise<string> {
  const before = await runCount();
  const { status, body: error } = await h.api<ErrorBody>('POST', '/runs', {
    federationId,
    rounds: 1,
    ...body,
  });
  expect({ status, code: error.error.code, field: error.error.data?.field }).toEqual({
    status: 400,
    code: 'INVALID_ARGUMENT',
    field,
  });
  expect(await runCount()).toBe(before);
  return error.error.message;
}

describe('a run names the task it trains', () => {
  it('resolves {name} to the latest stored version, with its sha256; the model is null', async () => {
    const run = await h.api<RunBody>('POST', '/runs', {
      federationId,
      task: { name: 'ward-risk' },
      rounds: 1,
    });
    expect(run.status).toBe(201);
    expect(run.body.config.task).toEqual({
      name: 'ward-risk',
      version: 1,
      sha256: taskSha256(wardRisk),
    });
    expect(run.body.config.model).toBeNull();
    expect(run.body.name).toBe('ward-risk/fedavg');
    // Stored so, and read back so.
    expect((await h.db.runs.get(run.body.id)).config.task.sha256).toBe(taskSha256(wardRisk));
  });

  it('keeps model: "fedavg-2nn" working, as the built-in task mnist-2nn', async () => {
    const run = await h.api<RunBody>('POST', '/runs', {
      federationId,
      model: 'fedavg-2nn',
      rounds: 1,
    });
    expect(run.status).toBe(201);
    const builtin = await h.db.tasks.byName('mnist-2nn');
    expect(run.body.config.task).toEqual({ name: 'mnist-2nn', version: 1, sha256: builtin.sha256 });
    expect(run.body.config.model).toBe('fedavg-2nn');
    expect(run.body.name).toBe('fedavg-2nn/fedavg');
  });

  it('refuses an unknown task, a version that does not exist, and neither task nor model', async () => {
    expect(await refusedRun({ task: { name: 'no-such-task' } }, 'task')).toContain('no-such-task');
    expect(await refusedRun({ task: { name: 'ward-risk', version: 7 } }, 'task.version')).toBe(
      "task.version 7 does not exist for task 'ward-risk'",
    );
    await refusedRun({ task: { name: 'ward-risk', sha256: '0'.repeat(64) } }, 'task.sha256');
    await refusedRun({}, 'task');
    await refusedRun({ model: 'mlp', task: { name: 'ward-risk' } }, 'model');
  });

  it('creates a run of a task that needs a federated statistics round (the round runs before round 1)', async () => {
    const needsStatistics = flowersTask({ name: 'flowers-federated' });
    expect((await h.api('POST', '/tasks', needsStatistics)).status).toBe(201);
    const run = await h.api<RunBody & { statistics: unknown; resolvedTask: unknown }>(
      'POST',
      '/runs',
      { federationId, task: { name: 'flowers-federated' }, rounds: 1 },
    );
    expect(run.status).toBe(201);
    expect(run.body.config.task.sha256).toBe(taskSha256(needsStatistics));
    // Nothing collected yet: the statistics round runs when the run starts.
    expect(run.body).toMatchObject({ statistics: null, resolvedTask: null });
  });

  it('refuses a task that leaves more columns to statistics than one reply may carry', async () => {
    const columns = WIRE_LIMITS.maxStatisticsColumns + 1;
    const wide = {
      ...flowersTask({ name: 'too-wide', topology: tabularTopology(columns, 3, 2) }),
      input: {
        kind: 'tabular',
        label: 'species',
        columns: Array.from({ length: columns }, (_, i) => ({
          name: `c${i}`,
          type: 'numeric',
          standardize: 'federated',
        })),
      },
    };
    expect((await h.api('POST', '/tasks', wide)).status).toBe(201);
    const message = await refusedRun({ task: { name: 'too-wide' } }, 'task');
    expect(message).toContain(`${columns} columns are left to the federated statistics round`);
  });
});

describe("a task's run on the wire", () => {
  it("starts from the task's seeded model, sends the task, serves its definition, records the Node client's refusal", async () => {
    const run = await h.api<RunBody>('POST', '/runs', {
      federationId,
      task: { name: 'ward-risk' },
      rounds: 1,
      minClients: 1,
      roundDeadlineMs: 60_000,
      seed: 3,
    });
    const ref = run.body.config.task;

    // A raw client that fetches the task and answers every train with the weights it got.
    const raw = openRawSocket(h.coordinator.url, {
      token: tokens[0]?.token,
      protocolVersion: PROTOCOL_VERSION,
      client: rawClientInfo({ numExamples: 10, numHoldout: 0 }),
    });
    const trains: TrainInstruction[] = [];
    raw.on('train', (instruction) => {
      trains.push(instruction);
      void sendWithAck(raw, 'update', {
        status: 'ok',
        runId: instruction.runId,
        round: instruction.round,
        weights: instruction.weights,
        numExamples: 10,
        durationMs: 1,
        metrics: { loss: 1 },
      });
    });
    await new Promise<void>((resolve) => raw.on('welcome', () => resolve()));
    // The real Node client, on its default MNIST data: it fetches the task and says it cannot.
    const node = h.spawnClient(tokens[1]?.token as string, ['--mnist', '0/600']);
    await waitFor(() => h.coordinator.registry.list().length === 2, 'both clients');

    expect((await h.api('POST', `/runs/${run.body.id}/start`)).status).toBe(202);
    const first = await waitFor(() => trains[0], 'a train instruction');
    expect(first.task).toEqual(ref);
    // The task's model: Dense(16) -> Dense(3) on 6 features, seeded from the run.
    expect(first.model).toEqual({ name: 'ward-risk', paramCount: tabularParams(6, 3, 16) });
    expect(first.weights.byteLength).toBe(tabularParams(6, 3, 16) * 4);

    const ask = (sha256: unknown) =>
      raw.timeout(10_000).emitWithAck('task', { sha256 } as never) as Promise<TaskAck>;
    const served = await ask(ref.sha256);
    expect(served.ok).toBe(true);
    expect(served.ok && taskSha256(served.task)).toBe(ref.sha256);
    expect(ackCode((await ask('f'.repeat(64))) as never)).toBe('NOT_FOUND');
    expect(ackCode((await ask('not hex')) as never)).toBe('MALFORMED_FRAME');

    const round = await waitFor(
      async () => (await h.db.rounds.list(run.body.id)).find((r) => r.number === 1),
      'round 1 committed',
    );
    const nodeOutcome = round.outcomes.find((o) => o.clientId === tokens[1]?.client.id);
    expect(nodeOutcome).toMatchObject({ outcome: 'failed', code: 'TASK_NOT_SUPPORTED' });
    expect(nodeOutcome?.reason).toBe(
      "task 'ward-risk': this client holds MNIST examples only (start it with --data FILE for this task)",
    );
    // No MNIST test set for this task: no central evaluation.
    expect(round.centralAccuracy).toBeNull();
    node.kill();
  });

  it('does not serve a task to a client of a federation where no run trains it', async () => {
    const other = await createFederation(h, 1);
    const raw = openRawSocket(h.coordinator.url, {
      token: other.tokens[0]?.token,
      protocolVersion: PROTOCOL_VERSION,
      client: rawClientInfo(),
    });
    await new Promise<void>((resolve) => raw.on('welcome', () => resolve()));
    const ack = (await raw
      .timeout(10_000)
      .emitWithAck('task', { sha256: taskSha256(wardRisk) } as never)) as TaskAck;
    expect(ackCode(ack as never)).toBe('NOT_FOUND');
  });
});

const wardCsv = (name: string, rows: number, seed: number, columns?: string[]) =>
  writeWardCsv(dataDir, name, rows, seed, columns);

describe('Node clients train a task from their own CSV files', () => {
  it('two clients train ward-risk for 2 rounds; a third, missing a column, fails each round with DATA_SCHEMA_MISMATCH and the rounds commit without it', async () => {
    const federation = await createFederation(h, 3);
    const [first, second, third] = federation.tokens.map((t) => t.token as string);
    const ids = federation.tokens.map((t) => t.client.id);
    const run = await h.api<RunBody>('POST', '/runs', {
      federationId: federation.federationId,
      task: { name: 'ward-risk' },
      rounds: 2,
      minClients: 2,
      roundDeadlineMs: 60_000,
      localEpochs: 2,
      batchSize: 8,
      learningRate: 0.1,
      seed: 11,
    });
    expect(run.status).toBe(201);
    const noPulse = wardCsv('no-pulse.csv', 30, 3, ['risk', 'age', 'ward', 'temperature']);
    const clients = [
      h.spawnClient(first as string, ['--data', wardCsv('north.csv', 60, 1), '--holdout', '0.1']),
      h.spawnClient(second as string, ['--data', wardCsv('south.csv', 40, 2), '--holdout', '0.1']),
      h.spawnClient(third as string, ['--data', noPulse]),
    ];
    let thirdStderr = '';
    clients[2]?.stderr?.on('data', (chunk: Buffer) => {
      thirdStderr += chunk.toString();
    });
    await waitFor(
      () => h.coordinator.registry.list().filter((c) => ids.includes(c.clientId)).length === 3,
      'three clients',
    );
    // The hello's hint: rows counted before any task, split by --holdout.
    const hinted = Object.fromEntries(
      h.coordinator.registry
        .list()
        .map((c) => [c.clientId, [c.info.numExamples, c.info.numHoldout]]),
    );
    expect([hinted[ids[0] as string], hinted[ids[1] as string], hinted[ids[2] as string]]).toEqual([
      [54, 6],
      [36, 4],
      [27, 3],
    ]);

    expect((await h.api('POST', `/runs/${run.body.id}/start`)).status).toBe(202);
    const rounds = await waitFor(
      async () => {
        const list = await h.db.rounds.list(run.body.id);
        return list.length === 2 ? list : undefined;
      },
      'two committed rounds',
      120_000,
    );
    const missing = `${noPulse}:1: column 'pulse': column 'pulse' missing (the header has 4 columns: risk, age, ward, temperature)`;
    for (const round of rounds) {
      expect(new Set(round.participantClientIds)).toEqual(new Set(ids.slice(0, 2)));
      expect(round.numExamples).toBe(54 + 36);
      expect(round.trainLoss).toBeGreaterThan(0);
      expect(round.trainAccuracy).toBeGreaterThanOrEqual(0);
      expect(round.trainAccuracy).toBeLessThanOrEqual(1);
      expect(round.metrics).toMatchObject({ failed: 1 });
      expect(round.metrics['samplesPerSecond']).toBeGreaterThan(0);
      const outcome = round.outcomes.find((o) => o.clientId === ids[2]);
      expect(outcome).toMatchObject({
        outcome: 'failed',
        code: 'DATA_SCHEMA_MISMATCH',
        reason: missing,
      });
    }
    // The person at the third client reads the same problem, once per round it failed.
    await waitFor(() => thirdStderr.split(missing).length - 1 >= 2, 'the problem on stderr');
    expect(thirdStderr.split(missing).length - 1).toBe(2);

    // Federated evaluation on the held-out rows of the two clients that fit the task.
    const evaluated = await waitFor(
      async () =>
        (await h.db.rounds.list(run.body.id)).find(
          (r) => r.number === 2 && r.federatedNumExamples !== null,
        ),
      'federated evaluation of round 2',
    );
    expect(evaluated.federatedNumExamples).toBe(6 + 4);
    expect(evaluated.federatedAccuracy).toBeGreaterThanOrEqual(0);
    for (const client of clients) client.kill();
  });
});
