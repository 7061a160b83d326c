import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type {
  EvaluationReply,
  EvaluationResult,
  RoundAggregator,
  Strategy,
} from '@tessera/aggregation';
import {
  createStrategy,
  decodeStrategyState,
  encodeStrategyState,
  isLinearStrategy,
  recordedArithmetic,
} from '@tessera/aggregation';
import {
  combineStatistics,
  createRng,
  parseTabularStatistics,
  type TabularStatistics,
} from '@tessera/data';
import {
  type ClientOutcome,
  type ClientUpdateInput,
  type Database,
  isTransientDatabaseError,
  type LeaseFence,
  MAX_OUTCOME_CODE_LENGTH,
  MAX_OUTCOME_REASON_LENGTH,
  type RoundPrivacyRecord,
  type RoundRecord,
  type RunRecord,
} from '@tessera/db';
import {
  buildTaskModel,
  checkTaskModel,
  DEFAULT_MAX_TASK_PARAMS,
  getFlatWeights,
  initialWeights,
  modelSpec,
} from '@tessera/ml';
import {
  bytesToWeights,
  decodeWeights,
  ErrorCode,
  type EvaluateReply,
  type ModelDescriptor,
  type SecAggClientFrame,
  type StatisticsReply,
  sha256Hex,
  type TaskRef,
  TesseraError,
  type TrainReply,
  trainConfigFor,
  WIRE_LIMITS,
  weightsToBytes,
} from '@tessera/protocol';
import { MAX_CLIENTS as SECAGG_MAX_CLIENTS } from '@tessera/secagg';
import {
  parseTaskDefinition,
  type TaskDefinition,
  taskNeedsStatistics,
  taskSha256,
} from '@tessera/tasks';
import type { ClaimVerdict, CollectedPartial, RemoteUpdateClaim } from './cluster/remote-fold.js';
import type { Logger } from './logger.js';
import { PhaseClock } from './phase-clock.js';
import type { ClientRegistry, ClientSession, ClientTask } from './registry.js';
import { resolveTaskDefinition } from './resolved-task.js';
import { checkLocalDp, privacySettingsFor, roundPrivacyRecord } from './round-privacy.js';
import { RoundState } from './round-state.js';
import { isLeaseLost } from './run-leases.js';
import { cryptoUniform, sampleSize, selectClients, selectPoisson } from './sampling.js';
import { SecAggRound, secAggFailureRecord, secAggRecord } from './secagg-round.js';
import { deriveSeed, requireSeedDerivation, type SeedDerivation } from './seeds.js';
import { trainGroups } from './train-settings.js';
import type { Transport } from './transport.js';
import { Wakeup } from './wakeup.js';

/**
 * Evaluates a run's global model on data the coordinator holds (MNIST's test set for the
 * built-in tasks, a task's uploaded held-out set): null where it holds none for the run.
 * `metrics`: the task's own metrics, recorded with the round.
 */
export interface CentralEvaluator {
  evaluate(
    run: Pick<RunRecord, 'config' | 'resolvedTask'>,
    weights: Float32Array,
  ): Promise<CentralResult | null>;
}

/** A central evaluation's figures, with the task's own metrics. */
type CentralResult = EvaluationResult & { metrics?: Record<string, number> };

export interface EngineDeps {
  db: Database;
  registry: ClientRegistry;
  transport: Transport;
  logger: Logger;
  centralEvaluator: CentralEvaluator | null;
  /** How often a round is retried when too few updates arrive before giving the run up. */
  maxRoundAttempts?: number;
  /**
   * The run's lease, carried by every commit: once another coordinator has taken the run over,
   * this engine's commits are refused and write nothing. Absent: unfenced (one process only).
   */
  fence?: LeaseFence;
  /**
   * The most parameters the model of a task resolved by a statistics round may have (its
   * input grows with the categories collected): the limit tasks are created under.
   */
  maxTaskParams?: number;
  /**
   * Cluster mode: the partial sums other processes folded of a round's updates where they
   * arrived (cluster/remote-fold.ts), collected before the round is summed. Absent: one
   * process, every update comes here.
   */
  remotePartials?: RemotePartials;
  /**
   * A step that waits on the database or on the central evaluation (a round's commit, the last
   * round's evaluation record) is logged as still running once it has taken this long, and
   * again each time as long again (default 10 s): a stall shows in the log, not as silence.
   */
  slowStepMs?: number;
}

/** Collects the partial sums of one attempt of a round from the processes that folded them. */
export interface RemotePartials {
  /** Per process: its partial, null when it folded nothing, or why none came. */
  collect(
    runId: string,
    key: string,
    processIds: readonly string[],
  ): Promise<ReadonlyMap<string, CollectedPartial | null | TesseraError>>;
}

export interface RoundSummary {
  runId: string;
  round: number;
  record: RoundRecord;
}

interface EngineEvents {
  'round-started': [{ runId: string; round: number; attempt: number; selected: string[] }];
  /** The statistics round was recorded: train and evaluate name `resolvedTask` from now on. */
  'statistics-recorded': [{ runId: string; resolvedTask: TaskRef; clients: number }];
  'round-committed': [RoundSummary];
  'round-evaluated': [RoundSummary];
  'run-finished': [{ runId: string; status: RunRecord['status']; error?: string }];
}

interface OpenTraining {
  state: RoundState;
  /** The model the round trains from (local DP's norm check measures changes from it). */
  global: Float32Array;
  aggregator: RoundAggregator;
  updates: ClientUpdateInput[];
  /**
   * The sha256 of each accepted update whose bytes are not kept, hashed off the event loop
   * (sha256Hex) while the round goes on; the commit waits for them. Kept bytes are hashed by
   * the commit that stores them.
   */
  digests: Map<string, Promise<string>>;
  /** Why a client failed or was rejected, as it goes into the round record. */
  reasons: Map<string, { code: string | null; reason: string }>;
  /**
   * Updates folded by other processes (acceptRemoteUpdate): the attempt's key, which names
   * its partials, and per process the clients accepted with their example counts.
   */
  remote?: { key: string; byProcess: Map<string, Map<string, number>> };
}

/** The round's update records, each unkept update with the sha256 hashed on its arrival. */
async function withDigests(open: OpenTraining): Promise<ClientUpdateInput[]> {
  return Promise.all(
    open.updates.map(async (update) => {
      const digest = open.digests.get(update.clientId);
      return update.sha256 !== undefined || digest === undefined
        ? update
        : { ...update, sha256: await digest };
    }),
  );
}

/** The federated statistics round while it is open (round 0 of RoundState). */
interface OpenStatistics {
  state: RoundState;
  /** The task as created, whose columns the replies summarise. */
  task: TaskDefinition & { input: { kind: 'tabular' } };
  /** Each accepted reply, checked; only their combination is ever stored. */
  parts: Map<string, TabularStatistics>;
}

interface OpenEvaluation {
  state: RoundState;
  replies: EvaluationReply[];
}

/**
 * shutdown: the process is going away, the run stays `running` to be resumed; lease-lost:
 * another coordinator took the run over, the run stays `running` for it; stopped: an
 * admin stopped it; paused: an admin paused it between rounds (resumable); completed: it
 * reached its goal early (e.g. a target accuracy).
 */
type StopReason = 'shutdown' | 'lease-lost' | 'stopped' | 'paused' | 'completed';

/**
 * Drives one run: for each round, sample idle clients, send them the global model, fold their
 * updates into the strategy's aggregator as they arrive, close the round when everyone answered
 * or the deadline passed, commit the new checkpoint and the round record in one transaction,
 * then evaluate. All network I/O goes through `Transport`, all storage through `Database`.
 */
export class RunEngine extends EventEmitter<EngineEvents> {
  private readonly strategy: Strategy;
  /** Set by prepareModel before the loop: a built-in task's from the zoo, others' from the task. */
  private model: ModelDescriptor;
  /** What train and evaluate name: the run's task, or the one its statistics round resolved. */
  private task: TaskRef;
  private readonly wakeup = new Wakeup();
  private statistics: OpenStatistics | null = null;
  private training: OpenTraining | null = null;
  private evaluation: OpenEvaluation | null = null;
  /** Times the round being trained and committed (Round.phases); evaluateRound takes it over. */
  private roundClock: PhaseClock | null = null;
  /** Why the evaluation running beside the next round failed, until the loop rethrows it. */
  private evaluationFailure: unknown = undefined;
  /** The secure aggregation of the training round open, in a secureAggregation run. */
  private secAgg: SecAggRound | null = null;
  private stopReason: StopReason | null = null;
  /** Set by endAfterRound: how the run ends once its open round is over. */
  private endAfter: 'paused' | null = null;
  /** Settles when the run is handed over (shutdown, lease lost). */
  private handedOver: () => void = () => {};
  private readonly handOver = new Promise<void>((resolve) => {
    this.handedOver = resolve;
  });
  private readonly maxRoundAttempts: number;
  private readonly seedDerivation: SeedDerivation;
  private readonly onRegistryChange = () => this.wakeup.notify();
  private readonly onClientGone = (session: ClientSession) =>
    this.handleDisconnect(session.clientId);

  constructor(
    private readonly deps: EngineDeps,
    readonly run: RunRecord,
  ) {
    super();
    this.strategy = createStrategy(run.config.strategy, run.config.strategyOptions);
    this.task = run.config.task;
    const { model } = run.config;
    this.model = {
      name: model ?? this.task.name,
      paramCount: model === null ? 0 : modelSpec(model).paramCount,
    };
    this.maxRoundAttempts = deps.maxRoundAttempts ?? 5;
    this.seedDerivation = requireSeedDerivation(run.seedDerivation);
  }

  get runId(): string {
    return this.run.id;
  }

  /** Runs the remaining rounds. Resolves when the run completed, failed, or was stopped. */
  async execute(): Promise<void> {
    const { db, logger } = this.deps;
    this.deps.registry.on('change', this.onRegistryChange);
    // A client that disconnects, is replaced or is revoked drops out of any open round.
    this.deps.registry.on('disconnected', this.onClientGone);
    try {
      const checkpoint = await this.loadOrCreateCheckpoint();
      if (checkpoint === null) {
        // Stopped while the statistics round was waiting: nothing was stored.
        if (this.handsRunOver) return;
        const status = this.stopReason === 'paused' ? 'paused' : 'stopped';
        await db.runs.setStatus(this.runId, status, this.fenced);
        this.emit('run-finished', { runId: this.runId, status });
        return;
      }
      let { round, weights } = checkpoint;
      if (round > 0) {
        logger.info('resuming run from its last committed round', { runId: this.runId, round });
        await this.evaluateUnevaluated(round, weights);
      }
      // The last round's central evaluation, running while the next round trains (the next
      // round needs the new model, not its test accuracy). One at a time, in round order.
      let evaluating: Promise<void> = Promise.resolve();
      let endReason: string | undefined;
      while (round < this.run.config.rounds && this.stopReason === null) {
        // Before anyone is sampled: a round the budget cannot pay for never begins.
        endReason = this.privacyBudgetExhausted(round + 1);
        if (endReason !== undefined) break;
        const next = await this.trainRound(round + 1, weights);
        if (next === null) break;
        round += 1;
        weights = next;
        const clock = this.roundClock;
        this.roundClock = null;
        await this.awaitEvaluation(evaluating);
        this.throwIfEvaluationFailed();
        ({ recorded: evaluating } = await this.evaluateRound(round, weights, clock));
        // With no central evaluation there is nothing to run beside the next round: the
        // round's evaluation is recorded and announced before the next one begins.
        if (this.deps.centralEvaluator === null) await this.awaitEvaluation(evaluating);
        if (this.endAfter !== null) {
          // A pause asked for during the round: the round is over (its central evaluation is
          // awaited below), the next one never begins.
          this.stopReason ??= this.endAfter;
          break;
        }
      }
      await this.awaitEvaluation(evaluating);
      if (this.handsRunOver) return;
      this.throwIfEvaluationFailed();
      const status =
        this.stopReason === 'stopped' || this.stopReason === 'paused'
          ? this.stopReason
          : 'completed';
      await db.runs.setStatus(this.runId, status, {
        ...this.fenced,
        ...(status === 'completed' && endReason !== undefined ? { endReason } : {}),
      });
      this.emit('run-finished', { runId: this.runId, status });
    } catch (cause) {
      if (isLeaseLost(cause)) {
        // Fenced off: another coordinator owns the run now and commits its rounds.
        this.stopReason = 'lease-lost';
        logger.warn('run taken over by another coordinator; this engine stops here', {
          runId: this.runId,
          message: TesseraError.from(cause).message,
        });
      }
      if (this.handsRunOver) return;
      const error = TesseraError.from(cause);
      logger.error('run failed', { runId: this.runId, code: error.code, message: error.message });
      if (!(await this.recordFailure(error.message))) return;
      this.emit('run-finished', { runId: this.runId, status: 'failed', error: error.message });
    } finally {
      this.deps.registry.off('change', this.onRegistryChange);
      this.deps.registry.off('disconnected', this.onClientGone);
      this.releaseAll();
    }
  }

  /**
   * Stores `failed` with the reason. The database calls retry through an outage for their
   * bound; past it (the outage that failed the run may still be going on) this tries again
   * until the write lands, so the run never stays `running` in the database with no engine
   * behind it: meanwhile the engine is still registered (`stop` reaches it, and waits for the
   * write). Only a shutdown gives up (false): the run stays `running` and the next process
   * resumes it from its last committed round.
   */
  private async recordFailure(reason: string): Promise<boolean> {
    let announced = false;
    for (;;) {
      try {
        await this.deps.db.runs.setStatus(this.runId, 'failed', { ...this.fenced, error: reason });
        return true;
      } catch (cause) {
        if (this.handsRunOver) return false;
        if (!isTransientDatabaseError(cause)) {
          // Refused, not unreachable (the run was ended meanwhile): nothing to wait for.
          this.deps.logger.error('could not store that the run failed', {
            runId: this.runId,
            message: TesseraError.from(cause).message,
          });
          return true;
        }
        if (!announced) {
          announced = true;
          this.deps.logger.error('could not store that the run failed; trying again', {
            runId: this.runId,
            message: TesseraError.from(cause).message,
          });
        }
        await this.wakeup.wait(1000);
      }
    }
  }

  /**
   * `shutdown` and `lease-lost` leave the run `running` so the next (or new) owner resumes it;
   * the others end it.
   */
  stop(reason: StopReason): void {
    this.stopReason ??= reason;
    if (this.handsRunOver) this.handedOver();
    this.wakeup.notify();
  }

  /**
   * Waits for an evaluation's record, or less when the run is handed over: a shutdown does not
   * wait for a central evaluation whose result it would not record.
   */
  private async awaitEvaluation(recorded: Promise<void>): Promise<void> {
    await this.loggedIfSlow(Promise.race([recorded, this.handOver]), 'evaluation record');
  }

  /**
   * `work`, logged as still running (with how long, and the round it is part of) once it has
   * taken slowStepMs, and at each multiple after: what the engine waits on is in the log.
   */
  private async loggedIfSlow<T>(work: Promise<T>, step: string, round?: number): Promise<T> {
    const every = this.deps.slowStepMs ?? 10_000;
    const started = performance.now();
    const timer = setInterval(() => {
      this.deps.logger.warn(`${step} still running`, {
        runId: this.runId,
        ...(round === undefined ? {} : { round }),
        ms: Math.round(performance.now() - started),
      });
    }, every);
    try {
      return await work;
    } finally {
      clearInterval(timer);
    }
  }

  /**
   * Ends the run as `reason` once the round being trained is over: committed, and evaluated
   * (its central evaluation included). While no round can begin (too few clients) the run
   * keeps waiting, and pauses after the first round that does.
   */
  endAfterRound(reason: 'paused'): void {
    this.endAfter = reason;
  }

  /** The run's lease, for writes a former owner must not make (status, evaluation records). */
  private get fenced(): { fence?: LeaseFence } {
    return this.deps.fence === undefined ? {} : { fence: this.deps.fence };
  }

  /** Stopping without writing the run's end: its status belongs to the next owner. */
  private get handsRunOver(): boolean {
    return this.stopReason === 'shutdown' || this.stopReason === 'lease-lost';
  }

  // ---- frames from clients (already schema-checked by the transport) ---------------------

  handleUpdate(clientId: string, reply: TrainReply): void {
    const open = this.training;
    if (!open)
      throw new TesseraError(ErrorCode.WRONG_ROUND, `run ${this.runId} has no training round open`);
    open.state.checkReply(clientId, reply.runId, reply.round);
    const { registry, logger } = this.deps;
    if (this.secAgg !== null && reply.status === 'ok') {
      // The coordinator of a SecAgg run must never hold an individual update: not even read it.
      throw new TesseraError(
        ErrorCode.CONFLICT,
        'this run aggregates securely: send the update masked, through secagg (docs/protocol.md §5.11)',
        { field: 'status' },
      );
    }
    if (reply.status === 'failed') {
      open.state.record(clientId, 'failed');
      open.reasons.set(clientId, {
        code: reply.error.code ?? null,
        reason: clip(reply.error.message),
      });
      logger.warn('client reported a failed round', {
        runId: this.runId,
        round: reply.round,
        clientId,
        error: reply.error.message,
      });
    } else {
      try {
        // Every aggregator's add checks the values before it folds (checkUpdate), so the copy
        // is not checked twice; a local-DP run checks them first, before the norm check.
        const weights =
          this.run.config.localDp === null
            ? decodeWeights(reply.weights, this.model.paramCount)
            : bytesToWeights(reply.weights, this.model.paramCount);
        // What the coordinator can see of local DP: the change's norm (refused before any fold).
        checkLocalDp(this.run.config.localDp, open.global, weights);
        // The aggregator checks before it folds anything in, so a refused update leaves no trace.
        open.aggregator.add({
          clientId,
          numExamples: reply.numExamples,
          weights,
          metrics: reply.metrics,
          // SCAFFOLD's Δc_i; the strategy says whether it needs one.
          ...(reply.controlDelta === undefined
            ? {}
            : { controlDelta: bytesToWeights(reply.controlDelta, this.model.paramCount) }),
        });
      } catch (cause) {
        // A bad update takes the client out of this round; nothing of it is kept.
        const error = TesseraError.from(cause);
        open.state.record(clientId, 'rejected');
        open.reasons.set(clientId, {
          code: error.code.slice(0, MAX_OUTCOME_CODE_LENGTH),
          reason: clip(error.message),
        });
        registry.release(clientId, this.runId);
        this.wakeup.notify();
        throw error;
      }
      this.recordUpdate(open, {
        clientId,
        numExamples: reply.numExamples,
        durationMs: reply.durationMs,
        sizeBytes: reply.weights.byteLength,
        metrics: reply.metrics,
        // A copy: the decoded frame's bytes may be a view into a larger receive buffer.
        weights: this.run.config.keepUpdates ? reply.weights.slice() : null,
        // Δc_i where the round folded it (a control-variate strategy), so a replay can too.
        controlDelta:
          this.run.config.keepUpdates &&
          open.aggregator.controlVariate !== undefined &&
          reply.controlDelta !== undefined
            ? reply.controlDelta.slice()
            : null,
      });
      // Kept bytes are hashed by the commit that stores them (once, and it cannot be told a
      // wrong hash); only updates whose bytes are not kept are hashed here, off the loop.
      if (!this.run.config.keepUpdates) {
        // WebCrypto copies the bytes at this call: the frame's buffer may go after it.
        const digest = sha256Hex(reply.weights);
        // Awaited by the commit; a failure then fails it, never an unhandled rejection.
        digest.catch(() => {});
        open.digests.set(clientId, digest);
      }
    }
    registry.release(clientId, this.runId);
    this.wakeup.notify();
  }

  /**
   * Whether an update of this run may be folded where it arrives, another process holding
   * the partial sum (docs/research.md "Folding where the updates arrive"): only where the
   * round's aggregate is a function of the exact example-weighted sum alone, so that merging
   * partials is the same bytes as folding here. Not with secure aggregation (no update is
   * ever seen), kept updates (their bytes must reach this commit), local DP (its norm check
   * needs the global model), Poisson sampling (dp-fedavg clips each update), a rule that reads
   * single updates (robust rules, Krum, clipping, SCAFFOLD's controlDelta), or float64
   * sequential sums (their bytes depend on the order and split).
   */
  private foldsRemotely(open: OpenTraining): boolean {
    const { config } = this.run;
    return (
      this.deps.remotePartials !== undefined &&
      !config.keepUpdates &&
      config.secureAggregation === null &&
      config.localDp === null &&
      this.strategy.poissonSamplingRate === undefined &&
      isLinearStrategy(config.strategy) &&
      recordedArithmetic(config.strategy, config.strategyOptions) === 'exact' &&
      open.aggregator.addPartial !== undefined &&
      open.aggregator.controlVariate === undefined
    );
  }

  /**
   * Another process checked a client's update and asks whether to fold it there: the same
   * refusals as handleUpdate's (wrong run or round, not selected, duplicate, closed), then
   * the client counts as updated and the verdict names the attempt's partial. `{fold: false}`:
   * send the whole frame instead (a run that does not fold remotely, or a model size that does
   * not fit, whose rejection handleUpdate records).
   */
  acceptRemoteUpdate(from: string, claim: RemoteUpdateClaim): ClaimVerdict {
    const open = this.training;
    if (!open)
      throw new TesseraError(ErrorCode.WRONG_ROUND, `run ${this.runId} has no training round open`);
    open.state.checkReply(claim.clientId, claim.runId, claim.round);
    if (!this.foldsRemotely(open) || claim.numParameters !== this.model.paramCount)
      return { fold: false };
    open.remote ??= { key: randomUUID(), byProcess: new Map() };
    let accepted = open.remote.byProcess.get(from);
    if (!accepted) {
      accepted = new Map();
      open.remote.byProcess.set(from, accepted);
    }
    accepted.set(claim.clientId, claim.numExamples);
    this.recordUpdate(open, {
      clientId: claim.clientId,
      numExamples: claim.numExamples,
      durationMs: claim.durationMs,
      sizeBytes: claim.sizeBytes,
      sha256: claim.sha256,
      metrics: claim.metrics,
      weights: null,
      controlDelta: null,
    });
    this.deps.registry.release(claim.clientId, this.runId);
    this.wakeup.notify();
    return { fold: true, key: open.remote.key };
  }

  /**
   * Before the round is summed: each process's partial of the updates it folded, merged in
   * (addPartial checks it). The clients of a process whose partial did not come (it died, or
   * did not answer in time), or does not sum exactly the clients accepted from it, are
   * recorded dropped, and the round goes on with the rest (minClients as usual); a partial
   * that sums only some of them (a verdict it never received) is merged, the others dropped.
   */
  private async mergeRemotePartials(open: OpenTraining): Promise<void> {
    const remote = open.remote;
    if (remote === undefined || this.deps.remotePartials === undefined) return;
    const collected = await this.deps.remotePartials.collect(this.runId, remote.key, [
      ...remote.byProcess.keys(),
    ]);
    const lost = new Map<string, string>();
    for (const [processId, accepted] of remote.byProcess) {
      const answer = collected.get(processId) ?? null;
      let merged = new Set<string>();
      let why = `coordinator ${processId} folded none of its updates`;
      if (answer instanceof TesseraError) why = answer.message;
      else if (answer !== null) {
        try {
          const names = new Set(answer.clientIds);
          let examples = 0;
          for (const clientId of names) examples += accepted.get(clientId) ?? Number.NaN;
          if (names.size !== answer.clientIds.length || examples !== answer.numExamples) {
            throw new TesseraError(
              ErrorCode.CONFLICT,
              `the partial of coordinator ${processId} sums clients or examples this round did not accept from it`,
              { field: 'partial' },
            );
          }
          open.aggregator.addPartial?.(answer);
          merged = names;
          why = `coordinator ${processId} never folded it`;
        } catch (cause) {
          why = TesseraError.from(cause).message;
        }
      }
      for (const clientId of accepted.keys()) if (!merged.has(clientId)) lost.set(clientId, why);
    }
    if (lost.size === 0) return;
    for (const [clientId, why] of lost) {
      open.state.lose(clientId);
      open.reasons.set(clientId, {
        code: ErrorCode.UNAVAILABLE,
        reason: clip(`partial aggregate lost: ${why}`),
      });
    }
    const kept = open.updates.filter((update) => !lost.has(update.clientId));
    open.updates.splice(0, open.updates.length, ...kept.map((u, k) => ({ ...u, arrivalIndex: k })));
    this.deps.logger.warn('updates folded by another coordinator lost; those clients dropped', {
      runId: this.runId,
      round: open.state.round,
      clients: [...lost.keys()],
      reasons: [...new Set(lost.values())],
    });
  }

  /**
   * An accepted update, folded here or by another process: its record for the commit (in
   * arrival order, with the client's runtime and backend), and the client counts as updated.
   */
  private recordUpdate(
    open: OpenTraining,
    update: Omit<ClientUpdateInput, 'arrivalIndex' | 'runtime' | 'backend'>,
  ): void {
    const client = this.deps.registry.get(update.clientId)?.info;
    open.updates.push({
      ...update,
      arrivalIndex: open.updates.length,
      runtime: client?.runtime ?? null,
      backend: client?.backend ?? null,
    });
    open.state.record(update.clientId, 'updated');
  }

  /** A client's message of the round's secure aggregation (already schema-checked). */
  handleSecAgg(clientId: string, frame: SecAggClientFrame): Promise<void> {
    if (this.secAgg === null) {
      throw new TesseraError(
        ErrorCode.WRONG_ROUND,
        `run ${this.runId} has no secure aggregation open`,
      );
    }
    return this.secAgg.receive(clientId, frame);
  }

  handleEvaluation(clientId: string, reply: EvaluateReply): void {
    const open = this.evaluation;
    if (!open)
      throw new TesseraError(ErrorCode.WRONG_ROUND, `run ${this.runId} has no evaluation open`);
    open.state.checkReply(clientId, reply.runId, reply.round);
    if (reply.status === 'ok') {
      open.replies.push({
        clientId,
        numExamples: reply.numExamples,
        loss: reply.loss,
        accuracy: reply.accuracy,
      });
      open.state.record(clientId, 'updated');
    } else {
      open.state.record(clientId, 'failed');
    }
    this.deps.registry.release(clientId, this.runId);
    this.wakeup.notify();
  }

  /**
   * A client's answer to the statistics round. An ok reply is checked against the task
   * (parseTabularStatistics: the columns asked for, in order; counts within rows; finite
   * numbers; categories sorted, unique, bounded) before it is kept; a refused one takes the
   * client out of the round, leaves nothing behind, and the sender gets the coded error.
   */
  handleStatistics(clientId: string, reply: StatisticsReply): void {
    const open = this.statistics;
    if (!open) {
      throw new TesseraError(
        ErrorCode.WRONG_ROUND,
        `run ${this.runId} has no statistics round open`,
      );
    }
    open.state.checkReply(clientId, reply.runId, 0);
    const { registry, logger } = this.deps;
    if (reply.status === 'failed') {
      open.state.record(clientId, 'failed');
      logger.warn('client could not take part in the statistics round', {
        runId: this.runId,
        clientId,
        code: reply.error.code ?? null,
        error: reply.error.message,
      });
    } else {
      try {
        const checked = parseTabularStatistics(reply.statistics, open.task.input, 'statistics');
        const categories = checked.columns.reduce(
          (sum, column) => sum + (column.type === 'categorical' ? column.counts.length : 0),
          0,
        );
        if (categories > WIRE_LIMITS.maxStatisticsCategories) {
          throw new TesseraError(
            ErrorCode.INVALID_ARGUMENT,
            `statistics.columns: ${categories} categories in all, more than ${WIRE_LIMITS.maxStatisticsCategories}`,
            { field: 'statistics.columns' },
          );
        }
        open.parts.set(clientId, checked);
        open.state.record(clientId, 'updated');
      } catch (cause) {
        open.state.record(clientId, 'rejected');
        registry.release(clientId, this.runId);
        this.wakeup.notify();
        throw TesseraError.from(cause);
      }
    }
    registry.release(clientId, this.runId);
    this.wakeup.notify();
  }

  handleDisconnect(clientId: string): void {
    const dropped =
      this.statistics?.state.drop(clientId) ||
      this.training?.state.drop(clientId) ||
      this.evaluation?.state.drop(clientId);
    if (dropped) {
      this.deps.logger.warn('client dropped out of a round', { runId: this.runId, clientId });
      this.wakeup.notify();
    }
  }

  // ---- the loop -------------------------------------------------------------------------

  /** Null when the run was stopped during its statistics round. */
  private async loadOrCreateCheckpoint(): Promise<{
    round: number;
    weights: Float32Array;
  } | null> {
    const { db } = this.deps;
    const task = await this.prepareModel();
    if (task === 'stopped') return null;
    const latest = await db.rounds.latestCheckpoint(this.runId);
    if (latest) {
      this.restoreStrategy(latest.round, latest.strategyState);
      return {
        round: latest.round,
        weights: bytesToWeights(latest.weights, this.model.paramCount),
      };
    }
    const weights = await this.initialWeights(task);
    await db.rounds.saveInitialCheckpoint(this.runId, weightsToBytes(weights));
    return { round: 0, weights };
  }

  /**
   * The model a task that is not a built-in trains: its parameter count from the task record
   * (counted when the task was created). Built-in tasks keep the zoo model, built by name as
   * before tasks existed, so their runs (and replays of old ones) stay bit-identical. A task
   * that leaves preprocessing constants to statistics trains the task its statistics round
   * resolved: recorded already (a resumed run never reruns the round), or collected now.
   */
  private async prepareModel(): Promise<PreparedTask | null | 'stopped'> {
    if (this.run.config.model !== null) return null;
    const { db } = this.deps;
    const task = await db.tasks.get(this.run.config.task.sha256);
    let prepared: PreparedTask = {
      definition: parseTaskDefinition(task.definition),
      paramCount: task.paramCount,
      weightsOf: task.hasWeights ? task.sha256 : null,
    };
    if (taskNeedsStatistics(prepared.definition) !== null) {
      const recorded = this.run.resolvedTask ?? (await db.runs.get(this.runId)).resolvedTask;
      if (recorded !== null) {
        const resolved = await db.tasks.resolved(recorded.sha256);
        this.task = recorded;
        prepared = {
          definition: parseTaskDefinition(resolved.definition),
          paramCount: resolved.paramCount,
          weightsOf: prepared.weightsOf,
        };
      } else {
        const collected = await this.statisticsRound(prepared);
        if (collected === null) return 'stopped';
        prepared = collected;
      }
    }
    this.model = { name: this.task.name, paramCount: prepared.paramCount };
    return prepared;
  }

  /**
   * The federated statistics round (docs/protocol.md §7.6): every idle eligible client of
   * the federation (no sampling: more rows make better constants, and the round is cheap) is
   * asked for its statistics; with at least minClients ok replies before the deadline they are
   * combined, the task resolved and both recorded with the run; with fewer, retried with the
   * clients idle then, up to maxRoundAttempts, then the run fails. Null if stopped meanwhile.
   */
  private async statisticsRound(source: PreparedTask): Promise<PreparedTask | null> {
    const { config } = this.run;
    const definition = source.definition;
    if (definition.input.kind !== 'tabular') throw new Error('unreachable: not tabular');
    const task = definition as OpenStatistics['task'];
    for (let attempt = 1; attempt <= this.maxRoundAttempts; attempt++) {
      if (!(await this.awaitClients(0))) return null;
      const parts = await this.attemptStatistics(task, attempt);
      if (parts === 'stopped') return null;
      if (parts.length >= config.minClients) return this.resolveAndRecord(source, task, parts);
      this.deps.logger.warn('statistics round had too few replies; retrying', {
        runId: this.runId,
        attempt,
        replies: parts.length,
        minClients: config.minClients,
      });
    }
    throw new TesseraError(
      ErrorCode.CONFLICT,
      `statistics round got fewer than ${config.minClients} valid replies in ${this.maxRoundAttempts} attempts`,
    );
  }

  /** One attempt: the checked replies, in clientId order (so arrival order changes nothing). */
  private async attemptStatistics(
    task: OpenStatistics['task'],
    attempt: number,
  ): Promise<TabularStatistics[] | 'stopped'> {
    const { registry, transport, logger } = this.deps;
    const selected = await this.claimClients([...registry.eligible(this.run.federationId)].sort(), {
      runId: this.runId,
      round: 0,
      phase: 'statistics',
    });
    const state = new RoundState(this.runId, 0, selected);
    this.statistics = { state, task, parts: new Map() };
    logger.info('statistics round started', {
      runId: this.runId,
      attempt,
      clients: selected.length,
    });
    const deadline = Date.now() + this.run.config.roundDeadlineMs;
    transport.sendStatistics(selected, { runId: this.runId, task: this.task, deadline });
    await this.waitForAnswers(state, deadline);
    const { parts } = this.statistics;
    this.statistics = null;
    state.close();
    this.closeRound(state, 'statistics');
    if (this.stopReason !== null) return 'stopped';
    return [...parts.keys()].sort().map((clientId) => parts.get(clientId) as TabularStatistics);
  }

  /**
   * Combines the replies, fills their constants into the task, checks its model (whose input
   * follows the collected categories) and records the combined statistics and the resolved
   * task with the run, in one transaction. What no retry can mend (too many categories in
   * all, a column nobody has values for, a model that does not fit) fails the run.
   */
  private async resolveAndRecord(
    source: PreparedTask,
    task: OpenStatistics['task'],
    parts: readonly TabularStatistics[],
  ): Promise<PreparedTask> {
    const combined = combineStatistics(parts, task.input);
    const resolved = resolveTaskDefinition(task, combined);
    const { paramCount } = await checkTaskModel(resolved, {
      maxParams: this.deps.maxTaskParams ?? DEFAULT_MAX_TASK_PARAMS,
    });
    const sha256 = taskSha256(resolved);
    const run = await this.deps.db.runs.recordStatistics(this.runId, {
      statistics: combined as unknown as Record<string, unknown>,
      resolved: {
        sha256,
        definition: resolved as unknown as Record<string, unknown>,
        paramCount,
      },
      ...this.fenced,
    });
    this.task = run.resolvedTask as TaskRef;
    this.emit('statistics-recorded', {
      runId: this.runId,
      resolvedTask: this.task,
      clients: parts.length,
    });
    this.deps.logger.info('statistics round recorded', {
      runId: this.runId,
      clients: parts.length,
      rows: combined.rows,
      resolvedTask: sha256,
      paramCount,
    });
    return { definition: resolved, paramCount, weightsOf: source.weightsOf };
  }

  /** Checkpoint 0: the task's uploaded weights where it has them, else its seeded model's. */
  private async initialWeights(task: PreparedTask | null): Promise<Float32Array> {
    const { model, seed } = this.run.config;
    if (task === null) return initialWeights(model as string, seed);
    if (task.weightsOf !== null) {
      const uploaded = await this.deps.db.tasks.weights(task.weightsOf);
      if (uploaded !== null) return bytesToWeights(uploaded, task.paramCount);
    }
    const built = await buildTaskModel(task.definition, { seed });
    try {
      return getFlatWeights(built);
    } finally {
      built.dispose();
    }
  }

  /**
   * Puts the strategy back where it was after checkpoint `round` (FedAvgM's velocity, FedAdam's
   * moments), so the resumed run continues as the uninterrupted one would have. A state that
   * does not decode, belongs to another strategy or version, another round, or another model
   * size cannot be continued from: the run fails with the reason (execute records it) rather
   * than silently restarting the strategy from zero. A checkpoint without a state (round 0, a
   * stateless strategy) starts the strategy afresh.
   */
  private restoreStrategy(round: number, bytes: Uint8Array | null): void {
    try {
      const state = bytes === null ? null : decodeStrategyState(bytes);
      if (state !== null && state.round !== round) {
        throw new TesseraError(
          ErrorCode.INVALID_ARGUMENT,
          `strategy state: taken after round ${state.round}, stored with checkpoint ${round}`,
          { field: 'strategyState', round: state.round },
        );
      }
      for (const [name, values] of Object.entries(state?.arrays ?? {})) {
        if (values.length !== this.model.paramCount) {
          throw new TesseraError(
            ErrorCode.INVALID_ARGUMENT,
            `strategy state: array ${name} has ${values.length} values; the model has ${this.model.paramCount}`,
            { field: 'strategyState', paramCount: values.length },
          );
        }
      }
      this.strategy.restore(state);
    } catch (cause) {
      const error = TesseraError.from(cause);
      throw new TesseraError(
        error.code,
        `cannot be resumed from round ${round}: ${error.message}`,
        { ...error.data, round },
      );
    }
  }

  /**
   * A differentially private run's budget check before round `round`: the reason the run
   * ends here when one more round would take epsilon past the budget, else undefined (and
   * always undefined for a strategy without privacy accounting).
   */
  private privacyBudgetExhausted(round: number): string | undefined {
    const status = this.strategy.privacyStatus?.();
    if (status === undefined || status.nextRoundAllowed) return undefined;
    const budget = status.budget;
    const after = status.epsilonAfterNextRound;
    const reason =
      budget === null || after === null
        ? 'privacy budget: epsilon cannot be accounted for the next round'
        : `privacy budget: epsilon would be ${after} > budget ${budget.epsilon} (delta ${budget.delta}) after round ${round}`;
    this.deps.logger.info('run ends: the next round would exceed its privacy budget', {
      runId: this.runId,
      round,
      steps: status.steps,
      epsilon: status.epsilon,
      epsilonAfterNextRound: after,
      budget: budget?.epsilon ?? null,
      delta: budget?.delta ?? null,
    });
    return reason;
  }

  /**
   * Claims the drawn clients for a task: those another coordinator process claimed for its own
   * run in the same moment (cluster mode) are left out, and so are any that left meanwhile.
   */
  private async claimClients(drawn: readonly string[], task: ClientTask): Promise<string[]> {
    const { registry, logger } = this.deps;
    const won = await registry.claim(drawn, task);
    // Still here with this task once the claim is settled (a client may leave meanwhile).
    const held = won.filter((id) => registry.get(id)?.task?.runId === this.runId);
    if (held.length < drawn.length)
      logger.info('some drawn clients are busy elsewhere or gone; left out', {
        runId: this.runId,
        round: task.round,
        phase: task.phase,
        drawn: drawn.length,
        claimed: held.length,
      });
    return held;
  }

  /** Waits until the federation has enough idle clients for a round; false if stopped meanwhile. */
  private async awaitClients(round: number): Promise<boolean> {
    const { registry, logger } = this.deps;
    let announced = false;
    while (this.stopReason === null) {
      const idle = registry.eligible(this.run.federationId).length;
      if (sampleSize(this.run.config, idle) > 0) return true;
      if (!announced) {
        logger.info('waiting for clients', {
          runId: this.runId,
          round,
          idle,
          minClients: this.run.config.minClients,
        });
        announced = true;
      }
      await this.wakeup.wait(1000);
    }
    return false;
  }

  /** One training round, retried with a fresh sample when too few updates arrive. */
  private async trainRound(round: number, global: Float32Array): Promise<Float32Array | null> {
    const { config } = this.run;
    this.roundClock = new PhaseClock();
    for (let attempt = 1; attempt <= this.maxRoundAttempts; attempt++) {
      if (!(await this.awaitClients(round))) return null;
      this.roundClock.lap('waiting');
      const outcome = await this.attemptRound(round, attempt, global);
      if (outcome === 'stopped') return null;
      if (outcome !== 'too-few') return outcome;
      this.deps.logger.warn('round had too few updates; retrying with a new sample', {
        runId: this.runId,
        round,
        attempt,
        minClients: config.minClients,
      });
    }
    throw new TesseraError(
      ErrorCode.CONFLICT,
      `round ${round} got fewer than ${config.minClients} updates in ${this.maxRoundAttempts} attempts`,
    );
  }

  private async attemptRound(
    round: number,
    attempt: number,
    global: Float32Array,
  ): Promise<Float32Array | 'too-few' | 'stopped'> {
    const { registry, transport, db, logger } = this.deps;
    const { config } = this.run;
    const startedAt = new Date();
    const eligible = registry.eligible(this.run.federationId);
    const poissonRate = this.strategy.poissonSamplingRate;
    let sampled: string[];
    if (poissonRate === undefined) {
      const rng = createRng(this.seed('sample', round, attempt));
      sampled = selectClients(eligible, config, () => rng.next());
    } else {
      // Not the run's seeded rng: under DP the sample must be unpredictable, even to whoever
      // knows the seed, or the accountant's amplification by sampling does not hold.
      sampled = selectPoisson(eligible, poissonRate, cryptoUniform);
    }
    // A Poisson sample too small for secure aggregation trains no one: the round releases
    // dp-fedavg's noise alone and counts its step, as for an empty sample (never re-drawn,
    // which would condition the sample on its size and raise each client's chance above q).
    // Likewise a sample above the most clients one SecAgg round holds (its Shamir shares are
    // evaluated at 1..255): trimming it would change the sampling the accountant assumes.
    const secAggSampleRefused =
      config.secureAggregation !== null && poissonRate !== undefined
        ? sampled.length < config.minClients
          ? 'below minClients'
          : sampled.length > SECAGG_MAX_CLIENTS
            ? `above the ${SECAGG_MAX_CLIENTS} clients one secure aggregation holds`
            : null
        : null;
    if (secAggSampleRefused !== null) {
      logger.warn('Poisson sample not trained: the round releases the noise alone', {
        runId: this.runId,
        round,
        sampled: sampled.length,
        reason: secAggSampleRefused,
      });
    }
    const drawn = secAggSampleRefused !== null ? [] : sampled;
    // Before any client is claimed: settings the wire cannot carry fail the run here.
    const drawnGroups = trainGroups(
      this.strategy,
      round,
      drawn,
      privacySettingsFor(config, this.strategy),
    );
    const selected = await this.claimClients(drawn, { runId: this.runId, round, phase: 'train' });
    const claimed = new Set(selected);
    const groups = drawnGroups.map((group) => ({
      ...group,
      clientIds: group.clientIds.filter((id) => claimed.has(id)),
    }));
    const state = new RoundState(this.runId, round, selected);
    this.training = {
      state,
      global,
      aggregator: this.strategy.beginRound(round, global),
      updates: [],
      digests: new Map(),
      reasons: new Map(),
    };
    this.emit('round-started', { runId: this.runId, round, attempt, selected });
    logger.info('round started', { runId: this.runId, round, attempt, clients: selected.length });

    const deadline = Date.now() + config.roundDeadlineMs;
    const weights = weightsToBytes(global);
    // SCAFFOLD's c, encoded once like the weights.
    const serverControl = this.training.aggregator.controlVariate;
    const controlVariate = serverControl === undefined ? undefined : weightsToBytes(serverControl);
    this.secAgg =
      config.secureAggregation === null || selected.length === 0
        ? null
        : await SecAggRound.open(
            { transport, logger, wakeup: this.wakeup },
            this.runId,
            round,
            attempt,
            config.secureAggregation,
            selected,
            this.model.paramCount,
            deadline,
            // dp-fedavg: its clients clip and weigh their change 1.
            this.strategy.clientClipNorm !== undefined,
          );
    const secureSetup = this.secAgg?.setup;
    // One instruction per set of strategy settings (one in all for every strategy so far).
    for (const group of groups) {
      if (group.clientIds.length === 0) continue;
      transport.sendTrain(group.clientIds, {
        runId: this.runId,
        round,
        model: this.model,
        task: this.task,
        // The run's own fields; the seed is the same for every attempt (docs/protocol.md §7.2).
        config: trainConfigFor(config, this.seed('shuffle', round, 0)),
        // Absent, not undefined, without settings: the frame stays byte for byte the old one.
        ...(group.strategy === undefined ? {} : { strategy: group.strategy }),
        ...(secureSetup === undefined ? {} : { secureAggregation: secureSetup }),
        deadline,
        weights,
        ...(controlVariate === undefined ? {} : { controlVariate }),
      });
    }
    this.roundClock?.lap('distribution');
    const secure =
      this.secAgg === null
        ? null
        : await this.sumSecurely(this.secAgg, this.training, global).finally(() => {
            this.secAgg = null;
          });
    if (secure === null) await this.waitForAnswers(state, deadline);

    const open = this.training;
    this.training = null;
    state.close();
    this.closeRound(state, 'training');
    this.roundClock?.lap('training');
    if (this.stopReason !== null) return 'stopped';
    await this.mergeRemotePartials(open);
    const result = open.aggregator.finish();
    this.roundClock?.lap('aggregation');
    const numUpdates = secure === null ? result.numUpdates : secure.survivors.length;
    const secureRecord =
      secAggSampleRefused !== null
        ? {
            mechanism: 'secure-aggregation',
            unmasked: false,
            sampled: sampled.length,
            endReason: `Poisson sample ${secAggSampleRefused}`,
          }
        : (secure?.record ?? null);
    // Under Poisson sampling (DP) a round commits with whatever arrived, none included: the
    // noised sum is divided by the fixed expected count, and every round is one step of the
    // accountant; a retry would spend budget it does not count, or, for a round without
    // updates, make the sample that counts one conditioned on bringing an update.
    const enough = poissonRate !== undefined || numUpdates >= config.minClients;
    if (result.weights === null || !enough) return 'too-few';

    // The previous round's evaluation failed while this one trained: the run fails before it
    // writes another round.
    this.throwIfEvaluationFailed();
    const finishedAt = new Date();
    const newGlobal = result.weights;
    const commit = async () =>
      db.rounds.commit({
        runId: this.runId,
        round,
        startedAt,
        finishedAt,
        selectedClientIds: selected,
        participantClientIds: [...state.arrivals],
        droppedClientIds: [...state.clientsWith('dropped'), ...state.clientsWith('pending')],
        outcomes: outcomesOf(state, open.reasons),
        numExamples: result.numExamples,
        trainLoss: result.metrics['loss'] ?? null,
        trainAccuracy: result.metrics['accuracy'] ?? null,
        metrics: {
          ...result.metrics,
          attempt,
          failed: state.clientsWith('failed').length,
          rejected: state.clientsWith('rejected').length,
        },
        updates: await withDigests(open),
        checkpoint: weightsToBytes(newGlobal),
        // In the same transaction as the checkpoint: a resume or a replay continues from both.
        strategyState: encodedState(this.strategy),
        privacy: roundPrivacyRecord({
          round,
          secure: secureRecord,
          dp: result.privacy,
          localDp: config.localDp,
          localRefused: outcomesOf(state, open.reasons).filter(
            (o) => o.code === ErrorCode.LOCAL_DP_NORM_OUT_OF_RANGE,
          ).length,
        }),
        ...(this.roundClock ? { phases: this.roundClock.beforeCommit() } : {}),
        ...this.fenced,
      });
    const record = await this.loggedIfSlow(commit(), 'round commit', round);
    this.roundClock?.lap('commit');
    this.emit('round-committed', { runId: this.runId, round, record });
    logger.info('round committed', {
      runId: this.runId,
      round,
      updates: numUpdates,
      trainLoss: record.trainLoss,
      ...(result.privacy === undefined
        ? {}
        : { epsilon: result.privacy.epsilon, steps: result.privacy.steps }),
      ms: finishedAt.getTime() - startedAt.getTime(),
    });
    return result.weights;
  }

  /**
   * The round's secure aggregation, run to its end: the survivors' FedAvg of their changes,
   * added to the global model, goes into the strategy's aggregator as the round's one input
   * (a linear rule gives the same from it as from the updates it sums). Returns what the
   * round records, or a SecAggRound outcome without a sum as an empty survivor list.
   */
  private async sumSecurely(
    secure: SecAggRound,
    open: OpenTraining,
    global: Float32Array,
  ): Promise<{ survivors: string[]; record: RoundPrivacyRecord | null }> {
    // Out of the round: it disconnected, reported a failure, or was refused.
    const isOut = (clientId: string) => {
      const outcome = open.state.outcomeOf(clientId);
      return outcome !== 'pending' && outcome !== 'updated';
    };
    const outcome = await secure.run(isOut, () => this.stopReason !== null);
    if (outcome.kind === 'stopped') return { survivors: [], record: null };
    if (outcome.kind === 'too-few') {
      // Kept only where the round still commits (dp-fedavg releases its noise alone).
      return {
        survivors: [],
        record: secAggFailureRecord(secure.setup, outcome.step, outcome.reason),
      };
    }
    const { result } = outcome;
    for (const clientId of result.survivors) open.state.counted(clientId);
    if (open.aggregator.addClippedSum !== undefined && this.strategy.clientClipNorm !== undefined) {
      // dp-fedavg: every client weighed 1, so the survivors' mean times their count is the sum
      // of their clipped changes, which the strategy noises and divides by its fixed m.
      const total = result.totalExamples;
      open.aggregator.addClippedSum({
        changeSum: Float64Array.from(result.weights, (mean) => mean * total),
        count: result.survivors.length,
        maxAbsError: result.maxAbsError * total,
      });
      return { survivors: result.survivors, record: secAggRecord(secure.setup, result) };
    }
    const mean = new Float32Array(global.length);
    for (let i = 0; i < mean.length; i++) {
      mean[i] = (global[i] as number) + (result.weights[i] as number);
    }
    open.aggregator.add({
      clientId: 'secure-aggregate',
      numExamples: result.totalExamples,
      weights: mean,
      metrics: {},
    });
    return { survivors: result.survivors, record: secAggRecord(secure.setup, result) };
  }

  /**
   * Rounds a previous process committed but did not live to evaluate: the last one, and the
   * one before it when its central evaluation was still running beside the last one's training.
   */
  private async evaluateUnevaluated(round: number, weights: Float32Array): Promise<void> {
    const { db, logger } = this.deps;
    const unevaluated: number[] = [];
    for (let number = round; number >= Math.max(1, round - 1); number--) {
      if ((await db.rounds.get(this.runId, number)).status !== 'committed') break;
      unevaluated.unshift(number);
    }
    for (const number of unevaluated) {
      logger.info('evaluating a committed round whose evaluation was not recorded', {
        runId: this.runId,
        round: number,
      });
      const model =
        number === round
          ? weights
          : bytesToWeights(
              (await db.rounds.checkpoint(this.runId, number)).weights,
              this.model.paramCount,
            );
      await this.awaitEvaluation((await this.evaluateRound(number, model, null)).recorded);
      this.throwIfEvaluationFailed();
    }
  }

  /**
   * Evaluates round `round`'s model: federated evaluation on idle clients' held-out data, and
   * central evaluation on data the coordinator holds, side by side. Returns when the federated
   * part is over (those clients are busy until then, so the next round waits for them); the
   * central part may still be running, and `recorded` settles once both are recorded and
   * announced ('round-evaluated'). It never rejects: a failure is kept for
   * throwIfEvaluationFailed, which the loop calls before it next commits or ends. (Wrapped in
   * an object: an async function returning the promise itself would wait for it.)
   */
  private async evaluateRound(
    round: number,
    weights: Float32Array,
    clock: PhaseClock | null,
  ): Promise<{ recorded: Promise<void> }> {
    const { registry, transport, centralEvaluator } = this.deps;
    // Central evaluation where the coordinator holds data for the run's task (else null).
    // The task this run trains now: after a statistics round, the resolved one.
    const trains = {
      config: this.run.config,
      resolvedTask: this.task.sha256 === this.run.config.task.sha256 ? null : this.task,
    };
    const centralStarted = performance.now();
    const central = (centralEvaluator?.evaluate(trains, weights) ?? Promise.resolve(null)).then(
      (result) => ({ result, ms: Math.round(performance.now() - centralStarted) }),
    );
    // Settled before anything is awaited: a central evaluation that fails while the federated
    // one runs is not an unhandled rejection.
    central.catch(() => {});
    let federated: EvaluationResult | null = null;
    // Clients that said they hold no evaluation data are not sent the model to evaluate.
    const holders = registry
      .eligible(this.run.federationId)
      .filter((id) => registry.get(id)?.info.numHoldout !== 0);
    const clients =
      holders.length > 0 && this.stopReason === null
        ? await this.claimClients(holders, { runId: this.runId, round, phase: 'evaluate' })
        : [];
    if (clients.length > 0) {
      const state = new RoundState(this.runId, round, clients);
      this.evaluation = { state, replies: [] };
      const deadline = Date.now() + this.run.config.roundDeadlineMs;
      transport.sendEvaluate(clients, {
        runId: this.runId,
        round,
        model: this.model,
        task: this.task,
        batchSize: 1000,
        deadline,
        weights: weightsToBytes(weights),
      });
      await this.waitForAnswers(state, deadline);
      const { replies } = this.evaluation;
      this.evaluation = null;
      state.close();
      this.closeRound(state, 'evaluation');
      federated = this.strategy.aggregateEvaluation(replies);
    }
    // What held the loop up: the federated evaluation, and (for the round before) waiting for
    // the previous central evaluation, which the loop did before calling this.
    clock?.lap('evaluation');
    const recorded = this.recordEvaluation(round, federated, central, clock).catch(
      (cause: unknown) => {
        this.evaluationFailure ??= cause;
      },
    );
    return { recorded };
  }

  /** Records a round's evaluation once its central part is done, with its phases; announces it. */
  private async recordEvaluation(
    round: number,
    federated: EvaluationResult | null,
    central: Promise<{ result: CentralResult | null; ms: number }>,
    clock: PhaseClock | null,
  ): Promise<void> {
    const { db } = this.deps;
    const { result: centralResult, ms: centralMs } = await central;
    if (this.handsRunOver) return;
    let record: RoundRecord;
    if (!federated && !centralResult) {
      // Nobody could evaluate (every client left, or none holds evaluation data) and there is
      // no central test set: the round stays `committed`, without evaluation results. Still
      // announced: whoever waits for a round's end (pause, a target) hears of it.
      this.deps.logger.warn('round not evaluated: no client answered and no central test set', {
        runId: this.runId,
        round,
      });
      record = await db.rounds.get(this.runId, round);
    } else {
      record = await db.rounds.recordEvaluation(
        this.runId,
        round,
        {
          ...(federated ? { federated } : {}),
          ...(centralResult ? { central: centralResult } : {}),
        },
        this.fenced,
      );
    }
    if (clock !== null && record.phases !== null) {
      record = await db.rounds.recordPhases(this.runId, round, {
        ...clock.afterCommit(),
        centralEvaluationMs: centralResult ? centralMs : null,
      });
    }
    this.emit('round-evaluated', { runId: this.runId, round, record });
  }

  /** An evaluation that failed beside the next round fails the run before its next write. */
  private throwIfEvaluationFailed(): void {
    const failure = this.evaluationFailure;
    if (failure === undefined) return;
    this.evaluationFailure = undefined;
    throw failure;
  }

  private async waitForAnswers(state: RoundState, deadline: number): Promise<void> {
    while (!state.allAnswered && this.stopReason === null && Date.now() < deadline) {
      await this.wakeup.wait(deadline - Date.now());
    }
  }

  /**
   * Tells clients still working that the round is over, and frees everyone in it. Those that
   * let the deadline pass without a word back off (the registry's TimeoutBackoff), so the
   * next rounds and evaluations do not wait for them again.
   */
  private closeRound(state: RoundState, phase: 'statistics' | 'training' | 'evaluation'): void {
    const late = state.clientsWith('pending');
    if (this.stopReason === null)
      for (const clientId of late) this.deps.registry.timedOut(clientId);
    if (late.length > 0) {
      const reason =
        this.stopReason === null ? `${phase} deadline passed` : `run ${this.stopReason}`;
      this.deps.transport.sendRoundClosed(late, { runId: this.runId, round: state.round, reason });
      this.deps.logger.warn(`${phase} closed before every client answered: ${reason}`, {
        runId: this.runId,
        round: state.round,
        late,
      });
    }
    for (const clientId of state.selected) this.deps.registry.release(clientId, this.runId);
  }

  private seed(purpose: 'sample' | 'shuffle', round: number, attempt: number): number {
    return deriveSeed(this.seedDerivation, this.run.config.seed, { purpose, round, attempt });
  }

  private releaseAll(): void {
    for (const session of this.deps.registry.list())
      this.deps.registry.release(session.clientId, this.runId);
  }
}

/** The task a run's model is built from: its definition, its size, whose initial weights. */
interface PreparedTask {
  definition: TaskDefinition;
  paramCount: number;
  /** The stored task whose uploaded weights are checkpoint 0; null: seeded from the run. */
  weightsOf: string | null;
}

/** The strategy's state after the round just finished, as stored; null when it keeps none. */
function encodedState(strategy: Strategy): Uint8Array | null {
  const state = strategy.state();
  return state === null ? null : encodeStrategyState(state);
}

/** Each selected client's outcome for the round record; still pending at commit = timed out. */
function outcomesOf(
  state: RoundState,
  reasons: ReadonlyMap<string, { code: string | null; reason: string }>,
): ClientOutcome[] {
  return state.selected.map((clientId) => {
    const outcome = state.outcomeOf(clientId);
    switch (outcome) {
      case 'updated':
        return { clientId, outcome, code: null, reason: null };
      case 'failed':
      case 'rejected': {
        const why = reasons.get(clientId);
        return { clientId, outcome, code: why?.code ?? null, reason: why?.reason ?? null };
      }
      case 'dropped': {
        // Disconnected, or folded by a coordinator whose partial was lost (its reason).
        const why = reasons.get(clientId);
        return {
          clientId,
          outcome,
          code: why?.code ?? null,
          reason: why?.reason ?? 'disconnected',
        };
      }
      default:
        return { clientId, outcome: 'timed-out', code: null, reason: 'deadline passed' };
    }
  });
}

/**
 * A reason as the round record keeps it: at most MAX_OUTCOME_REASON_LENGTH characters, without
 * a surrogate pair cut in half; a blank one says so.
 */
function clip(reason: string): string {
  const trimmed = reason.trim();
  if (trimmed.length === 0) return 'no reason given';
  if (trimmed.length <= MAX_OUTCOME_REASON_LENGTH) return trimmed;
  let cut = trimmed.slice(0, MAX_OUTCOME_REASON_LENGTH - 1);
  if (/[\uD800-\uDBFF]$/.test(cut)) cut = cut.slice(0, -1);
  return `${cut}…`;
}
