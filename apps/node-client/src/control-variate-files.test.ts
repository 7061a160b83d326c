import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileControlVariates } from './control-variate-files.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function stateDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-state-'));
  dirs.push(dir);
  return join(dir, 'state');
}

describe('FileControlVariates', () => {
  it('a new store (a restarted client) reads back what the last one saved, as little-endian float32', async () => {
    const dir = stateDir();
    await new FileControlVariates(dir).save('run/1', Float32Array.of(1.5, -2, 0.25));
    const file = new FileControlVariates(dir).fileOf('run/1');
    // The run id cannot name a path outside the directory.
    expect(readdirSync(dir)).toEqual(['scaffold-c-run%2F1.f32']);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect([...new Float32Array(new Uint8Array(readFileSync(file)).buffer)]).toEqual([
      1.5, -2, 0.25,
    ]);
    const restarted = new FileControlVariates(dir);
    expect([...((await restarted.load('run/1', 3)) ?? [])]).toEqual([1.5, -2, 0.25]);
    // Another model size (another run's model) and another run: nothing, so c_i starts at 0.
    expect(await restarted.load('run/1', 4)).toBeNull();
    expect(await restarted.load('run/2', 3)).toBeNull();
  });

  it('a later save replaces the file whole, leaving no temporary file', async () => {
    const dir = stateDir();
    const store = new FileControlVariates(dir);
    await store.save('r', Float32Array.of(1, 2));
    await store.save('r', Float32Array.of(3, 4));
    expect(readdirSync(dir)).toEqual(['scaffold-c-r.f32']);
    expect([...((await new FileControlVariates(dir).load('r', 2)) ?? [])]).toEqual([3, 4]);
  });
});

describe('FileControlVariates staging', () => {
  it('keeps the c_i⁺ not yet adopted where a restarted client finds it, with its round; null forgets it', async () => {
    const dir = stateDir();
    const store = new FileControlVariates(dir);
    await store.save('r', Float32Array.of(1, 2));
    await store.stage('r', { round: 7, values: Float32Array.of(0.5, -0.25) });
    expect(readdirSync(dir).sort()).toEqual(['scaffold-c-r.f32', 'scaffold-c-r.f32.staged']);
    expect(statSync(store.stagedFileOf('r')).mode & 0o777).toBe(0o600);
    const restarted = new FileControlVariates(dir);
    const staged = await restarted.staged('r', 2);
    expect(staged?.round).toBe(7);
    expect([...(staged?.values ?? [])]).toEqual([0.5, -0.25]);
    // The adopted c_i is untouched by staging; another model size finds nothing staged.
    expect([...((await restarted.load('r', 2)) ?? [])]).toEqual([1, 2]);
    expect(await restarted.staged('r', 3)).toBeNull();
    expect(await restarted.staged('other', 2)).toBeNull();
    await restarted.stage('r', null);
    expect(await new FileControlVariates(dir).staged('r', 2)).toBeNull();
    expect(readdirSync(dir)).toEqual(['scaffold-c-r.f32']);
    // Forgetting what is not there is not an error.
    await restarted.stage('r', null);
  });
});
