import { createHash } from 'node:crypto';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { PrismaClient, Task, TaskHoldout } from './generated/client.js';
import {
  isForeignKeyViolation,
  isUniqueViolation,
  jsonObject,
  notFound,
  toJsonInput,
  toPrismaBytes,
  toUint8Array,
} from './internal.js';
import {
  HOLDOUT_FORMATS,
  type HoldoutFormat,
  type ResolvedTaskRecord,
  type TaskHoldoutRecord,
  type TaskRecord,
} from './records.js';
import {
  INT32_MAX,
  invalid,
  requireBytes,
  requireInt,
  requireJsonObject,
  requireSha256,
  requireWeights,
} from './validate.js';

/** Task names: lowercase letters, digits and dashes, starting with a letter or digit. */
export const TASK_NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,63}$/;

export interface CreateTaskInput {
  name: string;
  /** sha256 of the definition's canonical JSON, computed by the caller (@tessera/tasks). */
  sha256: string;
  /** The validated definition, as JSON. */
  definition: Record<string, unknown>;
  /** Length of the model's flat weight vector. */
  paramCount: number;
  /** Initial weights (raw little-endian float32), when the task came with them. */
  weights?: Uint8Array | null;
  builtin?: boolean;
}

/**
 * Tasks by name and version, and by content (sha256). The definition is stored as given:
 * checking it is @tessera/tasks' job at the edge; this repository keeps names, versions and
 * hashes consistent.
 */
export interface PutHoldoutInput {
  /** The task version the held-out set is for. */
  taskSha256: string;
  format: HoldoutFormat;
  /** The file's bytes, as uploaded. */
  data: Uint8Array;
  /** Examples in it, as the caller's reader counted them. */
  rows: number;
}

export class TaskRepository {
  constructor(private readonly prisma: PrismaClient) {}

  /** Version 1 of a new name; a taken name is a CONFLICT (add a version instead). */
  async create(input: CreateTaskInput): Promise<TaskRecord> {
    const data = checkInput(input);
    try {
      return toRecord(await this.prisma.task.create({ data: { ...data, version: 1 } }));
    } catch (error) {
      throw this.conflict(error, data.name, data.sha256);
    }
  }

  /** The next version of an existing name; NOT_FOUND for an unknown name. */
  async addVersion(input: CreateTaskInput): Promise<TaskRecord> {
    const data = checkInput(input);
    return this.prisma.$transaction(async (tx) => {
      const latest = await tx.task.findFirst({
        where: { name: data.name },
        orderBy: { version: 'desc' },
      });
      if (latest === null) throw notFound('task', data.name, { field: 'name' });
      try {
        return toRecord(await tx.task.create({ data: { ...data, version: latest.version + 1 } }));
      } catch (error) {
        throw this.conflict(error, data.name, data.sha256);
      }
    });
  }

  /**
   * Stores a built-in task unless its content is stored already (idempotent: every coordinator
   * start calls it). A built-in whose definition changed becomes the name's next version.
   */
  async ensureBuiltin(input: Omit<CreateTaskInput, 'builtin'>): Promise<TaskRecord> {
    const existing = await this.prisma.task.findUnique({ where: { sha256: input.sha256 } });
    if (existing !== null) return toRecord(existing);
    const known = await this.prisma.task.findFirst({ where: { name: input.name } });
    try {
      return known === null
        ? await this.create({ ...input, builtin: true })
        : await this.addVersion({ ...input, builtin: true });
    } catch (error) {
      // Two coordinators starting at once: the other one stored it first.
      const stored = await this.prisma.task.findUnique({ where: { sha256: input.sha256 } });
      if (stored !== null) return toRecord(stored);
      throw error;
    }
  }

  async get(sha256: string): Promise<TaskRecord> {
    requireSha256('task', sha256);
    const row = await this.prisma.task.findUnique({ where: { sha256 } });
    if (row === null) throw notFound('task', sha256, { field: 'task' });
    return toRecord(row);
  }

  /** A name's latest version, or the given one. */
  async byName(name: string, version?: number): Promise<TaskRecord> {
    const row =
      version === undefined
        ? await this.prisma.task.findFirst({ where: { name }, orderBy: { version: 'desc' } })
        : await this.prisma.task.findUnique({
            where: { name_version: { name, version: requireInt('version', version, 1) } },
          });
    if (row === null) {
      throw notFound('task', version === undefined ? name : `${name}@${version}`, {
        field: 'task',
      });
    }
    return toRecord(row);
  }

  /** Every version of every task, by name then version. */
  async list(): Promise<TaskRecord[]> {
    const rows = await this.prisma.task.findMany({
      orderBy: [{ name: 'asc' }, { version: 'asc' }],
      omit: { weights: true },
    });
    return rows.map((row) => toRecord({ ...row, weights: null }));
  }

  /** A task resolved by a run's statistics round (RunRepository.recordStatistics stores it). */
  async resolved(sha256: string): Promise<ResolvedTaskRecord> {
    requireSha256('task', sha256);
    const row = await this.prisma.resolvedTask.findUnique({ where: { sha256 } });
    if (row === null) throw notFound('resolved task', sha256, { field: 'task' });
    return {
      sha256: row.sha256,
      sourceSha256: row.sourceSha256,
      definition: jsonObject(row.definition),
      paramCount: row.paramCount,
      createdAt: row.createdAt,
    };
  }

  /**
   * The definition stored under a sha256, a task's or a resolved task's: what a client that
   * was told to train it fetches.
   */
  async definition(sha256: string): Promise<Record<string, unknown>> {
    requireSha256('task', sha256);
    const task = await this.prisma.task.findUnique({
      where: { sha256 },
      select: { definition: true },
    });
    if (task !== null) return jsonObject(task.definition);
    return (await this.resolved(sha256)).definition;
  }

  /** The task's initial weights, or null when it has none (they are seeded from the run). */
  async weights(sha256: string): Promise<Uint8Array | null> {
    requireSha256('task', sha256);
    const row = await this.prisma.task.findUnique({
      where: { sha256 },
      select: { weights: true },
    });
    if (row === null) throw notFound('task', sha256, { field: 'task' });
    return row.weights === null ? null : toUint8Array(row.weights);
  }

  /**
   * Stores a task's held-out set, replacing the one it had: the file as uploaded, which the
   * caller checked against the task's input (@tessera/data) and counted. NOT_FOUND for an
   * unknown task.
   */
  async putHoldout(input: PutHoldoutInput): Promise<TaskHoldoutRecord> {
    const taskSha256 = requireSha256('task', input.taskSha256);
    if (!(HOLDOUT_FORMATS as readonly string[]).includes(input.format)) {
      throw invalid('format', `must be one of ${HOLDOUT_FORMATS.join(', ')}`, input.format);
    }
    const data = requireBytes('data', input.data);
    const rows = requireInt('rows', input.rows, 1, INT32_MAX);
    const sha256 = createHash('sha256').update(data).digest('hex');
    const task = await this.prisma.task.findUnique({
      where: { sha256: taskSha256 },
      select: { id: true },
    });
    if (task === null) throw notFound('task', taskSha256, { field: 'task' });
    const values = {
      format: input.format,
      data: toPrismaBytes(data),
      sha256,
      byteLength: data.byteLength,
      rows,
      uploadedAt: new Date(),
    };
    try {
      const row = await this.prisma.taskHoldout.upsert({
        where: { taskSha256 },
        create: { taskSha256, ...values },
        update: values,
        omit: { data: true },
      });
      return toHoldoutRecord(row);
    } catch (error) {
      if (isForeignKeyViolation(error)) throw notFound('task', taskSha256, { field: 'task' });
      throw error;
    }
  }

  /** A task's held-out set with its bytes, or null when none was uploaded. */
  async holdout(taskSha256: string): Promise<(TaskHoldoutRecord & { data: Uint8Array }) | null> {
    requireSha256('task', taskSha256);
    const row = await this.prisma.taskHoldout.findUnique({ where: { taskSha256 } });
    if (row === null) return null;
    return { ...toHoldoutRecord(row), data: toUint8Array(row.data) };
  }

  /** The held-out sets' summaries (no bytes) of these tasks, or of every task. */
  async holdouts(taskSha256s?: readonly string[]): Promise<Map<string, TaskHoldoutRecord>> {
    const rows = await this.prisma.taskHoldout.findMany({
      ...(taskSha256s === undefined ? {} : { where: { taskSha256: { in: [...taskSha256s] } } }),
      omit: { data: true },
    });
    return new Map(rows.map((row) => [row.taskSha256, toHoldoutRecord(row)]));
  }

  private conflict(error: unknown, name: string, sha256: string): unknown {
    if (!isUniqueViolation(error)) return error;
    return new TesseraError(
      ErrorCode.CONFLICT,
      `a task named "${name}" exists already, or one with the same content (sha256 ${sha256.slice(0, 12)}…); add a version of it or choose another name`,
      { field: 'name', name, sha256 },
    );
  }
}

function checkInput(input: CreateTaskInput) {
  if (typeof input.name !== 'string' || !TASK_NAME_PATTERN.test(input.name)) {
    throw invalid(
      'name',
      'must be 1-64 lowercase letters, digits or dashes, starting with a letter or digit',
      input.name,
    );
  }
  const weights =
    input.weights === undefined || input.weights === null
      ? null
      : requireWeights('weights', input.weights);
  const paramCount = requireInt('paramCount', input.paramCount, 1, INT32_MAX);
  if (weights !== null && weights.byteLength !== paramCount * 4) {
    throw invalid(
      'weights',
      `must hold ${paramCount} float32 values (${paramCount * 4} bytes); got ${weights.byteLength} bytes`,
    );
  }
  return {
    name: input.name,
    sha256: requireSha256('sha256', input.sha256),
    definition: toJsonInput(requireJsonObject('definition', input.definition)),
    paramCount,
    weights: weights === null ? null : toPrismaBytes(weights),
    builtin: input.builtin ?? false,
  };
}

function toRecord(row: Task): TaskRecord {
  return {
    id: row.id,
    name: row.name,
    version: row.version,
    sha256: row.sha256,
    definition: jsonObject(row.definition),
    paramCount: row.paramCount,
    hasWeights: row.weights !== null,
    builtin: row.builtin,
    createdAt: row.createdAt,
  };
}

function toHoldoutRecord(row: Omit<TaskHoldout, 'data'>): TaskHoldoutRecord {
  return {
    taskSha256: row.taskSha256,
    format: row.format as HoldoutFormat,
    sha256: row.sha256,
    byteLength: row.byteLength,
    rows: row.rows,
    uploadedAt: row.uploadedAt,
  };
}
