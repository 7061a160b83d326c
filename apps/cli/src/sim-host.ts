#!/usr/bin/env node
/**
 * One process of a simulation: hosts many virtual clients, each with its own partition of
 * MNIST and its own Socket.IO connection to the coordinator, speaking the real protocol
 * through the real client (@tessera/client). The spec arrives as JSON on stdin, so tokens
 * never appear in the process list. Training of the clients selected in a round interleaves
 * on this process's event loop (trainLocal yields between batches).
 */
import { TesseraClient } from '@tessera/client';
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
    return new TesseraClient({
      coordinatorUrl: spec.coordinatorUrl,
      token,
      identity: { name: 'tessera-sim', version: '0.1.0', runtime: 'node' },
      backend: backend.name,
      train: toExamples(mnist, train),
      holdout: holdout.length > 0 ? toExamples(mnist, holdout) : null,
      observer: {
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
