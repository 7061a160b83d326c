import type { TrainRequest } from '@tessera/client/core';
import { afterEach, describe, expect, it } from 'vitest';
import type { PageToWorker, WorkerToPage } from './messages.js';
import { WorkerTrainer } from './worker-trainer.js';

/**
 * The page's side of the training worker, over a real MessageChannel: a MessagePort's
 * postMessage(message, transfer) detaches transferred buffers exactly as a Worker's does, and
 * the far port answers as worker.ts would.
 */

const channels: MessageChannel[] = [];
afterEach(() => {
  for (const channel of channels.splice(0)) {
    channel.port1.close();
    channel.port2.close();
  }
});

/** A WorkerTrainer on one port; the other port trains by adding 1 to each weight. */
function trainerOverChannel(): { trainer: WorkerTrainer; received: Float32Array[] } {
  const channel = new MessageChannel();
  channels.push(channel);
  const received: Float32Array[] = [];
  const worker = channel.port2;
  worker.addEventListener('message', (event: MessageEvent<PageToWorker>) => {
    const message = event.data;
    if (message.type !== 'train') return;
    received.push(message.request.weights);
    const weights = message.request.weights.map((w) => w + 1);
    const answer: WorkerToPage = {
      type: 'trained',
      id: message.id,
      outcome: {
        weights,
        loss: 0.5,
        accuracy: 0.75,
        numExamples: 3,
        durationMs: 1,
        samplesPerSecond: 3000,
      },
    };
    worker.postMessage(answer, [weights.buffer]);
  });
  worker.start();
  channel.port1.start();
  return { trainer: new WorkerTrainer(channel.port1 as unknown as Worker, 3, 0), received };
}

describe('the page side of the training worker', () => {
  it("leaves the caller's global weights readable after training (the secure-aggregation change and SCAFFOLD's step are computed from them)", async () => {
    const { trainer, received } = trainerOverChannel();
    const global = Float32Array.from([0.25, -0.5, 1.5, 2]);
    const request = { weights: global } as unknown as TrainRequest;
    const outcome = await trainer.train(request, () => undefined);
    // Regression: the global's own buffer was transferred, leaving the page a zero-length
    // array, so trained − global was NaN and the masking step threw (the page never masked).
    expect(global.length).toBe(4);
    expect([...global]).toEqual([0.25, -0.5, 1.5, 2]);
    expect([...(received[0] as Float32Array)]).toEqual([0.25, -0.5, 1.5, 2]);
    expect([...outcome.weights]).toEqual([1.25, 0.5, 2.5, 3]);
  });
});
