import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { Harness } from './harness.js';

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

/** What a Node client kept for one round: the global model, the weights it sent, its count. */
export function keptContribution(dir: string, runId: string, round: number) {
  const name = join(dir, `${runId}-${round}`);
  const read = (file: string) => {
    const bytes = readFileSync(file);
    return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4).slice();
  };
  const { numExamples } = JSON.parse(readFileSync(`${name}.json`, 'utf8')) as {
    numExamples: number;
  };
  return { global: read(`${name}.global.f32`), weights: read(`${name}.weights.f32`), numExamples };
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
