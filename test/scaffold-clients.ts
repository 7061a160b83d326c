import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bytesToWeights } from '@tessera/protocol';
import { expect } from 'vitest';
import { type Harness, quickRun } from './harness.js';

/**
 * Node clients of a SCAFFOLD run, each with a --state-dir of its own (made here, listed in
 * `dirs` for the test to remove): the k-th of `count` trains MNIST share k/count.
 */
export function spawnScaffoldClients(
  h: Harness,
  tokens: readonly string[],
  maxExamples: number,
  dirs: string[],
): string[] {
  return tokens.map((token, k) => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-scaffold-client-'));
    dirs.push(dir);
    h.spawnClient(token, [
      '--mnist',
      `${k}/${tokens.length}`,
      '--max-examples',
      String(maxExamples),
      '--state-dir',
      dir,
    ]);
    return dir;
  });
}

/** The c_i a Node client keeps for `runId` in its state dir (apps/node-client's file store). */
export function nodeControlVariate(stateDir: string, runId: string): Float32Array {
  const bytes = readFileSync(join(stateDir, `scaffold-c-${encodeURIComponent(runId)}.f32`));
  return bytesToWeights(
    new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength),
    bytes.length / 4,
  );
}

/**
 * A 3-round SCAFFOLD run of all three members in every round (N = |S| = 3), keeping every
 * update and its Δc_i, so that it can be recomputed; its id.
 */
export async function createKeptScaffoldRun(h: Harness, federationId: string): Promise<string> {
  const run = await h.api<{ id: string }>('POST', '/runs', {
    ...quickRun,
    rounds: 3,
    federationId,
    clientsPerRound: 3,
    minClients: 3,
    strategy: 'scaffold',
    strategyOptions: { clientCount: 3 },
    keepUpdates: true,
  });
  expect(run.status, JSON.stringify(run.body)).toBe(201);
  return run.body.id;
}
