import {
  type Ack,
  type SecAggClientFrame,
  type SecAggServerFrame,
  type SecAggSetupMessage,
  TesseraError,
} from '@tessera/protocol';
import { SecAggClient, type SecAggInput, type SecAggSetup } from '@tessera/secagg';
import { RoundFailure } from './trainer.js';

/**
 * A client's part of one secure-aggregation round (docs/protocol.md §5.11): @tessera/secagg's
 * client state machine, fed the coordinator's `secagg` frames as they come (while local
 * training runs) and the round's change once training is done. Only the masked vector leaves
 * the client: the coordinator never receives this client's update in the clear.
 */

/** Sends a frame and resolves with its ack (a refusal is an ack, not a rejection). */
export type SecAggSend = (frame: SecAggClientFrame) => Promise<Ack>;
type Send = SecAggSend;

/**
 * What the client's round loop needs of its part of one SecAgg round, wherever that part
 * computes: SecAggParticipation in this thread (Node), or the web client's, which runs the same
 * SecAggParticipation in its training worker so that the masking (the PRG expansion, one pass
 * over the model per peer) never blocks the page.
 */
export interface SecAggSession {
  readonly runId: string;
  readonly round: number;
  /** The coordinator's ack of the masked input; rejects (a RoundFailure) when a step failed. */
  readonly masked: Promise<Ack>;
  /** Round 0: sends this client's public keys (route frames to `handle` before calling it). */
  advertise(): Promise<void>;
  /** The round's trained weights: the change from `global` is what is masked. */
  provide(global: Float32Array, trained: Float32Array, numExamples: number): void;
  /** Training failed or the round was closed: nothing will be masked. */
  abandon(reason: string): void;
  /** One coordinator message; the reply goes back through the session's send. */
  handle(frame: SecAggServerFrame): Promise<void>;
}

/** Opens a client's part of a round: checks the setup and makes the round's key pairs. */
export type OpenSecAggSession = (
  runId: string,
  round: number,
  setup: SecAggSetupMessage,
  clientId: string,
  send: SecAggSend,
) => Promise<SecAggSession>;

/** A refused frame: the step cannot go on from this client. */
async function sent(send: Send, frame: SecAggClientFrame): Promise<Ack> {
  const ack = await send(frame);
  if (!ack.ok)
    throw new Error(`secagg ${frame.step} refused: ${ack.error.code}: ${ack.error.message}`);
  return ack;
}

export class SecAggParticipation implements SecAggSession {
  private resolveInput: ((input: SecAggInput) => void) | undefined;
  private rejectInput: ((reason: Error) => void) | undefined;
  /** The change to mask, once local training has produced it. */
  private readonly input: Promise<SecAggInput>;
  private resolveMasked: ((ack: Ack) => void) | undefined;
  private rejectMasked: ((reason: unknown) => void) | undefined;
  /** Settled once the masked input's fate is known. */
  private maskingSettled = false;
  /**
   * The coordinator's ack of the masked input: the round's contribution is in. Rejects when a
   * step before it failed here (a key that does not verify, an input that cannot be quantised):
   * the round's training then reports the failure, rather than wait for a step that never comes.
   */
  readonly masked: Promise<Ack>;

  private constructor(
    readonly runId: string,
    readonly round: number,
    private readonly client: SecAggClient,
    private readonly send: Send,
  ) {
    this.input = new Promise<SecAggInput>((resolve, reject) => {
      this.resolveInput = resolve;
      this.rejectInput = reject;
    });
    this.masked = new Promise<Ack>((resolve, reject) => {
      this.resolveMasked = (ack) => {
        this.maskingSettled = true;
        resolve(ack);
      };
      this.rejectMasked = (reason) => {
        this.maskingSettled = true;
        reject(reason);
      };
    });
    // Never read when the round ends before masking: not an unhandled rejection.
    this.input.catch(() => {});
    // Read only once training is done: a step may fail (and settle it) before that.
    this.masked.catch(() => {});
  }

  /**
   * Checks the setup (this client among its clients, the curve available, a safe encoding) and
   * makes this round's key pairs. Refuses with the SecAgg code otherwise.
   */
  static async create(
    runId: string,
    round: number,
    setup: SecAggSetupMessage,
    clientId: string,
    send: Send,
  ): Promise<SecAggParticipation> {
    const client = await SecAggClient.create(setup as SecAggSetup, clientId);
    return new SecAggParticipation(runId, round, client, send);
  }

  /**
   * Round 0: the public keys. The host must route `secagg` frames here before calling it: the
   * keys of U1 may come back before this frame's ack does.
   */
  async advertise(): Promise<void> {
    const { runId, round } = this;
    await sent(this.send, { runId, round, step: 'advertise', message: this.client.advertise() });
  }

  get setup(): SecAggSetup {
    return this.client.setup;
  }

  /**
   * The round's contribution: the change from the global model (each coordinate clipped to
   * the setup's range when quantised), weighted by the example count, capped at the setup's
   * maximum so the sum cannot wrap.
   */
  provide(global: Float32Array, trained: Float32Array, numExamples: number): void {
    const change = new Float32Array(trained.length);
    for (let i = 0; i < change.length; i++) {
      change[i] = (trained[i] as number) - (global[i] as number);
    }
    const examples = Math.max(1, Math.min(numExamples, this.setup.maxExamplesPerClient));
    this.resolveInput?.({ weights: change, numExamples: examples });
  }

  /** Training failed or the round was closed: nothing will be masked. */
  abandon(reason: string): void {
    this.rejectInput?.(new Error(reason));
    this.resolveMasked?.({ ok: false, error: { code: 'UNAVAILABLE', message: reason } });
  }

  /**
   * One coordinator message; the reply goes back through `send`. A failure before the masked
   * input is sent settles `masked` with it (the host reports it as the round's failure); one
   * after (the unmask step) is thrown to the host.
   */
  async handle(frame: SecAggServerFrame): Promise<void> {
    try {
      await this.step(frame);
    } catch (error) {
      if (this.maskingSettled) throw error;
      // With its code (NON_FINITE_WEIGHTS, SECAGG_KEY_INVALID...), for the failed update.
      const failure = TesseraError.from(error);
      this.rejectMasked?.(
        new RoundFailure(
          failure.code,
          `secure aggregation, step ${frame.step}: ${failure.message}`,
        ),
      );
    }
  }

  private async step(frame: SecAggServerFrame): Promise<void> {
    const { runId, round } = this;
    switch (frame.step) {
      case 'advertised': {
        const message = await this.client.shareKeys(frame.message as never);
        await sent(this.send, { runId, round, step: 'share', message });
        return;
      }
      case 'shares': {
        const input = await this.input;
        const message = await this.client.maskInput(frame.message as never, input);
        this.resolveMasked?.(await this.send({ runId, round, step: 'mask', message }));
        return;
      }
      case 'unmask': {
        const message = this.client.unmask(frame.message as never);
        await sent(this.send, { runId, round, step: 'unmask', message });
        return;
      }
    }
  }
}
