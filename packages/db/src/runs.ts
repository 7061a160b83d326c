import {
  ErrorCode,
  type JsonValue,
  type LocalDpConfig,
  MODEL_TASK_ALIASES,
  parseRunConfig,
  type RequestedTask,
  type RunConfigInput,
  runConfigSchema,
  type SecureAggregationConfig,
  type TaskRef,
  TesseraError,
} from '@tessera/protocol';
import type { PrismaClient, Run, Task } from './generated/client.js';
import { jsonObject, notFound, toJsonInput } from './internal.js';
import { checkFence, type LeaseFence } from './leases.js';
import {
  RUN_ORIGINS,
  RUN_STATUSES,
  type RunOrigin,
  type RunRecord,
  type RunStatus,
} from './records.js';
import {
  INT32_MAX,
  invalid,
  requireId,
  requireInt,
  requireJsonObject,
  requireSha256,
  requireString,
} from './validate.js';

/** What a run's statistics round decided (RunRepository.recordStatistics). */
export interface RecordStatisticsInput {
  /** The combined statistics, as JSON (@tessera/data's TabularStatistics). */
  statistics: Record<string, unknown>;
  /** The task with the statistics' constants filled in: its sha256, definition, model size. */
  resolved: { sha256: string; definition: Record<string, unknown>; paramCount: number };
  fence?: LeaseFence;
}

export interface CreateRunInput {
  federationId: string;
  /** Defaults to "<model>/<strategy>" (a built-in task's), else "<task>/<strategy>". */
  name?: string;
  /**
   * Parsed again here with @tessera/protocol's run config schema (without the model and
   * strategy lists, which the database does not know): a guard for callers that bypass the
   * edges (tests, scripts); a bad field is INVALID_ARGUMENT naming `config.<field>`. Its
   * `task` (or a `model` alias) is resolved here to one stored version (resolveTask).
   */
  config: RunConfigInput;
  /** Default `live`. */
  origin?: RunOrigin;
  /** For a replay: the run it was computed from (same federation). */
  sourceRunId?: string;
}

/**
 * Allowed status changes. Setting the current status again is a no-op (the first call's
 * times and error stay), so a coordinator that restarts can mark its runs running again.
 * Completed, failed and stopped runs are final (a stop discards the open round; `paused` is
 * the resumable end).
 */
const TRANSITIONS: Record<RunStatus, readonly RunStatus[]> = {
  created: ['running', 'stopped', 'failed'],
  running: ['completed', 'failed', 'stopped', 'paused'],
  stopped: [],
  // Paused between rounds by an admin: resumed (running) or ended (stopped) later.
  paused: ['running', 'stopped'],
  completed: [],
  failed: [],
};

export class RunRepository {
  constructor(private readonly prisma: PrismaClient) {}

  async create(input: CreateRunInput): Promise<RunRecord> {
    const federationId = requireId('federationId', input.federationId);
    const {
      task: requested,
      secureAggregation,
      localDp,
      ...config
    } = parseRunConfig(input.config, runConfigSchema, 'config.');
    const task = await this.resolveTask(requested);
    // The stored model says which zoo model a built-in task is (old clients read it).
    const model = task.builtin ? modelOfBuiltin(task.name) : null;
    const name =
      input.name === undefined
        ? `${model ?? task.name}/${config.strategy}`
        : requireString('name', input.name, 200).trim();
    const origin = input.origin ?? 'live';
    if (!(RUN_ORIGINS as readonly unknown[]).includes(origin)) {
      throw invalid('origin', `must be one of ${RUN_ORIGINS.join(', ')}`, origin);
    }
    const sourceRunId =
      input.sourceRunId === undefined ? null : requireId('sourceRunId', input.sourceRunId);
    if ((origin === 'replay') !== (sourceRunId !== null)) {
      throw invalid('sourceRunId', 'is required for a replay, and only for a replay', sourceRunId);
    }
    const federation = await this.prisma.federation.findUnique({
      where: { id: federationId },
      select: { id: true },
    });
    if (federation === null) throw notFound('federation', federationId);
    if (sourceRunId !== null) {
      const source = await this.prisma.run.findUnique({
        where: { id: sourceRunId },
        select: { federationId: true },
      });
      if (source === null) throw notFound('run', sourceRunId);
      if (source.federationId !== federationId) {
        throw invalid('sourceRunId', 'belongs to another federation', sourceRunId);
      }
    }
    const row = await this.prisma.run.create({
      data: {
        federationId,
        name,
        ...config,
        model,
        taskSha256: task.sha256,
        strategyOptions: toJsonInput(config.strategyOptions),
        data: toJsonInput(config.data),
        // Absent (SQL NULL) for the runs without it.
        ...(secureAggregation === null
          ? {}
          : { secureAggregation: toJsonInput({ ...secureAggregation }) }),
        ...(localDp === null ? {} : { localDp: toJsonInput({ ...localDp }) }),
        origin,
        sourceRunId,
      },
      include: WITH_TASK,
    });
    return toRunRecord(row);
  }

  /**
   * The stored task version a config asks for: the name's latest version, or the one given;
   * a sha256, when given, must be that version's. INVALID_ARGUMENT naming `<prefix>task`
   * (or `<prefix>task.version`) otherwise: the run cannot be created.
   */
  async resolveTask(requested: RequestedTask, fieldPrefix = 'config.'): Promise<Task> {
    const { name, version, sha256 } = requested;
    const task =
      version === undefined
        ? await this.prisma.task.findFirst({ where: { name }, orderBy: { version: 'desc' } })
        : await this.prisma.task.findUnique({ where: { name_version: { name, version } } });
    if (task === null) {
      const exists =
        version !== undefined &&
        (await this.prisma.task.findFirst({ where: { name }, select: { id: true } })) !== null;
      throw exists
        ? invalid(
            `${fieldPrefix}task.version`,
            `${version} does not exist for task '${name}'`,
            version,
          )
        : invalid(
            `${fieldPrefix}task`,
            `names no stored task: '${name}' (create it first: POST /api/tasks)`,
            name,
          );
    }
    if (sha256 !== undefined && sha256 !== task.sha256) {
      throw invalid(
        `${fieldPrefix}task.sha256`,
        `does not match task '${name}' version ${task.version} (sha256 ${task.sha256})`,
        sha256,
      );
    }
    return task;
  }

  /**
   * Whether a run of the federation trains the task, as created or as resolved by its
   * statistics round: a client may fetch only those.
   */
  async federationTrains(federationId: string, sha256: string): Promise<boolean> {
    requireId('federationId', federationId);
    const run = await this.prisma.run.findFirst({
      where: { federationId, OR: [{ taskSha256: sha256 }, { resolvedTaskSha256: sha256 }] },
      select: { id: true },
    });
    return run !== null;
  }

  /**
   * Records a run's statistics round, once, in one transaction: the resolved task (stored
   * unless a run resolved the task to the same content before) and, on the run, the combined
   * statistics and the resolved task's sha256. With a fence, a coordinator that lost the run's
   * lease writes nothing. CONFLICT if the run has its statistics already (they never change:
   * every round of the run was or will be trained with them).
   */
  async recordStatistics(id: string, input: RecordStatisticsInput): Promise<RunRecord> {
    requireId('runId', id);
    const statistics = toJsonInput(requireJsonObject('statistics', input.statistics));
    const sha256 = requireSha256('resolved.sha256', input.resolved.sha256);
    const definition = toJsonInput(
      requireJsonObject('resolved.definition', input.resolved.definition),
    );
    const paramCount = requireInt('resolved.paramCount', input.resolved.paramCount, 1, INT32_MAX);
    await this.prisma.$transaction(async (tx) => {
      if (input.fence !== undefined) await checkFence(tx, id, input.fence);
      const run = await tx.run.findUnique({
        where: { id },
        select: { taskSha256: true, resolvedTaskSha256: true },
      });
      if (run === null) throw notFound('run', id);
      const stored = await tx.resolvedTask.findUnique({ where: { sha256 } });
      if (stored === null) {
        await tx.resolvedTask.create({
          data: { sha256, sourceSha256: run.taskSha256, definition, paramCount },
        });
      } else if (stored.sourceSha256 !== run.taskSha256) {
        throw invalid('resolved.sha256', 'is a resolution of another task', sha256);
      }
      const { count } = await tx.run.updateMany({
        where: { id, resolvedTaskSha256: null },
        data: { statistics, resolvedTaskSha256: sha256 },
      });
      if (count === 0) {
        throw new TesseraError(ErrorCode.CONFLICT, `run ${id} has its statistics already`, {
          runId: id,
        });
      }
    });
    return this.get(id);
  }

  async get(id: string): Promise<RunRecord> {
    requireId('runId', id);
    const row = await this.prisma.run.findUnique({ where: { id }, include: WITH_TASK });
    if (row === null) throw notFound('run', id);
    return toRunRecord(row);
  }

  /** Oldest first; NOT_FOUND for an unknown federation. */
  async list(filter: { federationId?: string } = {}): Promise<RunRecord[]> {
    const { federationId } = filter;
    if (federationId !== undefined) requireId('federationId', federationId);
    const rows = await this.prisma.run.findMany({
      where: federationId === undefined ? {} : { federationId },
      orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
      include: WITH_TASK,
    });
    if (rows.length === 0 && federationId !== undefined) {
      const federation = await this.prisma.federation.findUnique({
        where: { id: federationId },
        select: { id: true },
      });
      if (federation === null) throw notFound('federation', federationId);
    }
    return rows.map(toRunRecord);
  }

  /** Runs in a status, oldest first: e.g. the `running` ones a restarted coordinator resumes. */
  async listByStatus(status: RunStatus): Promise<RunRecord[]> {
    requireStatus(status);
    const rows = await this.prisma.run.findMany({
      where: { status },
      orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
      include: WITH_TASK,
    });
    return rows.map(toRunRecord);
  }

  /**
   * Moves a run to `status`: `running` sets startedAt the first time (and clears finishedAt
   * and error on a resume); completed, failed and stopped set finishedAt. An illegal change
   * (e.g. from completed) is a CONFLICT.
   */
  async setStatus(
    id: string,
    status: RunStatus,
    /**
     * `fence`: the caller's lease on the run; once another coordinator has taken the run over,
     * the change is refused (CONFLICT, `data.lease: 'lost'`) and nothing is written.
     */
    options: { error?: string; endReason?: string; fence?: LeaseFence } = {},
  ): Promise<RunRecord> {
    requireId('runId', id);
    requireStatus(status);
    if (options.endReason !== undefined && typeof options.endReason !== 'string') {
      throw invalid('endReason', 'must be a string', options.endReason);
    }
    if (options.error !== undefined && typeof options.error !== 'string') {
      throw invalid('error', 'must be a string', options.error);
    }
    const run = await this.prisma.run.findUnique({ where: { id }, include: WITH_TASK });
    if (run === null) throw notFound('run', id);
    if (run.status === status) return toRunRecord(run);
    if (!TRANSITIONS[run.status].includes(status)) {
      throw new TesseraError(
        ErrorCode.CONFLICT,
        `run ${id} is ${run.status} and cannot become ${status}`,
        { runId: id, from: run.status, to: status },
      );
    }
    const now = new Date();
    // Every target but `running` and `paused` ends the run.
    const data =
      status === 'running'
        ? {
            status,
            startedAt: run.startedAt ?? now,
            finishedAt: null,
            error: null,
            endReason: null,
          }
        : status === 'paused'
          ? { status }
          : {
              status,
              finishedAt: now,
              error: options.error ?? null,
              endReason: options.endReason ?? null,
            };
    // Conditional on the status we checked, so two concurrent changes cannot both win.
    const where = { id, status: run.status };
    const { fence } = options;
    const { count } =
      fence === undefined
        ? await this.prisma.run.updateMany({ where, data })
        : await this.prisma.$transaction(async (tx) => {
            await checkFence(tx, id, fence);
            return tx.run.updateMany({ where, data });
          });
    if (count === 0) {
      throw new TesseraError(ErrorCode.CONFLICT, `run ${id} changed status concurrently`, {
        runId: id,
      });
    }
    return this.get(id);
  }

  /**
   * Moves a run to `to` only if its status is one of `from`, in one conditional UPDATE
   * (`... WHERE status IN (from)`), so of several concurrent callers, in this process or in
   * others on the same database, exactly one wins; the others get CONFLICT with the status
   * they found. Unlike setStatus, the current status is never a silent no-op: starting a
   * running run is a conflict. Times and error are set as setStatus sets them.
   */
  async transition(
    id: string,
    to: RunStatus,
    from: readonly RunStatus[],
    options: { error?: string } = {},
  ): Promise<RunRecord> {
    requireId('runId', id);
    requireStatus(to);
    for (const status of from) requireStatus(status);
    const allowed = from.filter((status) => TRANSITIONS[status].includes(to));
    const now = new Date();
    const data =
      to === 'running'
        ? { status: to, finishedAt: null, error: null, endReason: null }
        : to === 'paused'
          ? { status: to }
          : { status: to, finishedAt: now, error: options.error ?? null };
    const { count } = await this.prisma.run.updateMany({
      where: { id, status: { in: [...allowed] } },
      data,
    });
    if (count === 0) {
      const run = await this.get(id);
      throw new TesseraError(
        ErrorCode.CONFLICT,
        `run ${id} is ${run.status} and cannot become ${to} now`,
        { runId: id, from: run.status, to },
      );
    }
    if (to === 'running') {
      // The first start sets startedAt; a resume keeps it.
      await this.prisma.run.updateMany({
        where: { id, startedAt: null },
        data: { startedAt: now },
      });
    }
    return this.get(id);
  }
}

function requireStatus(status: unknown): asserts status is RunStatus {
  if (!(RUN_STATUSES as readonly unknown[]).includes(status)) {
    throw invalid('status', `must be one of ${RUN_STATUSES.join(', ')}`, status);
  }
}

/** A run row is read with its task's name and version (the config's `task`). */
const WITH_TASK = { task: { select: { name: true, version: true } } } as const;

/** The zoo model whose built-in task this is (MODEL_TASK_ALIASES read backwards), or null. */
function modelOfBuiltin(taskName: string): string | null {
  const entry = Object.entries(MODEL_TASK_ALIASES).find(([, name]) => name === taskName);
  return entry === undefined ? null : entry[0];
}

export function toRunRecord(row: Run & { task: Pick<TaskRef, 'name' | 'version'> }): RunRecord {
  return {
    id: row.id,
    federationId: row.federationId,
    name: row.name,
    status: row.status,
    config: {
      task: { name: row.task.name, version: row.task.version, sha256: row.taskSha256 },
      model: row.model,
      strategy: row.strategy,
      // Stored by create, which parsed them: JSON objects.
      strategyOptions: jsonObject(row.strategyOptions) as Record<string, JsonValue>,
      rounds: row.rounds,
      clientsPerRound: row.clientsPerRound,
      fractionFit: row.fractionFit,
      minClients: row.minClients,
      roundDeadlineMs: row.roundDeadlineMs,
      localEpochs: row.localEpochs,
      batchSize: row.batchSize,
      learningRate: row.learningRate,
      seed: row.seed,
      data: jsonObject(row.data) as Record<string, JsonValue>,
      keepUpdates: row.keepUpdates,
      updateStorageLimitMb: row.updateStorageLimitMb,
      // Stored by create, which parsed it.
      secureAggregation:
        row.secureAggregation === null
          ? null
          : (jsonObject(row.secureAggregation) as unknown as SecureAggregationConfig),
      localDp: row.localDp === null ? null : (jsonObject(row.localDp) as unknown as LocalDpConfig),
    },
    currentRound: row.currentRound,
    origin: row.origin,
    sourceRunId: row.sourceRunId,
    keptUpdateBytes: Number(row.keptUpdateBytes),
    updatesTruncatedAtRound: row.updatesTruncatedAtRound,
    seedDerivation: row.seedDerivation,
    statistics: row.statistics === null ? null : jsonObject(row.statistics),
    // The resolved task keeps its source's name and version: it is that version, resolved.
    resolvedTask:
      row.resolvedTaskSha256 === null
        ? null
        : { name: row.task.name, version: row.task.version, sha256: row.resolvedTaskSha256 },
    error: row.error,
    endReason: row.endReason,
    createdAt: row.createdAt,
    startedAt: row.startedAt,
    finishedAt: row.finishedAt,
  };
}
