import {
  type Ack,
  bytesToWeights,
  PROTOCOL_VERSION,
  type SecAggClientFrame,
  type SecAggServerFrame,
  type TrainInstruction,
} from '@tessera/protocol';
import { SecAggClient, type SecAggSetup } from '@tessera/secagg';
import { expect } from 'vitest';
import { type ClientSocket, connectRaw, rawClientInfo, sendWithAck } from './raw-client.js';

/**
 * A SecAgg client written from docs/protocol.md §5.11 alone: it joins a run's secure
 * aggregation with @tessera/secagg's client and contributes a change the test chose, so the
 * test knows exactly what went into the sum. `before` lets a test send other frames first
 * (bad ones) at any step and read their acks; `dropAfterMasking` disconnects once the masked
 * input is acknowledged.
 */

export type ScriptedStep = SecAggClientFrame['step'];

export interface ScriptedOptions {
  numExamples: number;
  /** The change this client contributes, given the model's size. */
  change: (paramCount: number) => Float32Array;
  dropAfterMasking?: boolean;
  before?: (
    step: ScriptedStep,
    real: SecAggClientFrame,
    send: (frame: unknown) => Promise<Ack>,
  ) => Promise<void>;
}

export interface ScriptedClient {
  socket: ClientSocket;
  clientId: string;
  /** The global model of each round it was sent, by round. */
  globals: Map<number, Float32Array>;
  /** Acks of this client's real secagg frames, in order ("ok" or the code). */
  acks: string[];
  /** What went wrong in its handlers while connected (empty for a client that did its part). */
  errors: string[];
}

export async function scriptedSecAggClient(
  url: string,
  token: string,
  options: ScriptedOptions,
): Promise<ScriptedClient> {
  const { socket, welcome, error } = await connectRaw(url, {
    token,
    protocolVersion: PROTOCOL_VERSION,
    client: rawClientInfo({ numExamples: options.numExamples, numHoldout: 0 }),
  });
  expect(error).toBeUndefined();
  const clientId = welcome?.clientId as string;
  const scripted: ScriptedClient = { socket, clientId, globals: new Map(), acks: [], errors: [] };
  const noting = (work: Promise<unknown>) =>
    work.catch((cause: unknown) => {
      if (socket.connected) scripted.errors.push(String(cause));
    });
  const send = (frame: unknown) =>
    socket.timeout(60_000).emitWithAck('secagg', frame as never) as Promise<Ack>;
  const sendReal = async (frame: SecAggClientFrame) => {
    await options.before?.(frame.step, frame, send);
    const ack = await send(frame);
    scripted.acks.push(ack.ok ? 'ok' : ack.error.code);
    return ack;
  };
  let session: { runId: string; round: number; client: SecAggClient; paramCount: number } | null =
    null;

  socket.on('train', (instruction: TrainInstruction) => {
    const { runId, round, model } = instruction;
    scripted.globals.set(round, bytesToWeights(instruction.weights, model.paramCount));
    const setup = instruction.secureAggregation;
    if (setup === undefined) {
      void sendWithAck(socket, 'update', {
        status: 'failed',
        runId,
        round,
        error: { message: 'this scripted client takes part in secure aggregation only' },
      }).catch(() => {});
      return;
    }
    void noting(
      (async () => {
        const client = await SecAggClient.create(setup as SecAggSetup, clientId);
        session = { runId, round, client, paramCount: model.paramCount };
        await sendReal({ runId, round, step: 'advertise', message: client.advertise() });
      })(),
    );
  });
  socket.on('secagg', (frame: SecAggServerFrame) => {
    const current = session;
    if (current === null || current.round !== frame.round) return;
    const { runId, round, client, paramCount } = current;
    void noting(
      (async () => {
        if (frame.step === 'advertised') {
          const message = await client.shareKeys(frame.message as never);
          await sendReal({ runId, round, step: 'share', message });
        } else if (frame.step === 'shares') {
          const message = await client.maskInput(frame.message as never, {
            weights: options.change(paramCount),
            numExamples: options.numExamples,
          });
          const ack = await sendReal({ runId, round, step: 'mask', message });
          if (ack.ok && options.dropAfterMasking) socket.disconnect();
        } else {
          const message = client.unmask(frame.message as never);
          await sendReal({ runId, round, step: 'unmask', message });
        }
      })(),
    );
  });
  socket.on('evaluate', ({ runId, round }) => {
    void sendWithAck(socket, 'evaluation', {
      status: 'failed',
      runId,
      round,
      error: { message: 'no held-out data' },
    }).catch(() => {});
  });
  return scripted;
}

/** A change of small, distinct values: client `seed`'s contribution. */
export function patternChange(seed: number, scale = 0.01) {
  return (paramCount: number) => {
    const change = new Float32Array(paramCount);
    for (let i = 0; i < paramCount; i++) change[i] = scale * Math.sin(seed * 7.1 + i * 0.013);
    return change;
  };
}

/** Σ n_k·clip(Δ_k) / Σ n_k added to `global`, in float64, as FedAvg of the changes defines it. */
export function fedAvgOfChanges(
  global: Float32Array,
  contributions: readonly { change: Float32Array; numExamples: number }[],
  clipRange: number,
): Float64Array {
  const total = contributions.reduce((sum, c) => sum + c.numExamples, 0);
  const out = Float64Array.from(global);
  for (const { change, numExamples } of contributions) {
    for (let i = 0; i < out.length; i++) {
      const clipped = Math.max(-clipRange, Math.min(clipRange, change[i] as number));
      out[i] = (out[i] as number) + (numExamples * clipped) / total;
    }
  }
  return out;
}

export function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    worst = Math.max(worst, Math.abs((a[i] as number) - (b[i] as number)));
  }
  return worst;
}
