import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect } from 'vitest';
import type { Harness } from './harness.js';
import { closeRawSockets } from './raw-client.js';

/**
 * Shared by the privacy run tests: Node client processes that keep what they sent
 * (--keep-contributions), what they kept, and run-creation refusals checked field by field.
 */

/**
 * Spawns one Node client process (the built CLI, MNIST shard k of `shards`, 200 examples, no
 * held-out data) per token, each keeping its contributions in its own folder; returns the
 * folders, under one temporary folder the caller removes (`root`).
 */
export function spawnKeepingClients(
  h: Harness,
  tokens: readonly string[],
  shards: number,
): { root: string; dirs: string[] } {
  const root = mkdtempSync(join(tmpdir(), 'tessera-contributions-'));
  const dirs = tokens.map((token, k) => {
    const dir = join(root, String(k));
    h.spawnClient(token, [
      '--mnist',
      `${k}/${shards}`,
      '--max-examples',
      '200',
      '--holdout',
      '0',
      '--keep-contributions',
      dir,
    ]);
    return dir;
  });
  return { root, dirs };
}

/**
 * What a Node client kept for one round: the global model, the weights it trained, its count,
 * and the change (weights − global, in float32) it sent or masked.
 */
export function keptContribution(dir: string, runId: string, round: number) {
  const name = join(dir, `${runId}-${round}`);
  const read = (file: string) => {
    const bytes = readFileSync(file);
    return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4).slice();
  };
  const { numExamples } = JSON.parse(readFileSync(`${name}.json`, 'utf8')) as {
    numExamples: number;
  };
  const global = read(`${name}.global.f32`);
  const weights = read(`${name}.weights.f32`);
  const change = weights.map((w, i) => w - (global[i] as number));
  return { global, weights, change, numExamples };
}

/** Each case refused at `POST /runs` with INVALID_ARGUMENT at its field, and nothing stored. */
export async function expectRefusedAtCreation(
  h: Harness,
  base: Record<string, unknown>,
  cases: readonly (readonly [string, Record<string, unknown>, RegExp])[],
): Promise<void> {
  const before = await h.db.runs.list();
  for (const [field, overrides, reason] of cases) {
    const answer = await h.api<{
      error: { code: string; message: string; data?: { field?: string } };
    }>('POST', '/runs', { ...base, ...overrides });
    expect(answer.status, field).toBe(400);
    expect(answer.body.error.code, field).toBe('INVALID_ARGUMENT');
    expect(answer.body.error.data?.field, field).toBe(field);
    expect(answer.body.error.message, field).toMatch(reason);
  }
  expect(await h.db.runs.list()).toEqual(before);
}

/**
 * After each test of a run-test file: raw sockets closed, the harness disposed, temporary
 * folders removed. `set` hands over the test's harness; `folders` takes folders to remove.
 */
export function useRunCleanup(): { set(harness: Harness): Harness; folders: string[] } {
  let current: Harness | undefined;
  const folders: string[] = [];
  afterEach(async () => {
    closeRawSockets();
    await current?.dispose();
    current = undefined;
    for (const folder of folders.splice(0)) rmSync(folder, { recursive: true, force: true });
  });
  return {
    set(harness) {
      current = harness;
      return harness;
    },
    folders,
  };
}
