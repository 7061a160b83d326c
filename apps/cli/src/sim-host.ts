#!/usr/bin/env node
/**
 * One process of a simulation: hosts many virtual clients, each with its own partition of
 * MNIST and its own Socket.IO connection to the coordinator, speaking the real protocol
 * through the real client (@tessera/client). The spec arrives as JSON on stdin, so tokens
 * never appear in the process list.
 *
 * The clients selected in a round train one after the other (TrainOneAtATime), not
 * interleaved: the process has its share of the cores either way, so the work is the same, but
 * each client's training time is then its own (interleaved, each would count the others'), and
 * updates leave as each client finishes instead of all at the end of the round, as from real
 * organisations. Each training's time is printed on stdout (`trained RUN ROUND MS`): the sum
 * over this process is the pure training time of its share of the round.
 */
import {
  type LocalTrainer,
  TesseraClient,
  TfjsTrainer,
  type TrainerProgress,
  type TrainOutcome,
  type TrainRequest,
} from '@tessera/client';
import {
  loadMnist,
  parsePartitionScheme,
  partition,
  splitHoldout,
  toExamples,
} from '@tessera/data';
import { initBackend } from '@tessera/ml';

export interface SimHostSpec {
  coordinatorUrl: string;
  /** Partition of the MNIST training set over all virtual clients of the simulation. */
  numClients: number;
  partition: string;
  partitionSeed: number;
  holdoutFraction: number;
  /** Threads for the 'openblas' backend's products in this process. */
  threads: number;
  /** This process's virtual clients: their token and their partition index. */
  clients: Array<{ token: string; index: number }>;
}

/**
 * A client's trainer that waits for the process's other clients to finish training before it
 * starts, and reports how long its own training took.
 */
class TrainOneAtATime implements LocalTrainer {
  private static turn: Promise<unknown> = Promise.resolve();
  /** The round being trained, from the client's roundStarted (a TrainRequest does not say). */
  round: { runId: string; round: number } | null = null;

  constructor(private readonly inner: LocalTrainer) {}

  get numExamples() {
    return this.inner.numExamples;
  }
  get numHoldout() {
    return this.inner.numHoldout;
  }
  get supportedSettings() {
    return this.inner.supportedSettings;
  }

  train(
    request: TrainRequest,
    onProgress: (progress: TrainerProgress) => void,
  ): Promise<TrainOutcome> {
    const trained = TrainOneAtATime.turn.then(async () => {
      const start = performance.now();
      const outcome = await this.inner.train(request, onProgress);
      const ms = performance.now() - start;
      if (this.round !== null)
        process.stdout.write(`trained ${this.round.runId} ${this.round.round} ${ms.toFixed(1)}\n`);
      return outcome;
    });
    // The next client's turn comes when this one is done, whether it trained or failed.
    TrainOneAtATime.turn = trained.catch(() => {});
    return trained;
  }

  evaluate: LocalTrainer['evaluate'] = (request) => this.inner.evaluate(request);
  dispose(): void {
    this.inner.dispose();
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function main(): Promise<void> {
  const spec = JSON.parse(await readStdin()) as SimHostSpec;
  const backend = await initBackend('auto', { threads: spec.threads });
  const mnist = loadMnist('train');
  const shares = partition(
    mnist.labels,
    spec.numClients,
    parsePartitionScheme(spec.partition),
    spec.partitionSeed,
  );
  const clients = spec.clients.map(({ token, index }) => {
    const { train, holdout } = splitHoldout(
      shares[index] as Uint32Array,
      spec.holdoutFraction,
      spec.partitionSeed,
    );
    const trainer = new TrainOneAtATime(
      new TfjsTrainer(
        toExamples(mnist, train),
        holdout.length > 0 ? toExamples(mnist, holdout) : null,
      ),
    );
    return new TesseraClient({
      coordinatorUrl: spec.coordinatorUrl,
      token,
      identity: { name: 'tessera-sim', version: '0.1.0', runtime: 'node' },
      backend: backend.name,
      trainer,
      observer: {
        roundStarted: ({ runId, round }) => {
          trainer.round = { runId, round };
        },
        warning: (message) => process.stderr.write(`virtual client ${index}: ${message}\n`),
      },
    });
  });
  await Promise.all(clients.map((client) => client.connect()));
  process.stdout.write(`ready ${clients.length}\n`);
  const shutdown = async () => {
    await Promise.all(clients.map((client) => client.close()));
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown());
  process.once('SIGINT', () => void shutdown());
}

main().catch((error: unknown) => {
  process.stderr.write(`sim-host: ${(error as Error)?.stack ?? String(error)}\n`);
  process.exit(1);
});
