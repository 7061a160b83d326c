import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type LocalTrainer, RoundFailure, TesseraClient } from '@tessera/client/core';
import {
  combineStatistics,
  readTabular,
  type TabularStatistics,
  tabularStatistics,
} from '@tessera/data';
import { checkTaskModel } from '@tessera/ml';
import {
  type Ack,
  PROTOCOL_VERSION,
  type StatisticsInstruction,
  type TaskAck,
  type TrainInstruction,
} from '@tessera/protocol';
import { readRunExport } from '@tessera/research';
import { parseTaskDefinition, type TaskDefinition, taskSha256 } from '@tessera/tasks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFederation, type Harness, startHarness, waitFor } from './harness.js';
import {
  ackCode,
  type ClientSocket,
  closeRawSockets,
  openRawSocket,
  rawClientInfo,
  sendWithAck,
} from './raw-client.js';
import { tabularParams, tabularTopology, wardRiskTask, writeWardCsv } from './task-fixtures.js';

/**
 * The federated statistics round end to end (issue 17, item 3): a real coordinator over
 * PGlite, raw Socket.IO clients that answer `statistics` with statistics they computed from
 * rows written here. The coordinator combines them, records the combination with the run,
 * resolves the task (constants filled in, the model's input width following the collected
 * categories) and trains that; hostile replies are refused with a code and a field and
 * leave no trace; too few replies fail the run; a restarted coordinator does not ask again.
 */

/** Visits: `age` standardised by the round, `clinic`'s categories collected by it. */
const visitsTask = (name: string) => ({
  schemaVersion: 1,
  name,
  input: {
    kind: 'tabular',
    label: 'triage',
    columns: [
      { name: 'age', type: 'numeric', standardize: 'federated' },
      { name: 'clinic', type: 'categorical' },
      { name: 'pulse', type: 'numeric', standardize: { mean: 80, std: 12 } },
    ],
  },
  output: { kind: 'multiclass', classes: ['green', 'amber', 'red'] },
  loss: 'softmax-cross-entropy',
  metrics: ['accuracy'],
  // Dense(8) -> Dense(3) on the least width the task can have: 1 + 1 + 1.
  model: { topology: tabularTopology(3, 3, 8) },
});

const HEADER = 'age,clinic,pulse,triage';
/** Each organisation's rows: never sent, only summarised. */
const ROWS = [
  ['34,harbour,72,green', '71,hill,95,red', '52,harbour,88,amber'],
  ['29,market,70,green', '64,hill,101,red'],
  ['45,harbour,77,green', '83,market,110,red', '58,riverside,90,amber', '39,hill,68,green'],
];

let h: Harness;
let taskCount = 0;

beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  closeRawSockets();
  await h?.dispose();
});

async function createTask(): Promise<TaskDefinition> {
  const task = visitsTask(`visits-${++taskCount}`);
  expect((await h.api('POST', '/tasks', task)).status).toBe(201);
  return parseTaskDefinition(task);
}

function statisticsOf(task: TaskDefinition, rows: readonly string[]): TabularStatistics {
  if (task.input.kind !== 'tabular') throw new Error('tabular only');
  return tabularStatistics(
    readTabular([HEADER, ...rows].join('\n'), task.input, task.output),
    task.input,
  );
}

/** A raw client: what it does with a statistics instruction, and answering every train. */
interface Member {
  socket: ClientSocket;
  statistics: StatisticsInstruction[];
  trains: TrainInstruction[];
  acks: Ack[];
}

async function member(
  token: string,
  answer: (instruction: StatisticsInstruction) => unknown,
  options: { trainRounds?: readonly number[] } = {},
): Promise<Member> {
  const socket = openRawSocket(h.coordinator.url, {
    token,
    protocolVersion: PROTOCOL_VERSION,
    client: rawClientInfo({ numExamples: 3, numHoldout: 0 }),
  });
  const m: Member = { socket, statistics: [], trains: [], acks: [] };
  socket.on('statistics', (instruction) => {
    m.statistics.push(instruction);
    const reply = answer(instruction);
    if (reply !== undefined) {
      void sendWithAck(socket, 'statistics', reply).then((ack) => m.acks.push(ack));
    }
  });
  socket.on('train', (instruction) => {
    m.trains.push(instruction);
    if (options.trainRounds !== undefined && !options.trainRounds.includes(instruction.round)) {
      return;
    }
    void sendWithAck(socket, 'update', {
      status: 'ok',
      runId: instruction.runId,
      round: instruction.round,
      weights: instruction.weights,
      numExamples: 3,
      durationMs: 1,
      metrics: { loss: 1 },
    });
  });
  await new Promise<void>((resolve) => socket.on('welcome', () => resolve()));
  return m;
}

const honest = (task: TaskDefinition, rows: readonly string[]) => (i: StatisticsInstruction) => ({
  status: 'ok',
  runId: i.runId,
  statistics: statisticsOf(task, rows),
});

async function createRun(
  federationId: string,
  task: TaskDefinition,
  config: Record<string, unknown> = {},
): Promise<string> {
  const run = await h.api<{ id: string }>('POST', '/runs', {
    federationId,
    task: { name: task.name },
    rounds: 1,
    minClients: 2,
    roundDeadlineMs: 30_000,
    ...config,
  });
  expect(run.status).toBe(201);
  return run.body.id;
}

interface RunBody {
  status: string;
  error: string | null;
  statistics: TabularStatistics | null;
  resolvedTask: { name: string; version: number; sha256: string } | null;
}

const getRun = async (runId: string) => (await h.api<RunBody>('GET', `/runs/${runId}`)).body;

describe('the federated statistics round, end to end', () => {
  it('stores the statistics of the pooled rows, trains the resolved task and refuses hostile replies', async () => {
    const task = await createTask();
    // 3 honest organisations, 4 hostile ones.
    const { federationId, tokens } = await createFederation(h, 7);
    const token = (k: number) => tokens[k]?.token as string;
    const honestMembers = [
      await member(token(0), honest(task, ROWS[0] as string[])),
      await member(token(1), honest(task, ROWS[1] as string[])),
      await member(token(2), honest(task, ROWS[2] as string[])),
    ];
    const valid = statisticsOf(task, ROWS[0] as string[]);
    const [age, clinic] = valid.columns as unknown as [
      Record<string, unknown>,
      Record<string, unknown>,
    ];
    const hostile = [
      // A column the task does not leave to statistics.
      { ...valid, columns: [...valid.columns, { ...age, name: 'pulse' }] },
      // A negative count.
      { ...valid, columns: [{ ...age, count: -2 }, clinic] },
      // NaN travels as a MessagePack float64.
      { ...valid, columns: [{ ...age, m2: Number.NaN }, clinic] },
      // 2000 categories: more than a column may have.
      {
        rows: 2000,
        columns: [
          { ...age, count: 2000 },
          {
            name: 'clinic',
            type: 'categorical',
            counts: Array.from({ length: 2000 }, (_, i) => ({
              category: `c${String(i).padStart(4, '0')}`,
              count: 1,
            })),
          },
        ],
      },
    ];
    const hostileMembers = await Promise.all(
      hostile.map((statistics, k) =>
        member(token(3 + k), (i) => ({ status: 'ok', runId: i.runId, statistics })),
      ),
    );
    const runId = await createRun(federationId, task);
    expect((await h.api('POST', `/runs/${runId}/start`)).status).toBe(202);
    const run = await waitFor(async () => {
      const r = await getRun(runId);
      return r.status === 'completed' && r;
    }, 'the run to complete');

    // Every hostile reply: refused with a code and the field at fault.
    const refusals = hostileMembers.map((m) => {
      const ack = m.acks[0];
      return ack?.ok === false ? `${ack.error.code} ${String(ack.error.data?.['field'])}` : 'ok';
    });
    expect(refusals).toEqual([
      'INVALID_ARGUMENT statistics.columns',
      'INVALID_ARGUMENT statistics.columns[0].count',
      'INVALID_ARGUMENT statistics.columns[0].m2',
      'INVALID_ARGUMENT statistics.columns[1].counts',
    ]);
    for (const m of honestMembers) expect(m.acks.map(ackCode)).toEqual(['ok']);

    // The stored combination is that of the honest clients' rows pooled; nothing hostile in it.
    if (task.input.kind !== 'tabular') throw new Error('tabular');
    const pooled = statisticsOf(task, ROWS.flat());
    expect(run.statistics?.rows).toBe(pooled.rows);
    expect(run.statistics?.columns[1]).toEqual(pooled.columns[1]);
    const [storedAge, pooledAge] = [run.statistics?.columns[0], pooled.columns[0]] as {
      count: number;
      mean: number;
      m2: number;
    }[];
    expect(storedAge?.count).toBe(pooledAge?.count);
    expect(storedAge?.mean).toBeCloseTo(pooledAge?.mean as number, 10);
    expect(storedAge?.m2).toBeCloseTo(pooledAge?.m2 as number, 8);
    // Combined in clientId order, whatever order the replies came in.
    const byId = [0, 1, 2]
      .map((k) => ({ id: tokens[k]?.client.id as string, k }))
      .sort((a, b) => (a.id < b.id ? -1 : 1))
      .map(({ k }) => statisticsOf(task, ROWS[k] as string[]));
    expect(run.statistics).toEqual(combineStatistics(byId, task.input));

    // The resolved task: 4 clinics -> 1 + 4 + 1 features; train names it and its model.
    const resolvedRef = run.resolvedTask;
    expect(resolvedRef).toMatchObject({ name: task.name, version: 1 });
    const [train] = honestMembers[0]?.trains ?? [];
    expect(train?.task).toEqual(resolvedRef);
    expect(train?.model).toEqual({ name: task.name, paramCount: tabularParams(6, 3, 8) });
    expect(train?.weights.byteLength).toBe(tabularParams(6, 3, 8) * 4);
    // The statistics instruction named the task as created.
    expect(honestMembers[0]?.statistics[0]?.task.sha256).toBe(taskSha256(task));

    // The `task` event serves the resolved definition, which hashes to its sha256.
    const served = (await honestMembers[0]?.socket
      .timeout(10_000)
      .emitWithAck('task', { sha256: resolvedRef?.sha256 } as never)) as TaskAck;
    expect(served.ok).toBe(true);
    if (!served.ok) throw new Error('not served');
    expect(taskSha256(served.task)).toBe(resolvedRef?.sha256);
    const resolved = parseTaskDefinition(served.task);
    if (resolved.input.kind !== 'tabular') throw new Error('tabular');
    expect(resolved.input.columns[1]).toEqual({
      name: 'clinic',
      type: 'categorical',
      categories: ['harbour', 'hill', 'market', 'riverside'],
    });
    expect((await checkTaskModel(resolved, { maxParams: 1e6 })).inputShape).toEqual([6]);

    // The export carries both (run.json of `tessera export`).
    const exported = await readRunExport(h.db, runId);
    expect(exported.run.statistics).toEqual(run.statistics);
    expect(exported.run.resolvedTask).toEqual(resolvedRef);
  });

  it('retries a round with too few replies, then fails the run with the reason', async () => {
    const task = await createTask();
    const { federationId, tokens } = await createFederation(h, 2);
    const good = await member(tokens[0]?.token as string, honest(task, ROWS[0] as string[]));
    const declining = await member(tokens[1]?.token as string, (i) => ({
      status: 'failed',
      runId: i.runId,
      error: { message: 'no statistics here', code: 'STATISTICS_NOT_SUPPORTED' },
    }));
    const runId = await createRun(federationId, task);
    expect((await h.api('POST', `/runs/${runId}/start`)).status).toBe(202);
    const run = await waitFor(async () => {
      const r = await getRun(runId);
      return r.status === 'failed' && r;
    }, 'the run to fail');
    expect(run.error).toBe('statistics round got fewer than 2 valid replies in 5 attempts');
    expect(run).toMatchObject({ statistics: null, resolvedTask: null });
    expect(good.statistics).toHaveLength(5);
    expect(declining.acks.map(ackCode)).toEqual(['ok', 'ok', 'ok', 'ok', 'ok']);
    expect(good.trains).toEqual([]);
  });

  it('resumes after a coordinator restart without running the statistics round again', async () => {
    const task = await createTask();
    const { federationId, tokens } = await createFederation(h, 2);
    const token = (k: number) => tokens[k]?.token as string;
    // Before the restart: answer the statistics round and round 1, then hold round 2.
    const before = [
      await member(token(0), honest(task, ROWS[0] as string[]), { trainRounds: [1] }),
      await member(token(1), honest(task, ROWS[1] as string[]), { trainRounds: [1] }),
    ];
    const runId = await createRun(federationId, task, { rounds: 2 });
    expect((await h.api('POST', `/runs/${runId}/start`)).status).toBe(202);
    await waitFor(() => before[0]?.trains.some((t) => t.round === 2), 'round 2 to start');
    const recorded = await getRun(runId);
    expect(recorded.resolvedTask).not.toBeNull();

    closeRawSockets();
    await h.restart();
    const after = [
      await member(token(0), honest(task, ROWS[0] as string[])),
      await member(token(1), honest(task, ROWS[1] as string[])),
    ];
    const run = await waitFor(async () => {
      const r = await getRun(runId);
      return r.status === 'completed' && r;
    }, 'the resumed run to complete');
    for (const m of after) {
      expect(m.statistics).toEqual([]);
      expect(m.trains.map((t) => [t.round, t.task])).toEqual([[2, recorded.resolvedTask]]);
    }
    expect(run.statistics).toEqual(recorded.statistics);
    expect(run.resolvedTask).toEqual(recorded.resolvedTask);
  });

  it("the client core answers with its trainer's statistics, or declines with a code", async () => {
    const task = await createTask();
    const { federationId, tokens } = await createFederation(h, 3);
    /**
     * A trainer over CSV rows: its statistics are the real summary of its rows; its training
     * keeps the global weights (this test is about the statistics round, not about learning).
     */
    const csvTrainer = (
      statistics: ((t: TaskDefinition) => Promise<TabularStatistics>) | undefined,
    ): LocalTrainer => ({
      numExamples: 3,
      numHoldout: 0,
      train: async ({ weights }) => ({
        weights,
        loss: 1,
        accuracy: 0.5,
        numExamples: 3,
        durationMs: 1,
        samplesPerSecond: 3,
      }),
      evaluate: async () => ({ loss: 1, accuracy: 0.5, numExamples: 1 }),
      ...(statistics === undefined ? {} : { statistics }),
      dispose: () => {},
    });
    const clients = [
      csvTrainer(async (t) => statisticsOf(t, ROWS[0] as string[])),
      csvTrainer(undefined),
      csvTrainer(async () => {
        throw new RoundFailure('DATA_SCHEMA_MISMATCH', "column 'clinic' is not in visits.csv");
      }),
    ].map(
      (trainer, k) =>
        new TesseraClient({
          coordinatorUrl: h.coordinator.url,
          token: tokens[k]?.token as string,
          identity: { name: 'statistics-test', version: '0', runtime: 'node' },
          trainer,
          backend: 'none',
        }),
    );
    try {
      await Promise.all(clients.map((client) => client.connect()));
      const runId = await createRun(federationId, task, { minClients: 1 });
      expect((await h.api('POST', `/runs/${runId}/start`)).status).toBe(202);
      const run = await waitFor(async () => {
        const r = await getRun(runId);
        return r.status === 'completed' && r;
      }, 'the run to complete');
      // Only the first client's rows: the others declined, each with its code.
      expect(run.statistics).toEqual(statisticsOf(task, ROWS[0] as string[]));
      const declines = h.logs.filter((line) =>
        line.includes('could not take part in the statistics round'),
      );
      const codeOf = (k: number) =>
        declines.some(
          (line) =>
            line.includes(tokens[k]?.client.id as string) &&
            line.includes(k === 1 ? 'STATISTICS_NOT_SUPPORTED' : 'DATA_SCHEMA_MISMATCH'),
        );
      expect([codeOf(1), codeOf(2)]).toEqual([true, true]);
    } finally {
      await Promise.all(clients.map((client) => client.close()));
    }
  });

  it('real Node clients (--data CSV) answer the round and train the resolved task', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'tessera-statistics-'));
    try {
      // ward-risk with `age` standardised by the round and `ward`'s categories collected by it;
      // the topology takes the least width (3 numeric + 1), the round makes it 3 + 3.
      const base = wardRiskTask();
      const definition = {
        ...base,
        name: `ward-federated-${++taskCount}`,
        input: {
          ...base.input,
          columns: [
            { name: 'age', type: 'numeric', standardize: 'federated' },
            { name: 'pulse', type: 'numeric', standardize: { mean: 80, std: 12 } },
            { name: 'temperature', type: 'numeric', standardize: { mean: 37, std: 0.8 } },
            { name: 'ward', type: 'categorical' },
          ],
        },
        model: { topology: tabularTopology(4, 3, 16) },
      };
      expect((await h.api('POST', '/tasks', definition)).status).toBe(201);
      const task = parseTaskDefinition(definition);
      const files = [
        writeWardCsv(folder, 'north.csv', 50, 1),
        writeWardCsv(folder, 'south.csv', 30, 2),
      ];
      const { federationId, tokens } = await createFederation(h, 2);
      const runId = await createRun(federationId, task, {
        localEpochs: 1,
        batchSize: 8,
        learningRate: 0.1,
      });
      const ids = tokens.map((t) => t.client.id);
      const children = files.map((file, k) =>
        h.spawnClient(tokens[k]?.token as string, ['--data', file, '--holdout', '0']),
      );
      try {
        await waitFor(
          () => h.coordinator.registry.list().filter((c) => ids.includes(c.clientId)).length === 2,
          'both clients',
        );
        expect((await h.api('POST', `/runs/${runId}/start`)).status).toBe(202);
        const run = await waitFor(
          async () => {
            const r = await getRun(runId);
            return (r.status === 'completed' || r.status === 'failed') && r;
          },
          'the run to end',
          120_000,
        );
        expect(run).toMatchObject({ status: 'completed', error: null });
        // What the clients summarised is their whole files (no hold-out), pooled.
        if (task.input.kind !== 'tabular') throw new Error('tabular');
        const rows = files.map((file) => readFileSync(file, 'utf8').trim().split('\n'));
        const pooledText = [rows[0]?.[0], ...rows.flatMap((lines) => lines.slice(1))].join('\n');
        const pooled = tabularStatistics(
          readTabular(pooledText, task.input, task.output),
          task.input,
        );
        expect(run.statistics?.rows).toBe(80);
        expect(run.statistics?.columns[1]).toEqual(pooled.columns[1]);
        const [storedAge, pooledAge] = [run.statistics?.columns[0], pooled.columns[0]] as {
          mean: number;
          m2: number;
        }[];
        expect(storedAge?.mean).toBeCloseTo(pooledAge?.mean as number, 9);
        expect(storedAge?.m2).toBeCloseTo(pooledAge?.m2 as number, 6);
        // Both trained the resolved task's model (3 numeric + 3 wards): round 1 took both.
        const [round] = await h.db.rounds.list(runId);
        expect(new Set(round?.participantClientIds)).toEqual(new Set(ids));
        expect((await h.db.tasks.resolved(run.resolvedTask?.sha256 as string)).paramCount).toBe(
          tabularParams(6, 3, 16),
        );
      } finally {
        for (const child of children) child.kill();
      }
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  }, 180_000);
});
