/**
 * A data-parallel training worker (worker_threads): holds a replica of the model being
 * trained and computes the gradient of its shard of each batch. Started by
 * data-parallel.ts; every message is handled in order.
 */
import { parentPort } from 'node:worker_threads';
import * as tfl from '@tensorflow/tfjs-layers';
import { type BackendName, initBackend } from './backend.js';
import type { FromWorker, ToWorker } from './data-parallel.js';
import { Replica } from './data-parallel-replica.js';
import { setFlatWeights } from './weights.js';

const port = parentPort;
if (port === null) throw new Error('data-parallel-worker.ts runs in a worker thread only');

let replica: Replica | undefined;
let topology = '';

async function handle(message: ToWorker): Promise<FromWorker | undefined> {
  switch (message.type) {
    case 'start': {
      const info = await initBackend(message.backend as BackendName);
      return { type: 'started', backend: info.tfBackend };
    }
    case 'load': {
      if (replica === undefined || message.topology !== topology) {
        replica?.model.dispose();
        const model = await tfl.models.modelFromJSON({
          modelTopology: JSON.parse(message.topology),
        });
        topology = message.topology;
        replica = new Replica(model, new Float32Array(message.gradients), message.slot);
      } else {
        replica = new Replica(replica.model, new Float32Array(message.gradients), message.slot);
      }
      setFlatWeights(replica.model, message.weights);
      return { type: 'loaded' };
    }
    case 'shard': {
      if (replica === undefined) throw new Error('shard before load');
      // An empty shard (a batch smaller than the thread count) only acknowledges, so that
      // the caller knows the previous step's sum is done before it reuses that bank.
      if (message.size === 0) return { type: 'shard', loss: 0, correct: 0 };
      const { x, y, size, batchSize, parity } = message;
      return { type: 'shard', ...replica.computeShard(x, y, size, batchSize, parity) };
    }
    case 'apply': {
      if (replica === undefined) throw new Error('apply before load');
      replica.applySum(message.slots, message.learningRate, message.parity);
      return undefined;
    }
  }
}

let queue: Promise<void> = Promise.resolve();
port.on('message', (message: ToWorker) => {
  queue = queue.then(async () => {
    try {
      const reply = await handle(message);
      if (reply !== undefined) port.postMessage(reply);
    } catch (error) {
      const text = error instanceof Error ? error.message : String(error);
      port.postMessage({ type: 'error', message: text } satisfies FromWorker);
    }
  });
});
