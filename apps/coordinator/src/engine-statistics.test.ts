import * as tfl from '@tensorflow/tfjs-layers';
import {
  combineStatistics,
  readTabular,
  type TabularStatistics,
  tabularStatistics,
} from '@tessera/data';
import type { Database, RunConfigInput, RunRecord } from '@tessera/db';
import { checkTaskModel } from '@tessera/ml';
import {
  ErrorCode,
  type StatisticsReply,
  TesseraError,
  type TrainInstruction,
  weightsToBytes,
} from '@tessera/protocol';
import { counterfactualReplay } from '@tessera/research';
import { parseTaskDefinition, type TaskDefinition, taskSha256 } from '@tessera/tasks';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { RunEngine } from './engine.js';
import { createLogger } from './logger.js';
import { type ClientRegistry, LocalClientRegistry } from './registry.js';
import { withInputWidth } from './resolved-task.js';
import {
  baseConfig as engineTestConfig,
  fakeSession,
  useTestDatabase,
} from './testing/engine-harness.js';
import { InMemoryTransport, type SentMessage } from './testing/memory-transport.js';

/**
 * The federated statistics round of the round engine, over the in-memory Transport, a real
 * ClientRegistry and a real PGlite database: before round 1 of a run whose task leaves
 * constants to statistics, every idle client is asked for its summary, the checked replies are
 * combined in clientId order, the task is resolved (constants filled in, the model's input
 * width following the collected categories) and both are recorded with the run.
 */

const testDatabase = useTestDatabase('engine-statistics');
let db: Database;
let federationCount = 0;

beforeAll(() => {
  db = testDatabase.db;
});

/**
 * Admissions: `age` standardised with federated constants, `ward`'s categories left to the
 * round, `dose` with constants of its own. The topology takes the least width (3).
 */
function admissionsTask(name: string): TaskDefinition {
  return parseTaskDefinition({
    schemaVersion: 1,
    name,
    input: {
      kind: 'tabular',
      label: 'outcome',
      columns: [
        { name: 'age', type: 'numeric', standardize: 'federated' },
        { name: 'ward', type: 'categorical' },
        { name: 'dose', type: 'numeric', standardize: { mean: 5, std: 2 } },
      ],
    },
    output: { kind: 'binary', classes: ['home', 'readmitted'] },
    loss: 'sigmoid-binary-cross-entropy',
    metrics: ['accuracy'],
    model: { topology: binaryTopology(3) },
  });
}

/** Dense(4, relu) -> Dense(1, sigmoid): the binary output's one unit. */
function binaryTopology(width: number): Record<string, unknown> {
  const model = tfl.sequential({
    layers: [
      tfl.layers.dense({ inputShape: [width], units: 4, activation: 'relu' }),
      tfl.layers.dense({ units: 1, activation: 'sigmoid' }),
    ],
  });
  const json = model.toJSON(null, false) as Record<string, unknown>;
  model.dispose();
  return json;
}
const binaryParams = (width: number) => width * 4 + 4 + 4 + 1;

/** Each client's rows (CSV with a header): disjoint, of different sizes and offsets. */
const CLIENT_ROWS = [
  ['age,ward,dose,outcome', '71,north,4,home', '64,south,6,readmitted', '80,north,5,home'],
  ['age,ward,dose,outcome', '35,east,3,home', '42,south,7,home'],
  [
    'age,ward,dose,outcome',
    '1e3,north,5,readmitted',
    '58,east,2,home',
    '49,west,9,readmitted',
    '66,north,1,home',
  ],
];

function statisticsOf(task: TaskDefinition, rows: readonly string[]): TabularStatistics {
  if (task.input.kind !== 'tabular') throw new Error('tabular only');
  return tabularStatistics(readTabular(rows.join('\n'), task.input, task.output), task.input);
}

/** The statistics of every client's rows pooled in one table: what combining must give. */
function pooledStatistics(task: TaskDefinition, clients: readonly number[]): TabularStatistics {
  const rows = clients.flatMap((k) => (CLIENT_ROWS[k] as string[]).slice(1));
  return statisticsOf(task, [(CLIENT_ROWS[0] as string[])[0] as string, ...rows]);
}

/** The engine tests' run config, training the task instead of a zoo model. */
const { model: _zooModel, ...baseConfig } = engineTestConfig;

/** What a fake client does with the statistics instruction: answer (now or later) or not. */
type StatisticsBehaviour =
  | { kind: 'honest'; delayMs?: number }
  | { kind: 'reply'; statistics: unknown; delayMs?: number }
  | { kind: 'failed'; code: string }
  | { kind: 'silent' }
  | { kind: 'disconnect' };

interface Fixture {
  run: RunRecord;
  task: TaskDefinition;
  clientIds: string[];
  registry: ClientRegistry;
  transport: InMemoryTransport;
  engine: RunEngine;
  done: Promise<void>;
  /** The code each statistics reply was answered with, by client. */
  acks: Map<string, string>;
  logs: string[];
}

async function createRun(
  clients: number,
  config: Partial<RunConfigInput> = {},
): Promise<{ run: RunRecord; task: TaskDefinition; clientIds: string[] }> {
  const n = ++federationCount;
  const task = admissionsTask(`admissions-${n}`);
  await db.tasks.create({
    name: task.name,
    sha256: taskSha256(task),
    definition: task as unknown as Record<string, unknown>,
    paramCount: binaryParams(3),
  });
  const federation = await db.federations.create({ name: `statistics ${n}` });
  const clientIds: string[] = [];
  for (let k = 0; k < clients; k++) {
    const { client } = await db.clients.issueToken({
      federationId: federation.id,
      organisation: `hospital-${k}`,
    });
    clientIds.push(client.id);
  }
  const run = await db.runs.create({
    federationId: federation.id,
    config: { ...baseConfig, task: { name: task.name }, ...config },
  });
  return { run, task, clientIds };
}

/** Starts an engine on the run, its clients answering per `behaviours` (default honest). */
async function startEngine(
  created: { run: RunRecord; task: TaskDefinition; clientIds: string[] },
  behaviours: Record<number, StatisticsBehaviour> = {},
  maxRoundAttempts?: number,
  /** Runs once every client is connected, before the engine starts. */
  beforeStart?: (registry: ClientRegistry) => void,
): Promise<Fixture> {
  const { task, clientIds } = created;
  const run = await db.runs.setStatus(created.run.id, 'running');
  const registry = new LocalClientRegistry();
  const transport = new InMemoryTransport();
  const logs: string[] = [];
  const engine = new RunEngine(
    {
      db,
      registry,
      transport,
      logger: createLogger('debug', (line) => logs.push(line)),
      centralEvaluator: null,
      ...(maxRoundAttempts === undefined ? {} : { maxRoundAttempts }),
    },
    run,
  );
  const acks = new Map<string, string>();
  const answer = (clientId: string, reply: StatisticsReply) => {
    registry.touch(clientId);
    try {
      engine.handleStatistics(clientId, reply);
      acks.set(clientId, 'ok');
    } catch (error) {
      if (!(error instanceof TesseraError)) throw error;
      acks.set(clientId, `${error.code} ${String(error.data?.['field'])}`);
    }
  };
  for (const [index, clientId] of clientIds.entries()) {
    const behaviour = behaviours[index] ?? { kind: 'honest' };
    transport.connect(clientId, (message: SentMessage) => {
      if (message.event === 'statistics') {
        const { runId } = message.payload;
        if (behaviour.kind === 'honest') {
          const statistics = statisticsOf(task, CLIENT_ROWS[index] as string[]);
          setTimeout(
            () => answer(clientId, { status: 'ok', runId, statistics }),
            behaviour.delayMs ?? 0,
          );
        } else if (behaviour.kind === 'reply') {
          const { statistics, delayMs } = behaviour;
          const send = () => answer(clientId, { status: 'ok', runId, statistics });
          if (delayMs === undefined) send();
          else setTimeout(send, delayMs);
        } else if (behaviour.kind === 'failed') {
          answer(clientId, {
            status: 'failed',
            runId,
            error: { message: 'cannot', code: behaviour.code },
          });
        } else if (behaviour.kind === 'disconnect') {
          // Asked, then gone without a word: its connection closes.
          setTimeout(() => registry.remove(clientId, `memory-${clientId}`), 0);
        }
      } else if (message.event === 'train') {
        const { runId, round, model } = message.payload;
        registry.touch(clientId);
        engine.handleUpdate(clientId, {
          status: 'ok',
          runId,
          round,
          weights: new Uint8Array(weightsToBytes(new Float32Array(model.paramCount).fill(0.5))),
          numExamples: 3,
          durationMs: 1,
          metrics: { loss: 1 },
        });
      }
    });
    registry.add(fakeSession(run.federationId, clientId, { numExamples: 3, numHoldout: 0 }));
  }
  beforeStart?.(registry);
  const done = engine.execute();
  return { run, task, clientIds, registry, transport, engine, done, acks, logs };
}

/** Numbers equal to 1e-12 relative, strings and structure exactly. */
function expectClose(actual: unknown, expected: unknown, path = 'statistics'): void {
  if (typeof expected === 'number') {
    expect(typeof actual, path).toBe('number');
    const scale = Math.max(1, Math.abs(expected));
    expect(Math.abs((actual as number) - expected) / scale, path).toBeLessThan(1e-12);
  } else if (Array.isArray(expected)) {
    expect(Array.isArray(actual), path).toBe(true);
    expect((actual as unknown[]).length, path).toBe(expected.length);
    for (const [i, value] of expected.entries()) {
      expectClose((actual as unknown[])[i], value, `${path}[${i}]`);
    }
  } else if (typeof expected === 'object' && expected !== null) {
    expect(Object.keys(actual as object).sort(), path).toEqual(Object.keys(expected).sort());
    for (const [key, value] of Object.entries(expected)) {
      expectClose((actual as Record<string, unknown>)[key], value, `${path}.${key}`);
    }
  } else {
    expect(actual, path).toBe(expected);
  }
}

const trainsOf = (transport: InMemoryTransport): TrainInstruction[] =>
  transport.sent.flatMap((m) => (m.event === 'train' ? [m.payload] : []));

describe('the federated statistics round', () => {
  it('records the statistics of the pooled rows and trains the resolved task, its width following the categories', async () => {
    const created = await createRun(3);
    const f = await startEngine(created);
    await f.done;
    const run = await db.runs.get(f.run.id);
    expect(run.status).toBe('completed');

    // Every client was asked, for the task as created.
    const asked = f.transport.sent.filter((m) => m.event === 'statistics');
    expect(asked.map((m) => m.clientId).sort()).toEqual([...f.clientIds].sort());
    expect(asked[0]?.payload.task).toEqual(created.run.config.task);

    const pooled = pooledStatistics(f.task, [0, 1, 2]);
    expectClose(run.statistics, pooled);
    expect(pooled.rows).toBe(9);

    // The resolved task: the constants of the pooled rows, 4 wards -> width 1 + 4 + 1 = 6.
    const resolvedRef = run.resolvedTask;
    expect(resolvedRef).toMatchObject({ name: f.task.name, version: 1 });
    const resolved = await db.tasks.resolved(resolvedRef?.sha256 as string);
    const definition = parseTaskDefinition(resolved.definition);
    expect(taskSha256(definition)).toBe(resolvedRef?.sha256);
    expect(resolved.sourceSha256).toBe(created.run.config.task.sha256);
    if (definition.input.kind !== 'tabular') throw new Error('tabular');
    const [age, ward, dose] = definition.input.columns;
    const ageStats = pooled.columns[0] as { mean: number; m2: number; count: number };
    expect(age).toMatchObject({ name: 'age', type: 'numeric' });
    const standardize = (age as { standardize: { mean: number; std: number } }).standardize;
    expect(standardize.mean).toBeCloseTo(ageStats.mean, 10);
    expect(standardize.std).toBeCloseTo(Math.sqrt(ageStats.m2 / ageStats.count), 10);
    expect(ward).toEqual({
      name: 'ward',
      type: 'categorical',
      categories: ['east', 'north', 'south', 'west'],
    });
    expect(dose).toEqual({ name: 'dose', type: 'numeric', standardize: { mean: 5, std: 2 } });
    const summary = await checkTaskModel(definition, { maxParams: 1e6 });
    expect(summary.inputShape).toEqual([6]);
    expect(resolved.paramCount).toBe(binaryParams(6));

    // Training names the resolved task and its model.
    const [train] = trainsOf(f.transport);
    expect(train?.task).toEqual(resolvedRef);
    expect(train?.model).toEqual({ name: f.task.name, paramCount: binaryParams(6) });
    expect(train?.weights.byteLength).toBe(binaryParams(6) * 4);
  });

  it('combines in clientId order: the stored statistics do not depend on arrival order', async () => {
    // Three summaries whose float64 combination differs by order (m2's last bits).
    const part = (count: number, mean: number, m2: number): TabularStatistics => ({
      rows: count,
      columns: [
        { name: 'age', type: 'numeric', count, mean, m2 },
        { name: 'ward', type: 'categorical', counts: [{ category: 'north', count }] },
      ],
    });
    const parts = [part(3, 0.1, 0.02), part(7, 0.7, 0.3), part(5, 0.3, 0.11)];
    const created = await createRun(3);
    if (created.task.input.kind !== 'tabular') throw new Error('tabular');
    const inIdOrder = combineStatistics(parts, created.task.input);
    const reversed = combineStatistics([...parts].reverse(), created.task.input);
    expect(reversed).not.toEqual(inIdOrder);
    // The client with the k-th smallest id sends parts[k], and the largest id answers first.
    const ranked = [...created.clientIds].sort();
    const behaviours: Record<number, StatisticsBehaviour> = {};
    for (const [index, clientId] of created.clientIds.entries()) {
      const rank = ranked.indexOf(clientId);
      behaviours[index] = { kind: 'reply', statistics: parts[rank], delayMs: (2 - rank) * 50 };
    }
    const f = await startEngine(created, behaviours);
    await f.done;
    expect((await db.runs.get(f.run.id)).statistics).toEqual(inIdOrder);
  });

  it.each([
    [
      'a column not asked for',
      (s: TabularStatistics) => ({
        ...s,
        columns: [...s.columns, { name: 'dose', type: 'numeric', count: 1, mean: 0, m2: 0 }],
      }),
      'statistics.columns',
    ],
    [
      'a negative count',
      (s: TabularStatistics) => ({
        ...s,
        columns: [{ ...(s.columns[0] as object), count: -1 }, s.columns[1]],
      }),
      'statistics.columns[0].count',
    ],
    [
      'a count above rows',
      (s: TabularStatistics) => ({
        ...s,
        columns: [{ ...(s.columns[0] as object), count: s.rows + 1 }, s.columns[1]],
      }),
      'statistics.columns[0].count',
    ],
    [
      'NaN',
      (s: TabularStatistics) => ({
        ...s,
        columns: [{ ...(s.columns[0] as object), mean: Number.NaN }, s.columns[1]],
      }),
      'statistics.columns[0].mean',
    ],
    [
      '2000 categories',
      (s: TabularStatistics) => ({
        ...s,
        rows: 2000,
        columns: [
          { ...(s.columns[0] as object), count: 2000 },
          {
            name: 'ward',
            type: 'categorical',
            counts: Array.from({ length: 2000 }, (_, i) => ({
              category: `w${String(i).padStart(4, '0')}`,
              count: 1,
            })),
          },
        ],
      }),
      'statistics.columns[1].counts',
    ],
    [
      'a category too long',
      (s: TabularStatistics) => ({
        ...s,
        columns: [
          s.columns[0],
          { name: 'ward', type: 'categorical', counts: [{ category: 'x'.repeat(201), count: 1 }] },
        ],
      }),
      'statistics.columns[1].counts[0].category',
    ],
  ])(
    'refuses a reply with %s (code and field), folds none of it, and goes on',
    async (_what, spoil, field) => {
      const created = await createRun(3, { minClients: 2 });
      const honestOf2 = statisticsOf(created.task, CLIENT_ROWS[2] as string[]);
      const f = await startEngine(created, { 2: { kind: 'reply', statistics: spoil(honestOf2) } });
      await f.done;
      expect(f.acks.get(f.clientIds[2] as string)).toBe(`${ErrorCode.INVALID_ARGUMENT} ${field}`);
      const run = await db.runs.get(f.run.id);
      expect(run.status).toBe('completed');
      // Only the two honest clients' rows.
      expectClose(run.statistics, pooledStatistics(f.task, [0, 1]));
    },
  );

  it('retries with too few replies, then fails the run with the reason, storing nothing', async () => {
    const created = await createRun(2, { minClients: 2 });
    const f = await startEngine(
      created,
      { 1: { kind: 'failed', code: 'STATISTICS_NOT_SUPPORTED' } },
      2,
    );
    await f.done;
    const asked = f.transport.sent.filter((m) => m.event === 'statistics');
    expect(asked).toHaveLength(4); // 2 clients x 2 attempts
    const run = await db.runs.get(f.run.id);
    expect(run.status).toBe('failed');
    expect(run.error).toBe('statistics round got fewer than 2 valid replies in 2 attempts');
    expect(run).toMatchObject({ statistics: null, resolvedTask: null });
    expect(trainsOf(f.transport)).toEqual([]);
    expect(await db.rounds.latestCheckpoint(f.run.id)).toBeNull();
  });

  it('closes the round at the deadline without a silent client, and tells it', async () => {
    const created = await createRun(2, { minClients: 1, roundDeadlineMs: 1000 });
    const f = await startEngine(created, { 1: { kind: 'silent' } });
    await f.done;
    const run = await db.runs.get(f.run.id);
    expect(run.status).toBe('completed');
    expectClose(run.statistics, pooledStatistics(f.task, [0]));
    const closed = f.transport.sentTo(f.clientIds[1] as string, 'round-closed');
    expect(closed[0]?.payload).toEqual({
      runId: f.run.id,
      round: 0,
      reason: 'statistics deadline passed',
    });
  });

  it('asks no client that is backing off: its rows are left out', async () => {
    const created = await createRun(3);
    const backingOff = created.clientIds[2] as string;
    const f = await startEngine(created, {}, undefined, (registry) =>
      registry.timedOut(backingOff),
    );
    await f.done;
    const asked = f.transport.sent.filter((m) => m.event === 'statistics').map((m) => m.clientId);
    expect(asked.sort()).toEqual([f.clientIds[0], f.clientIds[1]].sort());
    const run = await db.runs.get(f.run.id);
    expect(run.status).toBe('completed');
    expectClose(run.statistics, pooledStatistics(f.task, [0, 1]));
  });

  it('drops a client that disconnects during the round and closes it without waiting for the deadline', async () => {
    // The deadline (600 s) is far past the test's time-out: only the drop can close the round.
    const created = await createRun(2);
    const f = await startEngine(created, { 1: { kind: 'disconnect' } });
    await f.done;
    expect(f.logs.some((line) => line.includes('"msg":"client dropped out of a round"'))).toBe(
      true,
    );
    const run = await db.runs.get(f.run.id);
    expect(run.status).toBe('completed');
    expectClose(run.statistics, pooledStatistics(f.task, [0]));
    // Gone: it is not told the round closed.
    expect(f.transport.sentTo(f.clientIds[1] as string, 'round-closed')).toEqual([]);
  });

  it('stopped during the round: stores no statistics and trains nothing, even with enough replies', async () => {
    const created = await createRun(2);
    const f = await startEngine(created, { 1: { kind: 'silent' } });
    // The reply comes once the engine has set the run up (database, model): slow under load.
    await vi.waitFor(() => expect(f.acks.get(f.clientIds[0] as string)).toBe('ok'), {
      timeout: 50_000,
    });
    f.engine.stop('stopped');
    await f.done;
    const run = await db.runs.get(f.run.id);
    expect(run).toMatchObject({ status: 'stopped', statistics: null, resolvedTask: null });
    expect(trainsOf(f.transport)).toEqual([]);
    expect(await db.rounds.latestCheckpoint(f.run.id)).toBeNull();
  });

  it('resumes a run whose statistics were recorded without asking again', async () => {
    const created = await createRun(2, { rounds: 2 });
    const first = await startEngine(created);
    first.engine.on('round-committed', ({ round }) => {
      if (round === 1) first.engine.stop('shutdown');
    });
    await first.done;
    const recorded = await db.runs.get(created.run.id);
    expect(recorded.status).toBe('running');
    expect(recorded.currentRound).toBe(1);

    const resumed = await startEngine({ ...created, run: recorded });
    await resumed.done;
    expect(resumed.transport.sent.filter((m) => m.event === 'statistics')).toEqual([]);
    const [train] = trainsOf(resumed.transport);
    expect(train).toMatchObject({ round: 2, task: recorded.resolvedTask });
    const after = await db.runs.get(created.run.id);
    expect(after.status).toBe('completed');
    expect(after.statistics).toEqual(recorded.statistics);
  });

  it('a counterfactual replay records the source statistics and resolved task', async () => {
    const created = await createRun(2, { keepUpdates: true });
    const f = await startEngine(created);
    await f.done;
    const source = await db.runs.get(f.run.id);
    expect(source.resolvedTask).not.toBeNull();
    const replay = await counterfactualReplay(db, source.id, { strategy: 'fedmedian' });
    expect(replay).toMatchObject({
      origin: 'replay',
      status: 'completed',
      statistics: source.statistics,
      resolvedTask: source.resolvedTask,
    });
    // Its checkpoints have the resolved model's size: 3 wards on these 2 clients, width 5.
    expect((await db.rounds.checkpoint(replay.id, 1)).paramCount).toBe(binaryParams(5));
  });

  it('refuses a statistics reply when no statistics round is open (WRONG_ROUND)', async () => {
    const created = await createRun(1);
    const f = await startEngine(created);
    await f.done;
    expect(() =>
      f.engine.handleStatistics(f.clientIds[0] as string, {
        status: 'ok',
        runId: f.run.id,
        statistics: {},
      }),
    ).toThrow(expect.objectContaining({ code: ErrorCode.WRONG_ROUND }));
  });

  it('fails the run when the collected categories cannot fit a model with fixed weights', async () => {
    // A model with initial weights has a fixed width: 3 wards would make 5 features, not 3.
    const n = ++federationCount;
    const base = admissionsTask(`admissions-${n}`);
    const weights = new Float32Array(binaryParams(3)).fill(0.1);
    const bytes = new Uint8Array(weights.buffer);
    const { createHash } = await import('node:crypto');
    const task = parseTaskDefinition({
      ...base,
      model: {
        topology: base.model.topology,
        weights: {
          sha256: createHash('sha256').update(bytes).digest('hex'),
          byteLength: bytes.byteLength,
        },
      },
    });
    await db.tasks.create({
      name: task.name,
      sha256: taskSha256(task),
      definition: task as unknown as Record<string, unknown>,
      paramCount: binaryParams(3),
      weights: bytes,
    });
    const federation = await db.federations.create({ name: `statistics ${n}` });
    const { client } = await db.clients.issueToken({
      federationId: federation.id,
      organisation: 'hospital',
    });
    const run = await db.runs.create({
      federationId: federation.id,
      config: { ...baseConfig, task: { name: task.name } },
    });
    const f = await startEngine({ run, task, clientIds: [client.id] });
    await f.done;
    const failed = await db.runs.get(run.id);
    expect(failed.status).toBe('failed');
    expect(failed.error).toContain('the model takes examples of shape [3]');
    expect(failed).toMatchObject({ statistics: null, resolvedTask: null });
  });
});

describe('withInputWidth', () => {
  const firstLayer = (topology: Record<string, unknown>) =>
    (topology['config'] as { layers: { config: Record<string, unknown> }[] }).layers[0]?.config;

  it("rewrites a Sequential topology's declared input width, and nothing else, in a copy", () => {
    const before = binaryTopology(3);
    const after = withInputWidth(before, 7);
    expect(firstLayer(after)?.['batch_input_shape']).toEqual([null, 7]);
    expect(firstLayer(before)?.['batch_input_shape']).toEqual([null, 3]);
    expect(JSON.stringify(after).replace('[null,7]', '[null,3]')).toBe(JSON.stringify(before));
  });

  it("rewrites a functional model's single InputLayer, and leaves an undeclared input alone", () => {
    const functional = {
      class_name: 'Model',
      config: {
        layers: [
          { class_name: 'InputLayer', config: { batch_input_shape: [null, 3], name: 'in' } },
          { class_name: 'Dense', config: { units: 1, name: 'out' }, inbound_nodes: [] },
        ],
      },
    };
    const after = withInputWidth(functional, 5);
    expect(firstLayer(after)?.['batch_input_shape']).toEqual([null, 5]);
    const undeclared = {
      class_name: 'Sequential',
      config: { layers: [{ class_name: 'Dense', config: { units: 1 } }] },
    };
    expect(withInputWidth(undeclared, 5)).toBe(undeclared);
  });
});
