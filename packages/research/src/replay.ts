import { createHash } from 'node:crypto';
import {
  createStrategy,
  type EvaluationResult,
  encodeStrategyState,
  recordedArithmetic,
  type Strategy,
} from '@tessera/aggregation';
import type { Database, RoundRecord, RunRecord } from '@tessera/db';
import {
  bytesToWeights,
  ErrorCode,
  TesseraError,
  weightsToBytes,
  zooModelOf,
} from '@tessera/protocol';
import type { RunRecords } from './records.js';

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export interface RoundCheck {
  round: number;
  updates: number;
  recordedSha256: string;
  replayedSha256: string;
  match: boolean;
  /**
   * The recomputed strategy state (encodeStrategyState's bytes) against the one stored with
   * the checkpoint: null where none was stored (a stateless strategy, a run from before states
   * were kept) or the records were read without states (over REST).
   */
  stateMatch: boolean | null;
}

/**
 * Committed rounds whose update bytes were not kept, so they cannot be recomputed: from
 * `fromRound` on, because the run kept none (`keepUpdates` off) or its storage limit was reached.
 */
export interface UncheckedRounds {
  fromRound: number;
  cause:
    | 'keep-updates-off'
    | 'storage-limit'
    | 'differential-privacy'
    | 'secure-aggregation'
    | 'scaffold-control-variates';
  reason: string;
}

/**
 * The rounds that could not be recomputed, checked for integrity instead: each stored
 * checkpoint's bytes hashed again against the sha256 recorded with it.
 */
export interface IntegrityCheck {
  /** Checkpoints hashed (the unchecked rounds'). */
  checked: number;
  /** Rounds whose stored bytes do not hash to their recorded sha256. */
  mismatched: number[];
}

export interface VerifyReport {
  run: RunRecord;
  checks: RoundCheck[];
  /** Rounds committed but not checkable (no kept updates), with the reason; null if none. */
  unchecked: UncheckedRounds | null;
  /** Every committed round was checked and matched, its strategy state too where stored. */
  identical: boolean;
  /** The unchecked rounds' checkpoints against their recorded hashes; null when none. */
  integrity: IntegrityCheck | null;
}

/** Why a run's rounds from `round` on cannot be replayed, or null if they can. */
function unreplayableFrom(run: RunRecord): UncheckedRounds | null {
  // First: even with every update kept, the noise could not be drawn again.
  if (run.config.strategy === 'dp-fedavg' && run.config.secureAggregation !== null) {
    return {
      fromRound: 1,
      cause: 'differential-privacy',
      reason:
        "two causes: dp-fedavg added fresh Gaussian noise to each round from a cryptographic source, which is not recorded, and the run aggregated securely, so the coordinator only ever held the unmasked sum of the clients' clipped changes, never an individual one; no round can be recomputed, and the recorded checkpoints are checked against their hashes instead",
    };
  }
  if (run.config.strategy === 'dp-fedavg') {
    return {
      fromRound: 1,
      cause: 'differential-privacy',
      reason:
        'dp-fedavg added fresh Gaussian noise to each round from a cryptographic source, which is not recorded (and its individual updates are never kept), so no round can be recomputed or claimed bit-identical; the recorded checkpoints are checked against their hashes instead',
    };
  }
  if (run.config.secureAggregation !== null) {
    return {
      fromRound: 1,
      cause: 'secure-aggregation',
      reason:
        'the run aggregated securely: the coordinator only ever held the sum of the masked updates, never an individual one, so no round can be recomputed from individual updates; the recorded checkpoints (each round the unmasked aggregate) are checked against their hashes instead',
    };
  }
  if (!run.config.keepUpdates) {
    return {
      fromRound: 1,
      cause: 'keep-updates-off',
      reason: 'the run kept no update bytes (keepUpdates was off)',
    };
  }
  if (run.updatesTruncatedAtRound !== null && run.updatesTruncatedAtRound <= run.currentRound) {
    return {
      fromRound: run.updatesTruncatedAtRound,
      cause: 'storage-limit',
      reason: `its update storage limit (${run.config.updateStorageLimitMb} MiB) was reached at round ${run.updatesTruncatedAtRound}, so no update bytes were kept from then on`,
    };
  }
  return null;
}

async function checkpointWeights(db: RunRecords, runId: string, round: number, paramCount: number) {
  return bytesToWeights((await db.rounds.checkpoint(runId, round)).weights, paramCount);
}

/**
 * Why round `round` of a SCAFFOLD run cannot be recomputed: its updates were kept without their
 * control-variate changes (committed before Δc_i was kept with them, or read from a coordinator
 * whose REST API did not serve Δc_i yet).
 */
function controlDeltasMissing(round: number): UncheckedRounds {
  return {
    fromRound: round,
    cause: 'scaffold-control-variates',
    reason: `scaffold folds each client's control-variate change (controlDelta) into c with its update, and the updates of round ${round} were read without theirs (recorded before Tessera kept them, or read over the REST API of a coordinator that does not serve them), so no round from ${round} on can be recomputed; their recorded checkpoints are checked against their hashes instead`,
  };
}

/**
 * Folds a round's kept updates, in their recorded arrival order, into `strategy`, Δc_i
 * included where the strategy folds control variates (SCAFFOLD). Null, with nothing folded,
 * when such a strategy meets an update kept without its Δc_i.
 */
async function aggregateRecorded(
  db: RunRecords,
  runId: string,
  round: number,
  strategy: Strategy,
  global: Float32Array,
  rebase: ((weights: Float32Array) => Float32Array) | null,
) {
  const kept = await db.rounds.updatesWithWeights(runId, round);
  const aggregator = strategy.beginRound(round, global);
  // Only a control-variate strategy's aggregator has a c; it changes nothing before finish().
  const foldsControlDeltas = aggregator.controlVariate !== undefined;
  if (foldsControlDeltas && kept.some((update) => update.controlDelta === null)) return null;
  for (const update of kept) {
    const weights = bytesToWeights(update.weights, global.length);
    aggregator.add({
      clientId: update.clientId,
      numExamples: update.numExamples,
      weights: rebase ? rebase(weights) : weights,
      metrics: {},
      ...(foldsControlDeltas && update.controlDelta !== null
        ? { controlDelta: bytesToWeights(update.controlDelta, global.length) }
        : {}),
    });
  }
  const result = aggregator.finish();
  if (result.weights === null) {
    throw new TesseraError(
      ErrorCode.INTERNAL,
      `round ${round} of run ${runId} was committed with no updates`,
      { runId, round },
    );
  }
  return { weights: result.weights, numUpdates: kept.length, numExamples: result.numExamples };
}

/**
 * Recomputes every committed round's global model from the recorded updates with the run's own
 * strategy, starting each round from the recorded previous checkpoint (what the coordinator
 * started from), and compares sha256 with the recorded checkpoint. Aggregation folds updates
 * in recorded arrival order, in the arithmetic the run recorded (strategy option `arithmetic`:
 * float64 in that order, or exact, where order does not matter; packages/aggregation), so a
 * faithful record gives bit-identical checkpoints.
 */
export async function verifyRun(
  db: RunRecords,
  runId: string,
  options: { onRound?: (check: RoundCheck) => void } = {},
): Promise<VerifyReport> {
  const run = await db.runs.get(runId);
  const strategy = createStrategy(run.config.strategy, run.config.strategyOptions);
  const hashes = new Map((await db.rounds.checkpointHashes(runId)).map((h) => [h.round, h]));
  const initial = hashes.get(0);
  if (initial === undefined) {
    throw new TesseraError(ErrorCode.NOT_FOUND, `run ${runId} has no initial checkpoint`, {
      runId,
    });
  }
  let unchecked = unreplayableFrom(run);
  const lastCheckable = unchecked ? unchecked.fromRound - 1 : run.currentRound;
  const checks: RoundCheck[] = [];
  // Each round starts from the recorded previous checkpoint, read once: as round r's record
  // (its state) and as round r + 1's starting model.
  let global = await checkpointWeights(db, runId, 0, initial.paramCount);
  for (let round = 1; round <= lastCheckable; round++) {
    const aggregated = await aggregateRecorded(db, runId, round, strategy, global, null);
    if (aggregated === null) {
      // A SCAFFOLD round without its Δc_i: c, and so every later round, cannot be recomputed.
      unchecked = controlDeltasMissing(round);
      break;
    }
    const { weights, numUpdates } = aggregated;
    const recorded = await db.rounds.checkpoint(runId, round);
    global = bytesToWeights(recorded.weights, initial.paramCount);
    const recordedSha256 = hashes.get(round)?.sha256 ?? '';
    const replayedSha256 = sha256(weightsToBytes(weights));
    const check = {
      round,
      updates: numUpdates,
      recordedSha256,
      replayedSha256,
      match: replayedSha256 === recordedSha256,
      stateMatch: compareState(strategy, recorded.strategyState),
    };
    checks.push(check);
    options.onRound?.(check);
  }
  return {
    run,
    checks,
    unchecked,
    integrity: unchecked === null ? null : await checkIntegrity(db, runId, unchecked, run, hashes),
    identical:
      unchecked === null && checks.every((check) => check.match && check.stateMatch !== false),
  };
}

/** Hashes the stored checkpoints of the unchecked rounds again, against the recorded sha256. */
async function checkIntegrity(
  db: RunRecords,
  runId: string,
  unchecked: UncheckedRounds,
  run: RunRecord,
  hashes: ReadonlyMap<number, { sha256: string }>,
): Promise<IntegrityCheck> {
  const mismatched: number[] = [];
  let checked = 0;
  for (let round = unchecked.fromRound; round <= run.currentRound; round++) {
    const stored = await db.rounds.checkpoint(runId, round);
    checked++;
    if (sha256(stored.weights) !== hashes.get(round)?.sha256) mismatched.push(round);
  }
  return { checked, mismatched };
}

function encodedState(strategy: Strategy): Uint8Array | null {
  const state = strategy.state();
  return state === null ? null : encodeStrategyState(state);
}

/** The strategy's recomputed state against the stored bytes; null when nothing was stored. */
function compareState(strategy: Strategy, stored: Uint8Array | null | undefined): boolean | null {
  if (stored === undefined || stored === null) return null;
  const recomputed = encodedState(strategy);
  return recomputed !== null && sha256(recomputed) === sha256(stored);
}

/**
 * A counterfactual run is a new run, so a summing rule records its arithmetic: the one given,
 * else the source's (so replaying with the source's own rule reproduces its models), else, the
 * source's rule not summing (a median), the schema's default as for any run created now.
 */
function counterfactualOptions(
  source: { strategy: string; strategyOptions: Record<string, unknown> },
  strategy: string,
  given: Record<string, unknown>,
): Record<string, unknown> {
  if (recordedArithmetic(strategy, {}) === null || 'arithmetic' in given) return given;
  const arithmetic = recordedArithmetic(source.strategy, source.strategyOptions);
  return arithmetic === null ? given : { ...given, arithmetic };
}

export interface CounterfactualOptions {
  strategy: string;
  strategyOptions?: Record<string, unknown>;
  name?: string;
  /** Central evaluation of each replayed global model (the source's test set). */
  evaluate?: (model: string, weights: Float32Array) => Promise<EvaluationResult>;
  onRound?: (round: RoundRecord) => void;
}

/**
 * A counterfactual run: what the global models would have been had the run aggregated with
 * another strategy, given the same client updates. A client trained from the source's global
 * model w_{t-1}, so its update is re-based onto the counterfactual model g_{t-1} as
 * g_{t-1} + (w_k - w_{t-1}) before the other strategy aggregates it (for FedAvg on the same
 * model this is the identity). Stored as a new run (origin `replay`, sourceRunId = the
 * source), round by round, with central evaluation when `evaluate` is given.
 */
export async function counterfactualReplay(
  db: Database,
  sourceRunId: string,
  options: CounterfactualOptions,
): Promise<RunRecord> {
  const source = await db.runs.get(sourceRunId);
  const unchecked = unreplayableFrom(source);
  const rounds = unchecked ? unchecked.fromRound - 1 : source.currentRound;
  if (rounds < 1) {
    throw new TesseraError(
      ErrorCode.CONFLICT,
      `run ${sourceRunId} has no replayable round${unchecked ? `: ${unchecked.reason}` : ''}`,
      { runId: sourceRunId },
    );
  }
  const strategy = createStrategy(
    options.strategy,
    counterfactualOptions(source.config, options.strategy, options.strategyOptions ?? {}),
  );
  if (options.strategy === 'scaffold') {
    // Before anything is stored: SCAFFOLD folds every update's Δc_i into c.
    const missing = await firstRoundWithoutControlDeltas(db, sourceRunId, rounds);
    if (missing !== null) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `scaffold cannot be replayed from run ${sourceRunId}: the updates of its round ${missing} were kept without their control-variate changes (controlDelta; only a scaffold run that keeps updates records them), and scaffold folds each into c`,
        { field: 'strategy', runId: sourceRunId, round: missing },
      );
    }
  }
  const sourceRounds = await db.rounds.list(sourceRunId);
  const initial = await db.rounds.checkpoint(sourceRunId, 0);
  const paramCount = initial.paramCount;

  const replay = await db.runs.create({
    federationId: source.federationId,
    name: options.name ?? `${source.name} replayed with ${strategy.name}`,
    config: {
      ...source.config,
      strategy: strategy.name,
      strategyOptions: { ...strategy.options },
      rounds,
      keepUpdates: false,
    },
    origin: 'replay',
    sourceRunId,
  });
  await db.runs.setStatus(replay.id, 'running');
  try {
    // The source's statistics round decided the constants its clients trained with: the
    // replay trains (and records) the same resolved task, never a round of its own.
    if (source.resolvedTask !== null && source.statistics !== null) {
      const resolved = await db.tasks.resolved(source.resolvedTask.sha256);
      await db.runs.recordStatistics(replay.id, {
        statistics: source.statistics,
        resolved: {
          sha256: resolved.sha256,
          definition: resolved.definition,
          paramCount: resolved.paramCount,
        },
      });
    }
    await db.rounds.saveInitialCheckpoint(replay.id, initial.weights);
    let counterfactual = bytesToWeights(initial.weights, paramCount);
    for (let round = 1; round <= rounds; round++) {
      const sourceRound = sourceRounds.find((r) => r.number === round);
      if (sourceRound === undefined) {
        throw new TesseraError(ErrorCode.INTERNAL, `run ${sourceRunId} lacks round ${round}`);
      }
      const startedAt = new Date();
      const sourceGlobal = await checkpointWeights(db, sourceRunId, round - 1, paramCount);
      const base = counterfactual;
      const rebase = (weights: Float32Array) => {
        const out = new Float32Array(weights.length);
        for (let i = 0; i < out.length; i++) {
          out[i] = (base[i] as number) + ((weights[i] as number) - (sourceGlobal[i] as number));
        }
        return out;
      };
      const aggregated = await aggregateRecorded(db, sourceRunId, round, strategy, base, rebase);
      if (aggregated === null) {
        // Checked before the replay run was made; only a record changed meanwhile gets here.
        throw new TesseraError(
          ErrorCode.INTERNAL,
          `round ${round} of run ${sourceRunId} lost its control-variate changes during the replay`,
          { runId: sourceRunId, round },
        );
      }
      const { weights } = aggregated;
      const updates = await db.rounds.updates(sourceRunId, round);
      let record = await db.rounds.commit({
        runId: replay.id,
        round,
        startedAt,
        finishedAt: new Date(),
        selectedClientIds: sourceRound.selectedClientIds,
        participantClientIds: sourceRound.participantClientIds,
        droppedClientIds: sourceRound.droppedClientIds,
        numExamples: sourceRound.numExamples,
        trainLoss: sourceRound.trainLoss,
        trainAccuracy: sourceRound.trainAccuracy,
        metrics: { sourceRound: round },
        updates: updates.map(({ id: _id, roundId: _r, round: _n, kept: _k, ...update }) => update),
        checkpoint: weightsToBytes(weights),
        strategyState: encodedState(strategy),
      });
      counterfactual = weights;
      if (options.evaluate) {
        const central = await options.evaluate(
          zooModelOf(source.config, 'central evaluation'),
          weights,
        );
        record = await db.rounds.recordEvaluation(replay.id, round, { central });
      }
      options.onRound?.(record);
    }
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    await db.runs.setStatus(replay.id, 'failed', { error: message }).catch(() => {});
    throw error;
  }
  return db.runs.setStatus(replay.id, 'completed');
}

/** The first of rounds 1..`rounds` with an update kept without its Δc_i; null when none. */
async function firstRoundWithoutControlDeltas(
  db: RunRecords,
  runId: string,
  rounds: number,
): Promise<number | null> {
  for (let round = 1; round <= rounds; round++) {
    const kept = await db.rounds.updatesWithWeights(runId, round);
    if (kept.some((update) => update.controlDelta === null)) return round;
  }
  return null;
}
