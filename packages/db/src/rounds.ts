import { createHash, randomUUID } from 'node:crypto';
import { ErrorCode, isStorableText, sha256Hex, TesseraError } from '@tessera/protocol';
import type { ByteParameters } from './byte-parameters.js';
import type { ClientUpdate, Prisma, PrismaClient, Round } from './generated/client.js';
import {
  isForeignKeyViolation,
  isUniqueViolation,
  jsonObject,
  notFound,
  numberRecord,
  type Tx,
  toJsonInput,
  toPrismaBytes,
  toUint8Array,
} from './internal.js';
import { checkFence, type LeaseFence } from './leases.js';
import {
  type CheckpointRecord,
  CLIENT_OUTCOMES,
  type ClientOutcome,
  type ClientUpdateRecord,
  type EvaluationResult,
  type KeptUpdate,
  MAX_OUTCOME_CODE_LENGTH,
  MAX_OUTCOME_REASON_LENGTH,
  type PhasesAfterCommit,
  type PhasesBeforeCommit,
  type RoundCommit,
  type RoundEvaluation,
  type RoundPhases,
  type RoundPrivacyRecord,
  type RoundRecord,
} from './records.js';
import {
  INT32_MAX,
  invalid,
  requireDate,
  requireFinite,
  requireFiniteOrNull,
  requireId,
  requireInt,
  requireMetrics,
  requireOptionalString,
  requireSha256,
  requireString,
  requireStringArray,
  requireWeights,
} from './validate.js';

/**
 * A commit writes a whole checkpoint; Prisma's default 5 s for an interactive transaction
 * is too short for a large model on a slow disk.
 */
const COMMIT_TIMEOUT_MS = 120_000;

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** At most this many hashed at once: each takes a copy of its bytes (libuv's pool has 4). */
const DIGESTS_AT_ONCE = 4;

/** The sha256 of each byte value in the commit (checkpoint, weights, Δc_i), hashed off the loop. */
async function digestsOf(input: RoundCommit): Promise<Map<Uint8Array, string>> {
  const values: Uint8Array[] = [];
  const add = (value: unknown) => {
    if (value instanceof Uint8Array) values.push(value);
  };
  add(input?.checkpoint);
  if (Array.isArray(input?.updates))
    for (const update of input.updates) {
      add(update?.weights);
      add(update?.controlDelta);
    }
  const digests = new Map<Uint8Array, string>();
  let next = 0;
  const hashNext = async (): Promise<void> => {
    while (next < values.length) {
      const value = values[next++] as Uint8Array;
      digests.set(value, await sha256Hex(value));
    }
  };
  await Promise.all(Array.from({ length: DIGESTS_AT_ONCE }, hashNext));
  return digests;
}

export class RoundRepository {
  constructor(
    private readonly prisma: PrismaClient,
    /** Where commit registers the bytes its raw INSERTs name (see byte-parameters.ts). */
    private readonly bytes: ByteParameters,
  ) {}

  /** Stores the run's initial global model as checkpoint 0. */
  async saveInitialCheckpoint(runId: string, weights: Uint8Array): Promise<CheckpointRecord> {
    requireId('runId', runId);
    requireWeights('weights', weights);
    await this.requireRun(runId);
    const record: CheckpointRecord = {
      round: 0,
      weights,
      sha256: sha256(weights),
      paramCount: weights.byteLength / 4,
      strategyState: null,
    };
    try {
      await this.prisma.checkpoint.create({
        data: {
          runId,
          round: 0,
          weights: toPrismaBytes(weights),
          sha256: record.sha256,
          paramCount: record.paramCount,
        },
      });
    } catch (error) {
      if (isUniqueViolation(error)) {
        // A retry whose first attempt was stored but not answered: the same bytes are that
        // checkpoint, not a second one.
        const existing = await this.prisma.checkpoint.findUnique({
          where: { runId_round: { runId, round: 0 } },
          select: { sha256: true },
        });
        if (existing?.sha256 === record.sha256) return record;
        throw new TesseraError(
          ErrorCode.CONFLICT,
          `run ${runId} already has an initial checkpoint with other weights (sha256 ${existing?.sha256 ?? 'unknown'}, not ${record.sha256})`,
          { runId, field: 'weights' },
        );
      }
      if (isForeignKeyViolation(error)) throw notFound('run', runId);
      throw error;
    }
    return record;
  }

  /**
   * Records a finished round in one transaction: the round row, its client updates, the new
   * checkpoint, and run.currentRound = round. Only currentRound + 1 is accepted (CONFLICT
   * otherwise), so a coordinator that resumes after a crash can never commit a round twice.
   * Any failure (e.g. an update naming an unknown client) leaves nothing written.
   *
   * Idempotent by (run, round): committing a round that is already committed with the same
   * checkpoint (same sha256) returns that round's record and writes nothing, so a retry after
   * a COMMIT whose answer was lost in an outage neither fails nor commits twice. The same
   * round with another checkpoint is a CONFLICT.
   */
  async commit(input: RoundCommit): Promise<RoundRecord> {
    // Every hash the commit takes, hashed off the event loop first (a round's kept CNN updates
    // are hundreds of MB): validation and the INSERTs look each up by its bytes' identity.
    const digests = await digestsOf(input);
    const hash = (bytes: Uint8Array) => digests.get(bytes) ?? sha256(bytes);
    const commit = validateCommit(input, hash);
    const { runId, round } = commit;
    const checkpointSha = hash(commit.checkpoint);
    const paramCount = commit.checkpoint.byteLength / 4;
    try {
      return await this.prisma.$transaction(
        async (tx) => {
          // First, so that a stale owner learns it is fenced off rather than "out of order".
          if (commit.fence !== undefined) await checkFence(tx, runId, commit.fence);
          const run = await tx.run.findUnique({
            where: { id: runId },
            select: {
              currentRound: true,
              rounds: true,
              keepUpdates: true,
              updateStorageLimitMb: true,
              keptUpdateBytes: true,
              updatesTruncatedAtRound: true,
            },
          });
          if (run === null) throw notFound('run', runId);
          if (round <= run.currentRound) {
            const existing = await committedAlready(tx, runId, round, checkpointSha);
            if (existing !== null) return existing;
          }
          if (round !== run.currentRound + 1) throw outOfOrder(runId, round, run.currentRound);
          if (round > run.rounds) {
            throw new TesseraError(
              ErrorCode.CONFLICT,
              `run ${runId} has ${run.rounds} rounds; cannot commit round ${round}`,
              { runId, round, rounds: run.rounds },
            );
          }
          // Claims the round: the row lock makes a concurrent commit of the same round wait,
          // then find currentRound moved and update nothing.
          const claimed = await tx.run.updateMany({
            where: { id: runId, currentRound: round - 1 },
            data: { currentRound: round },
          });
          if (claimed.count === 0) {
            // Another commit of this round won meanwhile (read committed: this query sees it).
            const existing = await committedAlready(tx, runId, round, checkpointSha);
            if (existing !== null) return existing;
            throw outOfOrder(runId, round, round);
          }

          await this.requireSameShape(tx, runId, round - 1, paramCount);
          const keep = decideKeep(run, commit, paramCount);
          if (keep.truncate) {
            await tx.run.update({ where: { id: runId }, data: { updatesTruncatedAtRound: round } });
          } else if (keep.bytes > 0) {
            await tx.run.update({
              where: { id: runId },
              data: { keptUpdateBytes: { increment: keep.bytes } },
            });
          }
          const row = await tx.round.create({
            data: {
              runId,
              number: round,
              startedAt: commit.startedAt,
              finishedAt: commit.finishedAt,
              durationMs: commit.finishedAt.getTime() - commit.startedAt.getTime(),
              selectedClientIds: commit.selectedClientIds,
              participantClientIds: commit.participantClientIds,
              droppedClientIds: commit.droppedClientIds,
              numExamples: commit.numExamples,
              trainLoss: commit.trainLoss,
              trainAccuracy: commit.trainAccuracy,
              metrics: toJsonInput(commit.metrics),
              outcomes: (commit.outcomes ?? []).map((outcome) => toJsonInput({ ...outcome })),
              ...(commit.privacy ? { privacy: toJsonInput({ ...commit.privacy }) } : {}),
              ...(commit.phases
                ? {
                    phases: toJsonInput({
                      ...commit.phases,
                      commitMs: null,
                      evaluationMs: null,
                      centralEvaluationMs: null,
                    }),
                  }
                : {}),
            },
          });
          // The update and checkpoint bytes go as raw INSERTs whose bytea parameters reach the
          // driver as bytes (byte-parameters.ts), in this transaction: no base64, no RETURNING.
          await this.bytes.with(async (bytes) => {
            await insertUpdates(tx, bytes, row.id, commit.updates, keep.store, hash);
            await tx.$executeRawUnsafe(
              `INSERT INTO "Checkpoint" ("id", "runId", "round", "weights", "sha256", "paramCount", "strategyState")
               VALUES ($1, $2, $3, $4, $5, $6, $7)`,
              randomUUID(),
              runId,
              round,
              bytes(commit.checkpoint),
              checkpointSha,
              paramCount,
              commit.strategyState ? bytes(commit.strategyState) : null,
            );
          });
          return toRoundRecord(row);
        },
        { timeout: COMMIT_TIMEOUT_MS, maxWait: COMMIT_TIMEOUT_MS },
      );
    } catch (error) {
      if (isForeignKeyViolation(error)) {
        // Everything above was rolled back; the only foreign keys left to break are clients'.
        throw new TesseraError(
          ErrorCode.INVALID_ARGUMENT,
          `round ${round} of run ${runId} has an update from an unknown client; nothing was written`,
          { field: 'updates', runId, round },
          { cause: error },
        );
      }
      if (isUniqueViolation(error)) throw outOfOrder(runId, round, round);
      throw error;
    }
  }

  /**
   * Stores federated and/or central evaluation results of a committed round and marks it
   * evaluated. Each part is recorded once: recording a part again with the same values
   * returns the round unchanged (a retry after an answer lost in an outage), with other
   * values it is a CONFLICT. Federated and central results may be recorded in separate calls.
   */
  async recordEvaluation(
    runId: string,
    round: number,
    evaluation: RoundEvaluation,
    /** `fence`: as for commit; a coordinator that lost the run's lease writes nothing. */
    options: { fence?: LeaseFence } = {},
  ): Promise<RoundRecord> {
    requireId('runId', runId);
    requireInt('round', round, 1);
    const { federated, central } = evaluation;
    if (federated === undefined && central === undefined) {
      throw invalid('evaluation', 'must include federated or central results');
    }
    const parts: Array<{ kind: 'federated' | 'central'; result: EvaluationResult }> = [];
    if (federated !== undefined) {
      parts.push({ kind: 'federated', result: validateEvaluation('federated', federated) });
    }
    if (central !== undefined) {
      parts.push({ kind: 'central', result: validateEvaluation('central', central) });
    }
    const data: Prisma.RoundUpdateManyMutationInput = { status: 'evaluated' };
    // Written only where none of the given parts is recorded yet, so that two writers (or a
    // retry racing its own first attempt) cannot both record one part.
    const unrecorded: Prisma.RoundWhereInput = {};
    if (central?.metrics !== undefined) {
      data.centralMetrics = toJsonInput(requireMetrics('central.metrics', central.metrics));
    }
    for (const { kind, result } of parts) {
      data[`${kind}Loss`] = result.loss;
      data[`${kind}Accuracy`] = result.accuracy;
      data[`${kind}NumExamples`] = result.numExamples;
      unrecorded[`${kind}Loss`] = null;
    }
    const where = { runId, number: round, ...unrecorded };
    const { fence } = options;
    const { count } =
      fence === undefined
        ? await this.prisma.round.updateMany({ where, data })
        : await this.prisma.$transaction(async (tx) => {
            await checkFence(tx, runId, fence);
            return tx.round.updateMany({ where, data });
          });
    const row = await this.prisma.round.findUnique({
      where: { runId_number: { runId, number: round } },
    });
    if (row === null) {
      await this.requireRun(runId);
      throw notFound('round', round, { runId });
    }
    if (count === 0) {
      for (const { kind, result } of parts) {
        const storedExamples = row[`${kind}NumExamples`];
        const recorded = {
          loss: row[`${kind}Loss`],
          accuracy: row[`${kind}Accuracy`],
          // BIGINT column: read back as a number (round totals stay below 2^53).
          numExamples: storedExamples === null ? null : Number(storedExamples),
        };
        if (
          recorded.loss !== result.loss ||
          recorded.accuracy !== result.accuracy ||
          recorded.numExamples !== result.numExamples
        ) {
          throw new TesseraError(
            ErrorCode.CONFLICT,
            `round ${round} of run ${runId} has ${kind} results recorded already (loss ${String(recorded.loss)}, accuracy ${String(recorded.accuracy)}, ${String(recorded.numExamples)} examples); they are not replaced`,
            { runId, round, field: kind },
          );
        }
      }
    }
    return toRoundRecord(row);
  }

  /**
   * Adds the phases that end after the commit (the commit's own time, the evaluation's) to a
   * committed round whose commit recorded the earlier ones. They are measurements, not
   * results: recording them again replaces them (a retry after a lost answer writes the same).
   * INVALID_ARGUMENT for a round committed without phases; nothing is written then.
   */
  async recordPhases(
    runId: string,
    round: number,
    phases: PhasesAfterCommit,
  ): Promise<RoundRecord> {
    requireId('runId', runId);
    requireInt('round', round, 1);
    if (typeof phases !== 'object' || phases === null) throw invalid('phases', 'must be an object');
    const later = {
      commitMs: requireInt('phases.commitMs', phases.commitMs, 0),
      evaluationMs: requireInt('phases.evaluationMs', phases.evaluationMs, 0),
      centralEvaluationMs:
        phases.centralEvaluationMs === null || phases.centralEvaluationMs === undefined
          ? null
          : requireInt('phases.centralEvaluationMs', phases.centralEvaluationMs, 0),
    };
    // One statement: the stored phases and the later ones merged by the database (jsonb ||).
    const count = await this.prisma.$executeRaw`
      UPDATE "Round" SET "phases" = "phases" || ${JSON.stringify(later)}::jsonb
      WHERE "runId" = ${runId} AND "number" = ${round} AND "phases" IS NOT NULL`;
    const record = await this.get(runId, round); // NOT_FOUND for an unknown run or round
    if (count === 0) {
      throw invalid('phases', `round ${round} of run ${runId} was committed without phases`);
    }
    return record;
  }

  /** One committed round. */
  async get(runId: string, round: number): Promise<RoundRecord> {
    requireId('runId', runId);
    requireInt('round', round, 1);
    const row = await this.prisma.round.findUnique({
      where: { runId_number: { runId, number: round } },
    });
    if (row === null) {
      await this.requireRun(runId);
      throw notFound('round', round, { runId });
    }
    return toRoundRecord(row);
  }

  /** A run's committed rounds, by number. */
  async list(runId: string): Promise<RoundRecord[]> {
    requireId('runId', runId);
    const rows = await this.prisma.round.findMany({ where: { runId }, orderBy: { number: 'asc' } });
    if (rows.length === 0) await this.requireRun(runId);
    return rows.map(toRoundRecord);
  }

  /** The client updates of a committed round, in arrival order. */
  async updates(runId: string, round: number): Promise<ClientUpdateRecord[]> {
    requireId('runId', runId);
    requireInt('round', round, 1);
    const row = await this.prisma.round.findUnique({
      where: { runId_number: { runId, number: round } },
      include: {
        updates: { orderBy: { arrivalIndex: 'asc' }, omit: { weights: true, controlDelta: true } },
        run: { select: { keepUpdates: true, updatesTruncatedAtRound: true } },
      },
    });
    if (row === null) {
      await this.requireRun(runId);
      throw notFound('round', round, { runId });
    }
    const kept = roundWasKept(row.run, row.number);
    return row.updates.map((update) => toUpdateRecord(update, row.number, kept));
  }

  /** Every client update of a run (all rounds), by round then arrival, without their bytes. */
  async allUpdates(runId: string): Promise<ClientUpdateRecord[]> {
    requireId('runId', runId);
    const run = await this.prisma.run.findUnique({
      where: { id: runId },
      select: { keepUpdates: true, updatesTruncatedAtRound: true },
    });
    if (run === null) throw notFound('run', runId);
    const rows = await this.prisma.clientUpdate.findMany({
      where: { round: { runId } },
      omit: { weights: true, controlDelta: true },
      include: { round: { select: { number: true } } },
      orderBy: [{ round: { number: 'asc' } }, { arrivalIndex: 'asc' }],
    });
    return rows.map((update) =>
      toUpdateRecord(update, update.round.number, roundWasKept(run, update.round.number)),
    );
  }

  /**
   * A round's kept updates with their bytes, in arrival order (what a replay folds), each
   * checked against its recorded sha256. NOT_FOUND when the run did not keep that round's
   * updates (created without keepUpdates, or past its storage limit).
   */
  async updatesWithWeights(runId: string, round: number): Promise<KeptUpdate[]> {
    requireId('runId', runId);
    requireInt('round', round, 1);
    const row = await this.prisma.round.findUnique({
      where: { runId_number: { runId, number: round } },
      include: {
        updates: { orderBy: { arrivalIndex: 'asc' } },
        run: { select: { keepUpdates: true, updatesTruncatedAtRound: true } },
      },
    });
    const kept = await this.keptRound(row, runId, round);
    return kept.updates.map((update) => {
      if (update.weights === null) {
        throw new TesseraError(
          ErrorCode.INTERNAL,
          `update ${update.arrivalIndex} of round ${round} of run ${runId} has no bytes`,
          { runId, round },
        );
      }
      const weights = toUint8Array(update.weights);
      const actual = sha256(weights);
      if (actual !== update.sha256) {
        throw new TesseraError(
          ErrorCode.INTERNAL,
          `update ${update.arrivalIndex} of round ${round} of run ${runId} is corrupt: sha256 ${actual}, recorded ${update.sha256}`,
          { runId, round },
        );
      }
      return {
        clientId: update.clientId,
        arrivalIndex: update.arrivalIndex,
        numExamples: update.numExamples,
        sha256: update.sha256,
        weights,
        controlDelta: keptControlDelta(update, runId, round),
      };
    });
  }

  /**
   * A SCAFFOLD round's kept control-variate changes Δc_i, in arrival order, without the
   * updates' bytes, each checked against its recorded sha256; an update kept without one is
   * left out. NOT_FOUND as for updatesWithWeights when the round's updates were not kept.
   */
  async controlDeltas(
    runId: string,
    round: number,
  ): Promise<Array<{ clientId: string; arrivalIndex: number; controlDelta: Uint8Array }>> {
    requireId('runId', runId);
    requireInt('round', round, 1);
    const row = await this.prisma.round.findUnique({
      where: { runId_number: { runId, number: round } },
      include: {
        updates: {
          orderBy: { arrivalIndex: 'asc' },
          select: {
            clientId: true,
            arrivalIndex: true,
            controlDelta: true,
            controlDeltaSha256: true,
          },
        },
        run: { select: { keepUpdates: true, updatesTruncatedAtRound: true } },
      },
    });
    const kept = await this.keptRound(row, runId, round);
    return kept.updates.flatMap((update) => {
      const controlDelta = keptControlDelta(update, runId, round);
      return controlDelta === null
        ? []
        : [{ clientId: update.clientId, arrivalIndex: update.arrivalIndex, controlDelta }];
    });
  }

  /**
   * The round's row (null when absent), or NOT_FOUND unless it is committed and its updates were
   * kept: the run was created with keepUpdates and had not reached its storage limit.
   */
  private async keptRound<
    T extends { run: { keepUpdates: boolean; updatesTruncatedAtRound: number | null } },
  >(row: T | null, runId: string, round: number): Promise<T> {
    if (row === null) {
      await this.requireRun(runId);
      throw notFound('round', round, { runId });
    }
    if (!roundWasKept(row.run, round)) {
      const why = row.run.keepUpdates
        ? `its storage limit was reached at round ${row.run.updatesTruncatedAtRound}`
        : 'it was created without keepUpdates';
      throw new TesseraError(
        ErrorCode.NOT_FOUND,
        `round ${round} of run ${runId} has no kept updates: ${why}`,
        { runId, round },
      );
    }
    return row;
  }

  /** Every checkpoint's round and sha256, without the weights (for listings and replay checks). */
  async checkpointHashes(
    runId: string,
  ): Promise<{ round: number; sha256: string; paramCount: number }[]> {
    requireId('runId', runId);
    const rows = await this.prisma.checkpoint.findMany({
      where: { runId },
      select: { round: true, sha256: true, paramCount: true },
      orderBy: { round: 'asc' },
    });
    if (rows.length === 0) await this.requireRun(runId);
    return rows;
  }

  /** The checkpoint a round produced (0: the initial model). */
  async checkpoint(runId: string, round: number): Promise<CheckpointRecord> {
    requireId('runId', runId);
    requireInt('round', round, 0);
    const row = await this.prisma.checkpoint.findUnique({
      where: { runId_round: { runId, round } },
    });
    if (row === null) {
      await this.requireRun(runId);
      throw notFound('checkpoint', round, { runId });
    }
    return toCheckpointRecord(runId, row);
  }

  /**
   * The strategy state stored with a checkpoint, without its weights (null: none was stored);
   * NOT_FOUND as for checkpoint when there is no such checkpoint.
   */
  async strategyState(runId: string, round: number): Promise<Uint8Array | null> {
    requireId('runId', runId);
    requireInt('round', round, 0);
    const row = await this.prisma.checkpoint.findUnique({
      where: { runId_round: { runId, round } },
      select: { strategyState: true },
    });
    if (row === null) {
      await this.requireRun(runId);
      throw notFound('checkpoint', round, { runId });
    }
    return row.strategyState === null ? null : toUint8Array(row.strategyState);
  }

  /** The newest checkpoint of a run (where a resumed run starts from), or null if none yet. */
  async latestCheckpoint(runId: string): Promise<CheckpointRecord | null> {
    requireId('runId', runId);
    const row = await this.prisma.checkpoint.findFirst({
      where: { runId },
      orderBy: { round: 'desc' },
    });
    if (row === null) {
      await this.requireRun(runId);
      return null;
    }
    return toCheckpointRecord(runId, row);
  }

  private async requireRun(runId: string): Promise<void> {
    const run = await this.prisma.run.findUnique({ where: { id: runId }, select: { id: true } });
    if (run === null) throw notFound('run', runId);
  }

  /** A round must keep the model's shape: same parameter count as the checkpoint it follows. */
  private async requireSameShape(
    tx: Tx,
    runId: string,
    previousRound: number,
    paramCount: number,
  ): Promise<void> {
    const previous = await tx.checkpoint.findUnique({
      where: { runId_round: { runId, round: previousRound } },
      select: { paramCount: true },
    });
    if (previous !== null && previous.paramCount !== paramCount) {
      throw invalid(
        'checkpoint',
        `has ${paramCount} parameters but checkpoint ${previousRound} has ${previous.paramCount}`,
      );
    }
  }
}

/**
 * Rows of one INSERT without bytes: at most this many (14 parameters each, under the
 * protocol's 65,535). A row with bytes goes in an INSERT of its own: node-postgres builds a
 * bind message in one buffer that grows by doubling, so several updates in one statement pay
 * copies that one each does not (10 CNN updates: 2.2x plain node-postgres batched, 1.2x alone).
 */
const MAX_INSERT_ROWS = 1000;

const UPDATE_COLUMNS = [
  'id',
  'roundId',
  'clientId',
  'arrivalIndex',
  'numExamples',
  'durationMs',
  'sizeBytes',
  'sha256',
  'metrics',
  'runtime',
  'backend',
  'weights',
  'controlDelta',
  'controlDeltaSha256',
] as const;

/** The round's update rows: those with bytes one per INSERT, the others in batches. */
async function insertUpdates(
  tx: Tx,
  bytes: (value: Uint8Array) => string,
  roundId: string,
  updates: RoundCommit['updates'],
  store: boolean,
  hash: (bytes: Uint8Array) => string,
): Promise<void> {
  const columns = UPDATE_COLUMNS.map((column) => `"${column}"`).join(', ');
  let rows: string[] = [];
  let values: unknown[] = [];
  let batchBytes = 0;
  const flush = async () => {
    if (rows.length === 0) return;
    await tx.$executeRawUnsafe(
      `INSERT INTO "ClientUpdate" (${columns}) VALUES ${rows.join(', ')}`,
      ...values,
    );
    rows = [];
    values = [];
    batchBytes = 0;
  };
  for (const update of updates) {
    const weights = store ? (update.weights ?? null) : null;
    // Δc_i is kept exactly when the update's bytes are (a replay needs both or neither).
    const controlDelta = weights === null ? null : (update.controlDelta ?? null);
    const size = (weights?.byteLength ?? 0) + (controlDelta?.byteLength ?? 0);
    if (rows.length >= MAX_INSERT_ROWS || (rows.length > 0 && (size > 0 || batchBytes > 0))) {
      await flush();
    }
    const first = values.length + 1;
    rows.push(`(${UPDATE_COLUMNS.map((_, index) => `$${first + index}`).join(', ')})`);
    values.push(
      randomUUID(),
      roundId,
      update.clientId,
      update.arrivalIndex,
      update.numExamples,
      update.durationMs,
      update.sizeBytes,
      update.sha256,
      JSON.stringify(update.metrics),
      update.runtime ?? null,
      update.backend ?? null,
      weights === null ? null : bytes(weights),
      controlDelta === null ? null : bytes(controlDelta),
      controlDelta === null ? null : hash(controlDelta),
    );
    batchBytes += size;
  }
  await flush();
}

interface KeepState {
  keepUpdates: boolean;
  updateStorageLimitMb: number;
  keptUpdateBytes: bigint;
  updatesTruncatedAtRound: number | null;
}

/**
 * The storage policy for update bytes: a run that keeps updates stores every update of a
 * round, as long as the run's total stays within updateStorageLimitMb; the first round that
 * would pass it is committed without bytes and marks the run truncated from that round on
 * (a replay then stops before it). A round is kept whole or not at all.
 */
function decideKeep(
  run: KeepState,
  commit: RoundCommit,
  paramCount: number,
): { store: boolean; truncate: boolean; bytes: number } {
  if (!run.keepUpdates || run.updatesTruncatedAtRound !== null) {
    return { store: false, truncate: false, bytes: 0 };
  }
  let bytes = 0;
  for (const [index, update] of commit.updates.entries()) {
    if (!update.weights) {
      throw invalid(`updates[${index}].weights`, 'is required: the run keeps updates');
    }
    if (update.weights.byteLength !== paramCount * 4) {
      throw invalid(
        `updates[${index}].weights`,
        `has ${update.weights.byteLength / 4} parameters but the checkpoint has ${paramCount}`,
      );
    }
    bytes += update.weights.byteLength;
    if (update.controlDelta) {
      if (update.controlDelta.byteLength !== paramCount * 4) {
        throw invalid(
          `updates[${index}].controlDelta`,
          `has ${update.controlDelta.byteLength / 4} values but the checkpoint has ${paramCount}`,
        );
      }
      // Δc_i counts against the run's storage limit like the update it came with.
      bytes += update.controlDelta.byteLength;
    }
  }
  const limit = BigInt(run.updateStorageLimitMb) * 1024n * 1024n;
  if (run.keptUpdateBytes + BigInt(bytes) > limit)
    return { store: false, truncate: true, bytes: 0 };
  return { store: true, truncate: false, bytes };
}

/**
 * A kept update's Δc_i, checked against the sha256 commit stored with it (as its weights are);
 * null when none was kept. Bytes without a hash, or a hash without bytes, are a corrupt record.
 */
function keptControlDelta(
  update: Pick<ClientUpdate, 'arrivalIndex' | 'controlDelta' | 'controlDeltaSha256'>,
  runId: string,
  round: number,
): Uint8Array | null {
  if (update.controlDelta === null && update.controlDeltaSha256 === null) return null;
  const bytes = update.controlDelta === null ? null : toUint8Array(update.controlDelta);
  const actual = bytes === null ? 'none' : sha256(bytes);
  if (bytes === null || actual !== update.controlDeltaSha256) {
    throw new TesseraError(
      ErrorCode.INTERNAL,
      `the controlDelta of update ${update.arrivalIndex} of round ${round} of run ${runId} is corrupt: sha256 ${actual}, recorded ${update.controlDeltaSha256 ?? 'none'}`,
      { runId, round, field: 'controlDelta' },
    );
  }
  return bytes;
}

function roundWasKept(
  run: { keepUpdates: boolean; updatesTruncatedAtRound: number | null },
  round: number,
): boolean {
  return (
    run.keepUpdates && (run.updatesTruncatedAtRound === null || round < run.updatesTruncatedAtRound)
  );
}

/**
 * The record of `round` when it is committed already with this checkpoint; null when it is not
 * committed; CONFLICT when it was committed with another checkpoint.
 */
async function committedAlready(
  tx: Tx,
  runId: string,
  round: number,
  checkpointSha: string,
): Promise<RoundRecord | null> {
  const checkpoint = await tx.checkpoint.findUnique({
    where: { runId_round: { runId, round } },
    select: { sha256: true },
  });
  if (checkpoint === null) return null;
  if (checkpoint.sha256 !== checkpointSha) {
    throw new TesseraError(
      ErrorCode.CONFLICT,
      `run ${runId} has committed round ${round} with another checkpoint (sha256 ${checkpoint.sha256}, not ${checkpointSha})`,
      { runId, round, field: 'checkpoint' },
    );
  }
  const row = await tx.round.findUniqueOrThrow({
    where: { runId_number: { runId, number: round } },
  });
  return toRoundRecord(row);
}

function outOfOrder(runId: string, round: number, currentRound: number): TesseraError {
  return new TesseraError(
    ErrorCode.CONFLICT,
    `run ${runId} has committed round ${currentRound}; round ${round} cannot be committed (expected ${currentRound + 1})`,
    { runId, round, currentRound },
  );
}

function validateCommit(input: RoundCommit, hash: (bytes: Uint8Array) => string): RoundCommit {
  if (typeof input !== 'object' || input === null) throw invalid('commit', 'must be an object');
  const runId = requireId('runId', input.runId);
  const round = requireInt('round', input.round, 1);
  const startedAt = requireDate('startedAt', input.startedAt);
  const finishedAt = requireDate('finishedAt', input.finishedAt);
  const durationMs = finishedAt.getTime() - startedAt.getTime();
  if (durationMs < 0) throw invalid('finishedAt', 'must not be before startedAt');
  if (durationMs > INT32_MAX) throw invalid('finishedAt', 'is more than 24 days after startedAt');

  const selected = new Set(requireStringArray('selectedClientIds', input.selectedClientIds));
  const participants = requireStringArray('participantClientIds', input.participantClientIds);
  const dropped = requireStringArray('droppedClientIds', input.droppedClientIds);
  const participantSet = new Set(participants);
  for (const id of participants) {
    if (!selected.has(id))
      throw invalid('participantClientIds', `lists ${id}, which was not selected`);
  }
  for (const id of dropped) {
    if (!selected.has(id)) throw invalid('droppedClientIds', `lists ${id}, which was not selected`);
    if (participantSet.has(id)) throw invalid('droppedClientIds', `lists ${id}, which took part`);
  }

  if (!Array.isArray(input.updates)) throw invalid('updates', 'must be an array');
  const arrivalIndexes = new Set<number>();
  const updateClients = new Set<string>();
  const updates = input.updates.map((update, index) => {
    const field = (name: string) => `updates[${index}].${name}`;
    const clientId = requireId(field('clientId'), update.clientId);
    if (!participantSet.has(clientId)) {
      throw invalid(field('clientId'), `${clientId} is not among participantClientIds`);
    }
    if (updateClients.has(clientId))
      throw invalid(field('clientId'), `${clientId} has two updates`);
    updateClients.add(clientId);
    const arrivalIndex = requireInt(field('arrivalIndex'), update.arrivalIndex, 0);
    if (arrivalIndexes.has(arrivalIndex)) {
      throw invalid(field('arrivalIndex'), `${arrivalIndex} is used twice`);
    }
    arrivalIndexes.add(arrivalIndex);
    // The one hash of a kept update is this one, of the bytes about to be stored: the record
    // then cannot describe other bytes than it holds, whatever the caller says (a replay checks
    // the bytes against it again on the way out). The coordinator leaves sha256 out for the
    // updates it keeps, and hashes on arrival only those whose bytes are not kept.
    let weights: Uint8Array | null = null;
    let updateSha: string;
    if (update.weights !== undefined && update.weights !== null) {
      weights = requireWeights(field('weights'), update.weights);
      updateSha = hash(weights);
      if (
        update.sha256 !== undefined &&
        requireSha256(field('sha256'), update.sha256) !== updateSha
      ) {
        throw invalid(field('weights'), "do not match the update's sha256");
      }
    } else {
      updateSha = requireSha256(field('sha256'), update.sha256);
    }
    return {
      clientId,
      arrivalIndex,
      numExamples: requireInt(field('numExamples'), update.numExamples, 0),
      durationMs: requireInt(field('durationMs'), update.durationMs, 0),
      sizeBytes: requireInt(field('sizeBytes'), update.sizeBytes, 0),
      sha256: updateSha,
      metrics: requireMetrics(field('metrics'), update.metrics),
      weights,
      controlDelta:
        update.controlDelta === undefined || update.controlDelta === null
          ? null
          : requireWeights(field('controlDelta'), update.controlDelta),
      runtime: requireOptionalString(field('runtime'), update.runtime, 64),
      backend: requireOptionalString(field('backend'), update.backend, 64),
    };
  });

  const outcomes = validateOutcomes(input.outcomes ?? [], selected, participantSet);

  return {
    runId,
    round,
    startedAt,
    finishedAt,
    selectedClientIds: [...selected],
    participantClientIds: participants,
    droppedClientIds: dropped,
    // A sum over the round's clients: stored as BIGINT, exact up to 2^53 - 1.
    numExamples: requireInt('numExamples', input.numExamples, 0, Number.MAX_SAFE_INTEGER),
    trainLoss: requireFiniteOrNull('trainLoss', input.trainLoss),
    trainAccuracy: requireFiniteOrNull('trainAccuracy', input.trainAccuracy),
    metrics: requireMetrics('metrics', input.metrics),
    outcomes,
    updates,
    checkpoint: requireWeights('checkpoint', input.checkpoint),
    strategyState: requireOptionalBytes('strategyState', input.strategyState),
    privacy: requirePrivacy(input.privacy),
    ...(input.phases === undefined ? {} : { phases: requirePhasesBeforeCommit(input.phases) }),
    fence: input.fence === undefined ? undefined : requireFence(input.fence),
  };
}

const PHASES_BEFORE_COMMIT = [
  'waitingMs',
  'distributionMs',
  'trainingMs',
  'aggregationMs',
] as const;

function requirePhasesBeforeCommit(value: unknown): PhasesBeforeCommit {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid('phases', 'must be an object', value);
  }
  const entries = value as Record<string, unknown>;
  const out = {} as Record<(typeof PHASES_BEFORE_COMMIT)[number], number>;
  for (const key of PHASES_BEFORE_COMMIT) out[key] = requireInt(`phases.${key}`, entries[key], 0);
  return out;
}

/** The phases column as written by commit and recordPhases; null when it holds another shape. */
function phasesRecord(value: Prisma.JsonValue): RoundPhases | null {
  const entries = jsonObject(value);
  const at = (key: string): number | null => {
    const entry = entries[key];
    return typeof entry === 'number' && Number.isFinite(entry) ? entry : null;
  };
  const [waitingMs, distributionMs, trainingMs, aggregationMs] = PHASES_BEFORE_COMMIT.map(at);
  if (waitingMs == null || distributionMs == null || trainingMs == null || aggregationMs == null) {
    return null;
  }
  return {
    waitingMs,
    distributionMs,
    trainingMs,
    aggregationMs,
    commitMs: at('commitMs'),
    evaluationMs: at('evaluationMs'),
    centralEvaluationMs: at('centralEvaluationMs'),
  };
}

/** A flat record of finite numbers, short strings, booleans and nulls (RoundPrivacyRecord). */
function requirePrivacy(value: unknown): RoundPrivacyRecord | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw invalid('privacy', 'must be an object or null', value);
  }
  const out: Record<string, number | string | boolean | null> = {};
  for (const [key, entry] of Object.entries(value)) {
    const ok =
      entry === null ||
      typeof entry === 'boolean' ||
      (typeof entry === 'number' && Number.isFinite(entry)) ||
      (typeof entry === 'string' && entry.length <= 200);
    if (!ok || key.length > 64) {
      throw invalid(
        `privacy.${key.slice(0, 64)}`,
        'must be a finite number, a string of at most 200 characters, a boolean or null',
        entry,
      );
    }
    out[key] = entry;
  }
  return out;
}

function requireOptionalBytes(field: string, value: unknown): Uint8Array | null {
  if (value === undefined || value === null) return null;
  if (!(value instanceof Uint8Array)) throw invalid(field, 'must be a Uint8Array or null', value);
  return value;
}

function requireFence(fence: LeaseFence): LeaseFence {
  if (typeof fence !== 'object' || fence === null) throw invalid('fence', 'must be an object');
  return {
    owner: requireString('fence.owner', fence.owner, 200),
    token: requireInt('fence.token', fence.token, 1, Number.MAX_SAFE_INTEGER),
  };
}

/**
 * At most one outcome per selected client; `updated` exactly for the participants, so the
 * outcomes never contradict participantClientIds. Reasons and codes are bounded and storable.
 */
function validateOutcomes(
  value: unknown,
  selected: ReadonlySet<string>,
  participants: ReadonlySet<string>,
): ClientOutcome[] {
  if (!Array.isArray(value)) throw invalid('outcomes', 'must be an array');
  const seen = new Set<string>();
  return value.map((item: unknown, index) => {
    const field = (name: string) => `outcomes[${index}].${name}`;
    if (typeof item !== 'object' || item === null)
      throw invalid(`outcomes[${index}]`, 'must be an object');
    const entry = item as Record<string, unknown>;
    const clientId = requireId(field('clientId'), entry['clientId']);
    if (!selected.has(clientId)) throw invalid(field('clientId'), `${clientId} was not selected`);
    if (seen.has(clientId)) throw invalid(field('clientId'), `${clientId} has two outcomes`);
    seen.add(clientId);
    const outcome = entry['outcome'];
    if (!CLIENT_OUTCOMES.some((known) => known === outcome)) {
      throw invalid(field('outcome'), `must be one of ${CLIENT_OUTCOMES.join(', ')}`, outcome);
    }
    const kind = outcome as ClientOutcome['outcome'];
    if ((kind === 'updated') !== participants.has(clientId)) {
      throw invalid(
        field('outcome'),
        kind === 'updated'
          ? `is updated but ${clientId} is not among participantClientIds`
          : `is ${kind} but ${clientId} is among participantClientIds`,
      );
    }
    return {
      clientId,
      outcome: kind,
      code: requireStorable(
        field('code'),
        requireOptionalString(field('code'), entry['code'], MAX_OUTCOME_CODE_LENGTH),
      ),
      reason: requireStorable(
        field('reason'),
        requireOptionalString(field('reason'), entry['reason'], MAX_OUTCOME_REASON_LENGTH),
      ),
    };
  });
}

function requireStorable(field: string, value: string | null): string | null {
  if (value !== null && !isStorableText(value))
    throw invalid(field, 'must not contain NUL characters or unpaired surrogates');
  return value;
}

function validateEvaluation(kind: string, result: EvaluationResult): EvaluationResult {
  if (typeof result !== 'object' || result === null) throw invalid(kind, 'must be an object');
  const accuracy = requireFinite(`${kind}.accuracy`, result.accuracy);
  if (accuracy < 0 || accuracy > 1) {
    throw invalid(`${kind}.accuracy`, `must be in [0, 1] (got ${accuracy})`, accuracy);
  }
  return {
    loss: requireFinite(`${kind}.loss`, result.loss),
    accuracy,
    numExamples: requireInt(`${kind}.numExamples`, result.numExamples, 0, Number.MAX_SAFE_INTEGER),
  };
}

function toRoundRecord(row: Round): RoundRecord {
  return {
    id: row.id,
    runId: row.runId,
    number: row.number,
    status: row.status,
    startedAt: row.startedAt,
    finishedAt: row.finishedAt,
    durationMs: row.durationMs,
    selectedClientIds: row.selectedClientIds,
    participantClientIds: row.participantClientIds,
    droppedClientIds: row.droppedClientIds,
    numExamples: Number(row.numExamples),
    trainLoss: row.trainLoss,
    trainAccuracy: row.trainAccuracy,
    federatedLoss: row.federatedLoss,
    federatedAccuracy: row.federatedAccuracy,
    federatedNumExamples: nullableNumber(row.federatedNumExamples),
    centralLoss: row.centralLoss,
    centralAccuracy: row.centralAccuracy,
    centralNumExamples: nullableNumber(row.centralNumExamples),
    centralMetrics: row.centralMetrics === null ? null : numberRecord(row.centralMetrics),
    metrics: numberRecord(row.metrics),
    outcomes: outcomeList(row.outcomes),
    privacy: row.privacy === null ? null : privacyRecord(row.privacy),
    phases: row.phases === null ? null : phasesRecord(row.phases),
  };
}

/** The privacy column as written by commit: its flat entries (anything nested is skipped). */
function privacyRecord(value: Prisma.JsonValue): RoundPrivacyRecord {
  const out: Record<string, number | string | boolean | null> = {};
  for (const [key, entry] of Object.entries(jsonObject(value))) {
    if (entry === null || ['number', 'string', 'boolean'].includes(typeof entry)) {
      out[key] = entry as number | string | boolean | null;
    }
  }
  return out;
}

/** The outcomes column as written by commit; entries of any other shape are skipped. */
function outcomeList(value: Prisma.JsonValue): ClientOutcome[] {
  if (!Array.isArray(value)) return [];
  const out: ClientOutcome[] = [];
  for (const item of value) {
    const entry = jsonObject(item);
    const { clientId, outcome, code, reason } = entry;
    if (typeof clientId !== 'string') continue;
    if (!CLIENT_OUTCOMES.some((known) => known === outcome)) continue;
    out.push({
      clientId,
      outcome: outcome as ClientOutcome['outcome'],
      code: typeof code === 'string' ? code : null,
      reason: typeof reason === 'string' ? reason : null,
    });
  }
  return out;
}

function nullableNumber(value: bigint | null): number | null {
  return value === null ? null : Number(value);
}

function toUpdateRecord(
  row: Omit<ClientUpdate, 'weights' | 'controlDelta'>,
  round: number,
  kept: boolean,
): ClientUpdateRecord {
  return {
    id: row.id,
    roundId: row.roundId,
    round,
    clientId: row.clientId,
    arrivalIndex: row.arrivalIndex,
    numExamples: row.numExamples,
    durationMs: row.durationMs,
    sizeBytes: row.sizeBytes,
    sha256: row.sha256,
    metrics: numberRecord(row.metrics),
    runtime: row.runtime,
    backend: row.backend,
    kept,
    controlDeltaSha256: row.controlDeltaSha256,
  };
}

/** Verifies the stored hash on the way out: a resumed run must not start from corrupt weights. */
function toCheckpointRecord(
  runId: string,
  row: {
    round: number;
    weights: Uint8Array;
    sha256: string;
    paramCount: number;
    strategyState: Uint8Array | null;
  },
): CheckpointRecord {
  const weights = toUint8Array(row.weights);
  const actual = sha256(weights);
  if (actual !== row.sha256) {
    throw new TesseraError(
      ErrorCode.INTERNAL,
      `checkpoint ${row.round} of run ${runId} is corrupt: sha256 ${actual}, recorded ${row.sha256}`,
      { runId, round: row.round },
    );
  }
  return {
    round: row.round,
    weights,
    sha256: row.sha256,
    paramCount: row.paramCount,
    strategyState: row.strategyState === null ? null : toUint8Array(row.strategyState),
  };
}
