import {
  type ClientPrivacySettings,
  CryptoGaussianNoise,
  clipForSending,
  privatiseUpdate,
} from '@tessera/privacy';
import {
  type Ack,
  bytesToWeights,
  type ClientToServerEvents,
  createMsgpackParser,
  ErrorCode,
  type EvaluateInstruction,
  type Hello,
  PROTOCOL_VERSION,
  type ServerToClientEvents,
  type StatisticsInstruction,
  type TaskAck,
  type TaskRef,
  TesseraError,
  type TrainInstruction,
  type Welcome,
  type WireError,
  weightsToBytes,
} from '@tessera/protocol';
import { type TaskDefinition, taskSha256 } from '@tessera/tasks';
import { io, type Socket } from 'socket.io-client';
import {
  type ControlVariateStore,
  controlCorrection,
  MemoryControlVariates,
  scaffoldControlStep,
} from './control-variates.js';
import {
  type OpenSecAggSession,
  SecAggParticipation,
  type SecAggSession,
} from './secure-aggregation.js';
import {
  readClientPrivacy,
  readStrategySettings,
  UNSUPPORTED_STRATEGY_SETTING,
} from './strategy-settings.js';
import { type LocalTrainer, RoundFailure } from './trainer.js';

export interface TrainingProgress {
  runId: string;
  round: number;
  epoch: number;
  epochs: number;
  batch: number;
  batches: number;
  loss: number | null;
}

/** What the client reports as it works; the CLI draws bars or lines from it. */
export interface ClientObserver {
  connected?(welcome: Welcome): void;
  disconnected?(reason: string): void;
  roundStarted?(instruction: TrainInstruction): void;
  progress?(progress: TrainingProgress): void;
  roundFinished?(summary: {
    runId: string;
    round: number;
    loss: number;
    accuracy: number;
    numExamples: number;
    durationMs: number;
    samplesPerSecond: number;
    ack: Ack;
  }): void;
  /**
   * Local training failed: `reason` is what the coordinator was told (a short message). The
   * round goes on without this client.
   */
  roundFailed?(summary: { runId: string; round: number; reason: string; ack: Ack }): void;
  evaluated?(summary: {
    runId: string;
    round: number;
    loss: number;
    accuracy: number;
    numExamples: number;
  }): void;
  warning?(message: string): void;
  /**
   * Local training produced this round's update (sent as it is, or masked under secure
   * aggregation, where `global` is what its change is taken from): for a host that keeps a
   * copy of what its organisation contributed.
   */
  contributed?(update: {
    runId: string;
    round: number;
    global: Float32Array;
    weights: Float32Array;
    numExamples: number;
  }): void;
  /**
   * Another connection with the same token took over (the newest wins): this client stops and
   * does not reconnect, so two copies never train for one organisation at once.
   */
  replaced?(message: string): void;
  /**
   * After having been welcomed, a reconnection was refused for good (the token was revoked, the
   * coordinator now speaks another protocol version): the client stops and does not retry.
   */
  stopped?(error: TesseraError): void;
}

/** Longest failure reason sent to the coordinator: enough for a sentence, not a stack. */
export const MAX_FAILURE_REASON_LENGTH = 500;

/**
 * What the coordinator (and the person at the client) is told about a failed round: the
 * error's own message, first line only (no stack, no tfjs dump), at most
 * MAX_FAILURE_REASON_LENGTH characters.
 */
export function failureReason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const firstLine = message.split('\n', 1)[0]?.trim() || (error as Error)?.name || 'unknown error';
  return firstLine.length > MAX_FAILURE_REASON_LENGTH
    ? `${firstLine.slice(0, MAX_FAILURE_REASON_LENGTH - 1)}…`
    : firstLine;
}

/** The code a failed round reports: the RoundFailure's own, none for other errors. */
function failureCode(error: unknown): { code?: string } {
  return error instanceof RoundFailure ? { code: error.code } : {};
}

/** Thrown into a training loop (from its progress callback) to abandon it when the client closes. */
class ClientClosed extends Error {
  constructor() {
    super('the client is closing');
  }
}

type ClientRuntime = Hello['client']['runtime'];

/** How the client describes itself in the hello (shown to admins, recorded with updates). */
export interface ClientIdentity {
  /** e.g. 'tessera-node-client', 'tessera-web-client'. */
  name: string;
  version: string;
  runtime: ClientRuntime;
}

export interface CoreClientOptions {
  coordinatorUrl: string;
  token: string;
  identity: ClientIdentity;
  /**
   * Trains and evaluates on the local examples, which never leave it; the client closes it on
   * close().
   */
  trainer: LocalTrainer;
  /** The tfjs backend in use (tf.getBackend()-style name), reported to the coordinator. */
  backend: string;
  /**
   * Socket.IO engine path on the coordinator (default '/socket.io'); a coordinator served under
   * a prefix behind a proxy needs it.
   */
  socketPath?: string;
  observer?: ClientObserver;
  /** How long to wait for the coordinator to acknowledge an update. */
  ackTimeoutMs?: number;
  /** Where SCAFFOLD's c_i is kept between rounds; default: in memory (MemoryControlVariates). */
  controlVariates?: ControlVariateStore;
  /**
   * Where this client's part of a SecAgg round computes; default: in this thread
   * (SecAggParticipation.create). The web client opens it in its training worker.
   */
  openSecAgg?: OpenSecAggSession;
}

/** Errors after which reconnecting cannot help: the user has to change something. */
const FATAL_CONNECT_ERRORS: readonly string[] = [
  ErrorCode.UNAUTHORIZED,
  ErrorCode.PROTOCOL_VERSION_MISMATCH,
];

/**
 * A Tessera client, the same code in Node and in browsers: holds a Socket.IO connection to the
 * coordinator, trains the global model it receives on local examples, and sends back only the
 * resulting weights, the example count and summary metrics. Work is done one instruction at a
 * time, in arrival order. No Node built-ins here: the host (CLI or web worker) loads the examples
 * and draws the progress.
 */
export class TesseraClient {
  private socket: Socket<ServerToClientEvents, ClientToServerEvents> | null = null;
  private queue: Promise<void> = Promise.resolve();
  private lastProgressSent = 0;
  private closedRounds = new Set<string>();
  /** Task definitions by sha256, each fetched once (a task never changes under its hash). */
  private readonly tasks = new Map<string, Promise<TaskDefinition>>();
  /** Set by close(): work in progress is abandoned and nothing more is sent. */
  private closing = false;
  private readonly controlVariates: ControlVariateStore;
  /**
   * SCAFFOLD's c_i⁺ per run, from the last round whose update the coordinator took, not yet
   * adopted: a round's Δc_i counts only once the round commits, which the client learns from a
   * train instruction of a later round of the run (a retried round, or one resumed by a
   * restarted coordinator, keeps its number and so starts from c_i again).
   */
  private readonly pendingControls = new Map<string, { round: number; values: Float32Array }>();
  /** This client's id, from the coordinator's welcome (secure aggregation names clients). */
  private clientId: string | null = null;
  /** The secure aggregation of the round being trained, in a secureAggregation run. */
  private secAgg: SecAggSession | null = null;

  constructor(private readonly options: CoreClientOptions) {
    this.controlVariates = options.controlVariates ?? new MemoryControlVariates();
  }

  /**
   * Connects and resolves at the coordinator's welcome. Rejects on a refusal that reconnecting
   * cannot fix (bad token, protocol mismatch); network failures are retried forever.
   */
  connect(): Promise<Welcome> {
    const { options } = this;
    const hello: Hello = {
      token: options.token,
      protocolVersion: PROTOCOL_VERSION,
      client: {
        ...options.identity,
        backend: options.backend,
        numExamples: options.trainer.numExamples,
        ...(options.trainer.numHoldout === undefined
          ? {}
          : { numHoldout: options.trainer.numHoldout }),
      },
    };
    const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io(options.coordinatorUrl, {
      parser: createMsgpackParser(),
      auth: hello,
      transports: ['websocket'],
      ...(options.socketPath !== undefined ? { path: options.socketPath } : {}),
      reconnectionDelay: 500,
      reconnectionDelayMax: 5000,
    });
    this.socket = socket;
    socket.on('train', (instruction) => this.enqueue(() => this.train(instruction)));
    socket.on('evaluate', (instruction) => this.enqueue(() => this.evaluate(instruction)));
    socket.on('statistics', (instruction) => this.enqueue(() => this.statistics(instruction)));
    socket.on('secagg', (frame) => {
      const participation = this.secAgg;
      if (participation?.runId !== frame.runId || participation.round !== frame.round) {
        options.observer?.warning?.(`secagg ${frame.step} for a round this client is not in`);
        return;
      }
      // Outside the work queue: the key steps run while local training does.
      participation.handle(frame).catch((error: unknown) => {
        options.observer?.warning?.(`secure aggregation: ${failureReason(error)}`);
      });
    });
    socket.on('round-closed', (notice) => {
      if (this.secAgg?.runId === notice.runId && this.secAgg.round === notice.round) {
        this.secAgg.abandon(`round closed: ${notice.reason}`);
      }
      this.closedRounds.add(`${notice.runId}/${notice.round}`);
      options.observer?.warning?.(
        `round ${notice.round} closed by the coordinator: ${notice.reason}`,
      );
    });
    let replaced = false;
    socket.on('rejected', (error) => {
      // CONFLICT here means another process connected with our token and took over.
      if (error.code === ErrorCode.CONFLICT) {
        replaced = true;
        options.observer?.replaced?.(error.message);
        return;
      }
      options.observer?.warning?.(`coordinator refused a frame: ${error.code}: ${error.message}`);
    });
    socket.on('disconnect', (reason) => {
      // Our own close() is not a lost connection: nothing to report, nothing to retry.
      if (this.closing) return;
      options.observer?.disconnected?.(reason);
      // Socket.IO retries lost connections itself, but not a disconnect the server asked for.
      if (reason === 'io server disconnect' && !replaced) setTimeout(() => socket.connect(), 1000);
    });

    return new Promise<Welcome>((resolve, reject) => {
      let welcomed = false;
      const stop = (error: TesseraError) => {
        if (welcomed) options.observer?.stopped?.(error);
        else reject(error);
      };
      socket.on('welcome', (welcome) => {
        this.clientId = welcome.clientId;
        options.observer?.connected?.(welcome);
        if (!welcomed) {
          welcomed = true;
          resolve(welcome);
        }
      });
      socket.on('connect_error', (error: Error & { data?: WireError }) => {
        const code = error.data?.code;
        if (code !== undefined && FATAL_CONNECT_ERRORS.includes(code)) {
          socket.disconnect();
          stop(new TesseraError(code, error.data?.message ?? error.message));
          return;
        }
        options.observer?.warning?.(`cannot reach the coordinator (${error.message}); retrying`);
        // A refusal by the server's middleware is not retried by Socket.IO itself.
        if (!socket.active) setTimeout(() => socket.connect(), 1000);
      });
    });
  }

  /**
   * Leaves the federation: disconnects at once, abandons a training loop in progress at its
   * next batch (nothing is sent for it: the coordinator counts this client as dropped) and
   * releases the trainer.
   */
  async close(): Promise<void> {
    this.closing = true;
    this.socket?.disconnect();
    await this.queue;
    this.options.trainer.dispose();
  }

  private enqueue(work: () => Promise<void>): void {
    this.queue = this.queue.then(work).catch((error: unknown) => {
      this.options.observer?.warning?.(`work failed: ${(error as Error).message}`);
    });
  }

  private async train(instruction: TrainInstruction): Promise<void> {
    const socket = this.socket;
    if (!socket || this.closing) return;
    const { runId, round, config } = instruction;
    // A round retried after too few updates keeps its number: a new train opens it again.
    this.closedRounds.delete(`${runId}/${round}`);
    const observer = this.options.observer;
    observer?.roundStarted?.(instruction);
    let reply: Parameters<ClientToServerEvents['update']>[0];
    let summary: {
      loss: number;
      accuracy: number;
      numExamples: number;
      durationMs: number;
      samplesPerSecond: number;
    } | null = null;
    let failure: string | undefined;
    /** SCAFFOLD's c_i⁺, kept once the coordinator has acknowledged the Δc_i it sent. */
    let nextControl: Float32Array | undefined;
    let secure: SecAggSession | null = null;
    try {
      // Before training: a setting this client cannot honour fails the round, not trains without it.
      const settings = readStrategySettings(
        instruction.strategy,
        this.options.trainer.supportedSettings ?? [],
      );
      const privacy = readClientPrivacy(instruction.strategy);
      const task = await this.taskOf(instruction.task);
      const global = bytesToWeights(instruction.weights, instruction.model.paramCount);
      const control =
        settings.controlVariateOption === undefined
          ? undefined
          : await this.controlsOf(instruction);
      // Keys first: the coordinator's key steps go on while this client trains.
      secure = await this.joinSecAgg(instruction);
      const result = await this.options.trainer.train(
        {
          model: instruction.model,
          task,
          weights: global,
          config,
          settings,
          ...(control === undefined
            ? {}
            : { gradientCorrection: controlCorrection(control.server, control.client) }),
        },
        (p) => this.reportProgress({ runId, round, ...p }),
      );
      const outgoing = privatised(global, result.weights, result.numExamples, privacy);
      if (secure !== null) {
        secure.provide(global, outgoing.weights, outgoing.weight);
        // Kept open (this.secAgg) for the unmask request that follows the masking step.
        const ack = await secure.masked;
        if (this.closing) return;
        const summary = {
          loss: result.loss,
          accuracy: result.accuracy,
          numExamples: result.numExamples,
          durationMs: result.durationMs,
          samplesPerSecond: result.samplesPerSecond,
        };
        observer?.contributed?.({ runId, round, global, weights: outgoing.weights, ...summary });
        observer?.roundFinished?.({ runId, round, ...summary, ack });
        if (!ack.ok)
          observer?.warning?.(`masked update refused: ${ack.error.code}: ${ack.error.message}`);
        return;
      }
      observer?.contributed?.({
        runId,
        round,
        global,
        weights: outgoing.weights,
        numExamples: result.numExamples,
      });
      let controlDelta: Uint8Array | undefined;
      if (control !== undefined) {
        if (result.steps === undefined) {
          throw new RoundFailure(
            UNSUPPORTED_STRATEGY_SETTING,
            "this client's trainer does not report its step count K, which SCAFFOLD needs",
          );
        }
        const step = scaffoldControlStep(
          control.client,
          control.server,
          global,
          result.weights,
          result.steps,
          config.learningRate,
        );
        nextControl = step.next;
        controlDelta = weightsToBytes(step.delta);
      }
      summary = {
        loss: result.loss,
        accuracy: result.accuracy,
        numExamples: result.numExamples,
        durationMs: result.durationMs,
        samplesPerSecond: result.samplesPerSecond,
      };
      reply = {
        status: 'ok',
        runId,
        round,
        weights: weightsToBytes(outgoing.weights),
        numExamples: result.numExamples,
        durationMs: Math.round(result.durationMs),
        metrics: {
          ...(result.metrics ?? { loss: result.loss, accuracy: result.accuracy }),
          samplesPerSecond: result.samplesPerSecond,
        },
        ...(controlDelta === undefined ? {} : { controlDelta }),
      };
    } catch (error) {
      secure?.abandon(failureReason(error));
      if (this.secAgg === secure) this.secAgg = null;
      if (this.closing) return; // abandoned by close(): not a failure of the round
      failure = failureReason(error);
      reply = {
        status: 'failed',
        runId,
        round,
        error: { message: failure, ...failureCode(error) },
      };
    }
    if (this.closing || this.closedRounds.has(`${runId}/${round}`)) return;
    const ack = await this.send('update', reply);
    // Only an update the coordinator took can move c_i: a refused one left c as it was too.
    if (ack.ok && nextControl !== undefined) {
      const staged = { round, values: nextControl };
      this.pendingControls.set(runId, staged);
      await this.controlVariates.stage?.(runId, staged);
    }
    if (summary) observer?.roundFinished?.({ runId, round, ...summary, ack });
    else if (failure !== undefined) observer?.roundFailed?.({ runId, round, reason: failure, ack });
    if (!ack.ok) observer?.warning?.(`update refused: ${ack.error.code}: ${ack.error.message}`);
  }

  /**
   * SCAFFOLD's two control variates for this round: the server's c from the instruction, and
   * this client's c_i of the run (zero in its first round of the run).
   */
  private async controlsOf(
    instruction: TrainInstruction,
  ): Promise<{ server: Float32Array; client: Float32Array }> {
    const { runId, round, model } = instruction;
    const { paramCount } = model;
    // After a restart, the c_i⁺ the store kept (a reloaded page's); otherwise this process's.
    const pending =
      this.pendingControls.get(runId) ??
      (await this.controlVariates.staged?.(runId, paramCount)) ??
      undefined;
    if (pending !== undefined) {
      this.pendingControls.delete(runId);
      // A later round: the pending one committed. The same round again: it did not.
      if (pending.round < round) await this.controlVariates.save(runId, pending.values);
      // Adopted (or dropped) first, forgotten second: a crash between adopts the same c_i⁺ again.
      await this.controlVariates.stage?.(runId, null);
    }
    if (instruction.controlVariate === undefined) {
      throw new RoundFailure(
        UNSUPPORTED_STRATEGY_SETTING,
        'strategy "scaffold": the train instruction carries no controlVariate (c)',
      );
    }
    const server = bytesToWeights(instruction.controlVariate, paramCount);
    const client =
      (await this.controlVariates.load(runId, paramCount)) ?? new Float32Array(paramCount);
    return { server, client };
  }

  /** Joins the round's secure aggregation, when the instruction carries one (§5.11). */
  private async joinSecAgg(instruction: TrainInstruction): Promise<SecAggSession | null> {
    const setup = instruction.secureAggregation;
    if (setup === undefined) return null;
    if (this.clientId === null) {
      throw new RoundFailure(ErrorCode.UNAVAILABLE, 'secure aggregation before the welcome');
    }
    const { runId, round } = instruction;
    this.secAgg?.abandon('a new round began');
    const open = this.options.openSecAgg ?? SecAggParticipation.create;
    const participation = await open(runId, round, setup, this.clientId, (frame) =>
      this.send('secagg', frame),
    );
    this.secAgg = participation;
    await participation.advertise();
    return participation;
  }

  private async evaluate(instruction: EvaluateInstruction): Promise<void> {
    if (this.closing) return;
    const { runId, round } = instruction;
    let reply: Parameters<ClientToServerEvents['evaluation']>[0];
    try {
      if (this.options.trainer.numHoldout === 0) {
        throw new Error('this client keeps no held-out examples');
      }
      const task = await this.taskOf(instruction.task);
      const result = await this.options.trainer.evaluate({
        model: instruction.model,
        task,
        weights: bytesToWeights(instruction.weights, instruction.model.paramCount),
        batchSize: instruction.batchSize,
      });
      reply = { status: 'ok', runId, round, ...result };
      this.options.observer?.evaluated?.({ runId, round, ...result });
    } catch (error) {
      reply = {
        status: 'failed',
        runId,
        round,
        error: { message: failureReason(error), ...failureCode(error) },
      };
    }
    if (this.closing) return;
    const ack = await this.send('evaluation', reply);
    if (!ack.ok)
      this.options.observer?.warning?.(
        `evaluation refused: ${ack.error.code}: ${ack.error.message}`,
      );
  }

  /**
   * The federated statistics round (docs/protocol.md §5.10): the trainer's summary of its own
   * rows for the task (counts, means, sums of squared deviations, category counts; never a
   * row). A trainer without `statistics` declines (STATISTICS_NOT_SUPPORTED); a RoundFailure
   * (its data does not fit the task) is reported with its code, like a failed round.
   */
  private async statistics(instruction: StatisticsInstruction): Promise<void> {
    if (this.closing) return;
    const { runId } = instruction;
    // The statistics round is round 0 of `round-closed`; a retried attempt opens it again.
    const closedKey = `${runId}/0`;
    this.closedRounds.delete(closedKey);
    let reply: Parameters<ClientToServerEvents['statistics']>[0];
    try {
      const { trainer } = this.options;
      if (trainer.statistics === undefined) {
        throw new RoundFailure(
          'STATISTICS_NOT_SUPPORTED',
          'this client cannot summarise its data for a statistics round',
        );
      }
      const task = await this.taskOf(instruction.task);
      reply = { status: 'ok', runId, statistics: await trainer.statistics(task) };
    } catch (error) {
      if (this.closing) return;
      reply = {
        status: 'failed',
        runId,
        error: { message: failureReason(error), ...failureCode(error) },
      };
    }
    if (this.closing || this.closedRounds.has(closedKey)) return;
    const ack = await this.send('statistics', reply);
    if (!ack.ok) {
      this.options.observer?.warning?.(
        `statistics refused: ${ack.error.code}: ${ack.error.message}`,
      );
    }
  }

  /**
   * The definition of the task a train or evaluate names: asked for once per sha256 (`task`,
   * docs/protocol.md §5.9) and kept; one whose canonical hash is not the sha256 it was asked
   * for is refused (TASK_HASH_MISMATCH), so every client trains exactly the task of the run.
   */
  private taskOf(ref: TaskRef): Promise<TaskDefinition> {
    let task = this.tasks.get(ref.sha256);
    if (task === undefined) {
      task = this.fetchTask(ref);
      this.tasks.set(ref.sha256, task);
      // A failed fetch is not kept: the next round asks again.
      task.catch(() => this.tasks.delete(ref.sha256));
    }
    return task;
  }

  private async fetchTask(ref: TaskRef): Promise<TaskDefinition> {
    const socket = this.socket;
    if (!socket) throw new RoundFailure(ErrorCode.UNAVAILABLE, 'client closed');
    let ack: TaskAck;
    try {
      ack = (await socket
        .timeout(this.options.ackTimeoutMs ?? 120_000)
        .emitWithAck('task', { sha256: ref.sha256 })) as TaskAck;
    } catch {
      throw new RoundFailure(
        ErrorCode.UNAVAILABLE,
        `task ${ref.name}: no answer from the coordinator`,
      );
    }
    if (!ack.ok) {
      throw new RoundFailure(ack.error.code, `task ${ref.name}: ${ack.error.message}`);
    }
    let computed: string;
    try {
      computed = taskSha256(ack.task);
    } catch (error) {
      throw new RoundFailure(
        'TASK_HASH_MISMATCH',
        `task ${ref.name}: the coordinator sent a definition that is not a valid task (${failureReason(error)})`,
      );
    }
    if (computed !== ref.sha256) {
      throw new RoundFailure(
        'TASK_HASH_MISMATCH',
        `task ${ref.name} version ${ref.version}: the definition received hashes to ${computed}, not ${ref.sha256}; refusing to train it`,
      );
    }
    return ack.task as unknown as TaskDefinition;
  }

  private async send(
    event: 'update' | 'evaluation' | 'statistics' | 'secagg',
    reply: unknown,
  ): Promise<Ack> {
    const socket = this.socket;
    if (!socket)
      return { ok: false, error: { code: ErrorCode.UNAVAILABLE, message: 'client closed' } };
    try {
      return (await socket
        .timeout(this.options.ackTimeoutMs ?? 120_000)
        .emitWithAck(event, reply)) as Ack;
    } catch {
      return {
        ok: false,
        error: { code: ErrorCode.UNAVAILABLE, message: 'no acknowledgement from the coordinator' },
      };
    }
  }

  private reportProgress(progress: TrainingProgress): void {
    // Training loops report every batch: the place to stop one that close() abandoned.
    if (this.closing) throw new ClientClosed();
    this.options.observer?.progress?.(progress);
    const now = Date.now();
    // Best effort and throttled: progress is for people watching, not for the protocol.
    if (now - this.lastProgressSent >= 500 || progress.batch === progress.batches) {
      this.lastProgressSent = now;
      this.socket?.volatile.emit('progress', progress);
    }
  }
}

/**
 * The update as it leaves this client: under local DP g + clip(w - g, C) + N(0, (sigma C)^2)
 * from the platform's CSPRNG (Node and browsers alike); under central DP with secure
 * aggregation g + clip(w - g, C), weighed as 1 in the masked sum (dp-fedavg sums clipped
 * changes unweighted); otherwise w as trained, weighed by its example count.
 */
export function privatised(
  global: Float32Array,
  weights: Float32Array,
  numExamples: number,
  privacy: ClientPrivacySettings,
): { weights: Float32Array; weight: number } {
  let outgoing = weights;
  if (privacy.localDp !== null) {
    const noise = new CryptoGaussianNoise().forRound(0);
    outgoing = privatiseUpdate(global, outgoing, privacy.localDp, noise).weights;
  }
  if (privacy.centralClipNorm === null) return { weights: outgoing, weight: numExamples };
  return { weights: clipForSending(global, outgoing, privacy.centralClipNorm).weights, weight: 1 };
}
