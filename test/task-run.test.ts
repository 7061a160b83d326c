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
import { flowersTask, tabularParams, tabularTopology } from './task-fixtures.js';

/**
 * A run that trains a task (issue 17): the run config names the task, the coordinator resolves
 * it to one stored version and builds that task's model, train carries the reference, and
 * clients fetch the definition with the `task` event. Training a tabular task in the Node
 * client is not there yet: the test shows the real client refusing it with a coded reason.
 */

/** Ward risk: 3 numeric columns with constants, 1 categorical of 3 categories, 3 classes. */
const wardRisk = {
  schemaVersion: 1,
  name: 'ward-risk',
  input: {
    kind: 'tabular',
    label: 'risk',
    columns: [
      { name: 'age', type: 'numeric', standardize: { mean: 50, std: 15 } },
      { name: 'pulse', type: 'numeric', standardize: { mean: 80, std: 12 } },
      { name: 'temperature', type: 'numeric', standardize: { mean: 37, std: 0.8 } },
      { name: 'ward', type: 'categorical', categories: ['a', 'b', 'c'] },
    ],
  },
  output: { kind: 'multiclass', classes: ['low', 'mid', 'high'] },
  loss: 'softmax-cross-entropy',
  metrics: ['accuracy'],
  // Dense(16, relu) -> Dense(3, softmax) on 3 + 3 features, written by tfjs here.
  model: { topology: tabularTopology(6, 3, 16) },
};

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

beforeAll(async () => {
  h = await startHarness();
  const created = await h.api('POST', '/tasks', wardRisk);
  expect(created.status).toBe(201);
  ({ federationId, tokens } = await createFederation(h, 2));
});
afterAll(async () => {
  closeRawSockets();
  await h?.dispose();
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
    expect(nodeOutcome?.reason).toContain("task 'ward-risk'");
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
