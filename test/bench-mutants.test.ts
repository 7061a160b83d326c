// The round rules' mutation check (bench/mutate-round-rules.mjs) patches the engine's sources
// by text; `--check` says whether every patch still applies, so a change to the engine that
// outruns a mutant fails here rather than at the next (long) mutation run.
// (Not while that script runs in the same checkout: the sources are patched in place then.)
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');
const script = 'bench/mutate-round-rules.mjs';
const sources = ['engine.ts', 'round-state.ts', 'sampling.ts', 'registry.ts'].map(
  (name) => `apps/coordinator/src/${name}`,
);

function check(cwd: string) {
  return spawnSync(process.execPath, [join(cwd, script), '--check'], { cwd, encoding: 'utf8' });
}

describe('bench/mutate-round-rules.mjs --check', () => {
  let copy: string | null = null;
  afterEach(() => {
    if (copy) rmSync(copy, { recursive: true, force: true });
    copy = null;
  });

  it("finds every mutant's patch text exactly once in today's sources", () => {
    const run = check(root);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^\d+ mutants, each patch text found exactly once\n$/);
  });

  it('exits 1 naming each mutant whose patch text occurs twice or not at all', () => {
    // A copy of the script and the sources it patches, laid out as in the repository.
    copy = mkdtempSync(join(tmpdir(), 'tessera-mutants-check-'));
    for (const file of [script, ...sources]) {
      mkdirSync(join(copy, file, '..'), { recursive: true });
      copyFileSync(join(root, file), join(copy, file));
    }
    const sampling = join(copy, 'apps/coordinator/src/sampling.ts');
    const engine = join(copy, 'apps/coordinator/src/engine.ts');
    // M08's text twice; M26's gone.
    const fraction = 'Math.ceil(policy.fractionFit * available)';
    const samplingText = readFileSync(sampling, 'utf8');
    writeFileSync(sampling, `${samplingText}\n// ${fraction}\n`);
    const attempts = 'this.maxRoundAttempts = deps.maxRoundAttempts ?? 5;';
    const engineText = readFileSync(engine, 'utf8');
    expect(engineText).toContain(attempts);
    writeFileSync(engine, engineText.replace(attempts, 'this.maxRoundAttempts = 5;'));

    const run = check(copy);
    expect(run.status).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain(
      'M08: its patch text occurs 2 times in apps/coordinator/src/sampling.ts',
    );
    expect(run.stderr).toContain(
      'M26: its patch text occurs 0 times in apps/coordinator/src/engine.ts',
    );
    // Only those two: the others still apply.
    expect(run.stderr.trim().split('\n')).toHaveLength(2);
    // Nothing of the copy was patched: --check runs no mutant.
    expect(readFileSync(sampling, 'utf8')).toBe(`${samplingText}\n// ${fraction}\n`);
  });
});
