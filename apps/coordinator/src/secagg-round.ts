import type { RoundPrivacyRecord } from '@tessera/db';
import {
  ErrorCode,
  type SecAggClientFrame,
  type SecAggServerFrame,
  type SecureAggregationConfig,
  TesseraError,
} from '@tessera/protocol';
import {
  type Curve,
  SECAGG_PROTOCOL,
  type SecAggResult,
  SecAggServer,
  type SecAggSetup,
  SUM_BOUND,
  supportedCurves,
} from '@tessera/secagg';
import type { Logger } from './logger.js';
import type { Transport } from './transport.js';
import type { Wakeup } from './wakeup.js';

/**
 * The coordinator's part of one secure-aggregation round (docs/secure-aggregation.md): drives
 * @tessera/secagg's server over the engine's Transport, step by step, each with its deadline.
 * The round engine opens it after sending `train` (whose instruction carries the setup), hands
 * it every `secagg` frame, and gets back the unmasked FedAvg of the survivors' changes, or
 * the step at which too few clients were left (the attempt is retried like any round).
 */

export interface SecAggRoundDeps {
  transport: Transport;
  logger: Logger;
  /** The engine's wake-up: notified by frames, disconnects and stops alike. */
  wakeup: Wakeup;
}

export interface SecAggTiming {
  /** Deadline of each key step (advertise, share, unmask). */
  stepDeadlineMs: number;
  /** Unix ms: the round's deadline, by which masked inputs must be in (clients train first). */
  roundDeadline: number;
}

export type SecAggOutcome =
  | { kind: 'summed'; result: SecAggResult }
  | { kind: 'too-few'; step: string; reason: string }
  | { kind: 'stopped' };

type ClientStep = SecAggClientFrame['step'];
const STEPS: readonly ClientStep[] = ['advertise', 'share', 'mask', 'unmask'];

let coordinatorCurve: Promise<Curve> | undefined;

/** X25519 wherever this runtime has it (Node 20+ and current browsers do), else P-256. */
function curveOfThisRuntime(): Promise<Curve> {
  coordinatorCurve ??= supportedCurves().then((curves) =>
    curves.includes('X25519') ? 'X25519' : 'P-256',
  );
  return coordinatorCurve;
}

/**
 * The setup of a round of `clientIds`: t the larger of a majority and the configured share.
 * `unweighted` (dp-fedavg, whose clients clip and weigh their change 1): E is 1, which also
 * makes the fixed-point step E·R/L as fine as it can be.
 */
export function secAggSetupFor(
  config: SecureAggregationConfig,
  roundId: string,
  clientIds: readonly string[],
  parameterCount: number,
  curve: Curve,
  unweighted = false,
): SecAggSetup {
  const n = clientIds.length;
  const majority = Math.floor(n / 2) + 1;
  const threshold = Math.min(n, Math.max(majority, Math.ceil(config.thresholdFraction * n)));
  return {
    protocol: SECAGG_PROTOCOL,
    roundId,
    curve,
    clientIds: [...clientIds],
    threshold,
    parameterCount,
    clipRange: config.clipRange,
    // The example counts are summed in one word: n·E stays within 2^31 − 1.
    maxExamplesPerClient: unweighted
      ? 1
      : Math.min(config.maxExamplesPerClient, Math.floor(SUM_BOUND / n)),
  };
}

export class SecAggRound {
  private readonly server: SecAggServer;
  /** Senders whose message of each step the server accepted. */
  private readonly answered = new Map<ClientStep, Set<string>>(
    STEPS.map((step) => [step, new Set<string>()]),
  );
  /** Who is expected at the step now open (U0, U1, U2, U3 in turn). */
  private expected: readonly string[];

  /** The round of `clientIds` under `config`, its setup ready to go with the train instruction. */
  static async open(
    deps: SecAggRoundDeps,
    runId: string,
    round: number,
    attempt: number,
    config: SecureAggregationConfig,
    clientIds: readonly string[],
    parameterCount: number,
    roundDeadline: number,
    unweighted = false,
  ): Promise<SecAggRound> {
    // The attempt is part of the id: a message of an earlier attempt is refused as of another round.
    const roundId = `${runId}/${round}/${attempt}`;
    const curve = await curveOfThisRuntime();
    const setup = secAggSetupFor(config, roundId, clientIds, parameterCount, curve, unweighted);
    return new SecAggRound(deps, runId, round, setup, {
      stepDeadlineMs: config.stepDeadlineMs,
      roundDeadline,
    });
  }

  constructor(
    private readonly deps: SecAggRoundDeps,
    readonly runId: string,
    readonly round: number,
    readonly setup: SecAggSetup,
    private readonly timing: SecAggTiming,
  ) {
    this.server = new SecAggServer(setup);
    this.expected = setup.clientIds;
  }

  /**
   * A client's message (the frame schema-checked by the socket edge). The SecAgg server
   * refuses, with its code, anything not of this round and step, from outside it, a repeat, a
   * wrong length or a key that does not verify, and then changes nothing.
   */
  async receive(clientId: string, frame: SecAggClientFrame): Promise<void> {
    if (frame.runId !== this.runId) {
      throw new TesseraError(ErrorCode.WRONG_RUN, `the secure aggregation is of run ${this.runId}`);
    }
    if (frame.round !== this.round) {
      throw new TesseraError(
        ErrorCode.WRONG_ROUND,
        `the secure aggregation open is of round ${this.round}`,
        { openRound: this.round },
      );
    }
    const { server } = this;
    switch (frame.step) {
      case 'advertise':
        await server.receiveAdvertise(clientId, frame.message);
        break;
      case 'share':
        await server.receiveShareKeys(clientId, frame.message);
        break;
      case 'mask':
        await server.receiveMaskedInput(clientId, frame.message);
        break;
      case 'unmask':
        await server.receiveUnmaskResponse(clientId, frame.message);
        break;
    }
    this.answered.get(frame.step)?.add(clientId);
    this.deps.wakeup.notify();
  }

  /**
   * Runs the four steps. `isOut(id)`: the client left the round (disconnected, failed its
   * training), so no step waits for it; `stopped()`: the engine is stopping.
   */
  async run(isOut: (clientId: string) => boolean, stopped: () => boolean): Promise<SecAggOutcome> {
    const { server, timing } = this;
    const stepDeadline = () => Math.min(Date.now() + timing.stepDeadlineMs, timing.roundDeadline);
    try {
      if (!(await this.waitFor('advertise', stepDeadline(), isOut, stopped)))
        return { kind: 'stopped' };
      const advertised = server.closeAdvertising();
      this.expected = advertised.participants.map((p) => p.clientId);
      this.send(this.expected, 'advertised', advertised);

      if (!(await this.waitFor('share', stepDeadline(), isOut, stopped)))
        return { kind: 'stopped' };
      const bundles = server.closeSharing();
      this.expected = [...bundles.keys()];
      for (const [clientId, bundle] of bundles) this.send([clientId], 'shares', bundle);

      // Clients mask once their training is done: the round's own deadline.
      if (!(await this.waitFor('mask', timing.roundDeadline, isOut, stopped)))
        return { kind: 'stopped' };
      const request = server.closeMasking();
      this.expected = request.survivors;
      this.send(this.expected, 'unmask', request);

      // Survivors that drop now still count: their self-masks are rebuilt from the others'.
      const unmaskDeadline = Date.now() + timing.stepDeadlineMs;
      if (!(await this.waitFor('unmask', unmaskDeadline, isOut, stopped)))
        return { kind: 'stopped' };
      return { kind: 'summed', result: await server.finish() };
    } catch (cause) {
      const error = TesseraError.from(cause);
      if (
        error.code !== ErrorCode.SECAGG_THRESHOLD_NOT_MET &&
        error.code !== ErrorCode.SECAGG_KEY_INVALID
      ) {
        throw error;
      }
      this.deps.logger.warn('secure aggregation ended without a sum', {
        runId: this.runId,
        round: this.round,
        step: server.stage,
        code: error.code,
        message: error.message,
      });
      return { kind: 'too-few', step: server.stage, reason: error.message };
    }
  }

  /** Until every expected client answered or left, or the deadline; false when stopped. */
  private async waitFor(
    step: ClientStep,
    deadline: number,
    isOut: (clientId: string) => boolean,
    stopped: () => boolean,
  ): Promise<boolean> {
    const answered = this.answered.get(step) as Set<string>;
    const waiting = () => this.expected.some((id) => !answered.has(id) && !isOut(id));
    while (waiting() && !stopped() && Date.now() < deadline) {
      await this.deps.wakeup.wait(deadline - Date.now());
    }
    // A message still being checked when the deadline passed is let in: the server's own
    // check on accepting refuses it once the step has closed.
    return !stopped();
  }

  private send(
    clientIds: readonly string[],
    step: SecAggServerFrame['step'],
    message: object,
  ): void {
    if (clientIds.length === 0) return;
    this.deps.transport.sendSecAgg(clientIds, {
      runId: this.runId,
      round: this.round,
      step,
      message: message as Record<string, unknown>,
    });
  }
}

/**
 * What the round record keeps of a secure aggregation (Round.privacy, flat): the mechanism and
 * its parameters, who was left at each step (as counts), the transcript hash, and where the
 * clipping happened. Never a masked or unmasked individual update.
 */
export function secAggRecord(setup: SecAggSetup, result: SecAggResult): RoundPrivacyRecord {
  const u1 = setup.clientIds.length - result.neverAdvertised.length;
  return {
    ...setupRecord(setup),
    u1,
    u2: u1 - result.droppedAfterAdvertising.length,
    u3: result.survivors.length,
    droppedAfterMasking: result.droppedAfterMasking.length,
    faultyShareHolders: result.faultyShareHolders.length,
    maxAbsError: result.maxAbsError,
    transcriptEntries: result.transcript.length,
    transcriptHash: result.transcriptHash,
  };
}

/** The round's SecAgg setup, as both records keep it. */
function setupRecord(setup: SecAggSetup): RoundPrivacyRecord {
  return {
    mechanism: 'secure-aggregation',
    protocol: setup.protocol,
    curve: setup.curve,
    threshold: setup.threshold,
    selected: setup.clientIds.length,
    clipRange: setup.clipRange,
    maxExamplesPerClient: setup.maxExamplesPerClient,
    clipping: 'client',
  };
}

/**
 * What the round record keeps of a secure aggregation that ended without a sum (too few
 * clients left at `step`): the setup, and where and why it ended. Recorded only where the
 * round still commits (dp-fedavg, which then releases its noise alone).
 */
export function secAggFailureRecord(
  setup: SecAggSetup,
  step: string,
  reason: string,
): RoundPrivacyRecord {
  return {
    ...setupRecord(setup),
    unmasked: false,
    endedAtStep: step,
    endReason: reason,
  };
}

/**
 * Round.privacy of dp-fedavg under secure aggregation: both mechanisms, flat. The SecAgg
 * fields as secAggRecord gives them, dp-fedavg's beside them (never the noise), and
 * `mechanism` naming both; `secureAggregation` keeps SecAgg's protocol.
 */
export function secAggDpRecord(
  secure: RoundPrivacyRecord,
  dp: Readonly<Record<string, number | string | boolean | null>>,
): RoundPrivacyRecord {
  return {
    ...secure,
    unmasked: secure['unmasked'] ?? true,
    ...dp,
    // The clients clip (to C in L2, then to [-R, R] per coordinate), even in a round whose
    // sum never arrived.
    clipping: 'client',
    mechanism: 'sampled-gaussian+secure-aggregation',
    secureAggregation: secure['protocol'] ?? null,
  };
}
