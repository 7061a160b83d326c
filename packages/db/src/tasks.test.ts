// Task records on every database backend: names, versions and content addresses stay
// consistent, and built-ins are stored once however often coordinators start.
import { createHash } from 'node:crypto';
import { ErrorCode } from '@tessera/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CreateTaskInput, Database } from './index.js';
import { testBackends } from './test-backends.js';

const sha = (text: string) => createHash('sha256').update(text).digest('hex');

function task(
  name: string,
  content: string,
  extra: Partial<CreateTaskInput> = {},
): CreateTaskInput {
  return { name, sha256: sha(content), definition: { name, content }, paramCount: 3, ...extra };
}

for (const backend of testBackends('tasks')) {
  describe(`tasks on ${backend.name}`, () => {
    let db: Database;
    let dispose: () => Promise<void>;
    beforeAll(async () => {
      ({ db, dispose } = await backend.open());
    });
    afterAll(() => dispose?.());

    it('creates version 1, adds versions, finds them by name, version and sha256', async () => {
      const first = await db.tasks.create(task('penguins', 'a'));
      expect(first).toMatchObject({ version: 1, builtin: false, hasWeights: false });
      const second = await db.tasks.addVersion(task('penguins', 'b'));
      expect(second.version).toBe(2);
      expect((await db.tasks.byName('penguins')).sha256).toBe(second.sha256);
      expect((await db.tasks.byName('penguins', 1)).sha256).toBe(first.sha256);
      expect((await db.tasks.get(first.sha256)).definition).toEqual({
        name: 'penguins',
        content: 'a',
      });
      expect((await db.tasks.list()).map((t) => `${t.name}@${t.version}`)).toContain('penguins@2');
    });

    it('refuses a taken name, identical content, an unknown name to version, bad fields', async () => {
      await db.tasks.create(task('taken', 'x'));
      const before = (await db.tasks.list()).length;
      await expect(db.tasks.create(task('taken', 'y'))).rejects.toMatchObject({
        code: ErrorCode.CONFLICT,
        data: { field: 'name' },
      });
      await expect(db.tasks.addVersion(task('taken', 'x'))).rejects.toMatchObject({
        code: ErrorCode.CONFLICT,
      });
      await expect(db.tasks.addVersion(task('nobody', 'z'))).rejects.toMatchObject({
        code: ErrorCode.NOT_FOUND,
      });
      for (const [bad, field] of [
        [task('Upper', 'u'), 'name'],
        [task('-dash', 'u'), 'name'],
        [{ ...task('ok', 'u'), sha256: 'abc' }, 'sha256'],
        [task('ok', 'u', { paramCount: 0 }), 'paramCount'],
        [task('ok', 'u', { weights: new Uint8Array(8) }), 'weights'],
        [task('ok', 'u', { definition: { x: Number.NaN } }), 'definition.x'],
      ] as const) {
        await expect(db.tasks.create(bad), field).rejects.toMatchObject({
          code: ErrorCode.INVALID_ARGUMENT,
          data: { field },
        });
      }
      expect((await db.tasks.list()).length).toBe(before);
    });

    it('keeps initial weights and hands them back', async () => {
      const weights = new Uint8Array(new Float32Array([1, 2, 3]).buffer);
      const stored = await db.tasks.create(task('weighted', 'w', { weights }));
      expect(stored.hasWeights).toBe(true);
      expect(await db.tasks.weights(stored.sha256)).toEqual(weights);
    });

    it('stores a built-in once, even when ensured concurrently; a changed one is a new version', async () => {
      const builtin = { name: 'a-builtin', sha256: sha('v1'), definition: { v: 1 }, paramCount: 3 };
      const results = await Promise.all([1, 2, 3].map(() => db.tasks.ensureBuiltin(builtin)));
      expect(new Set(results.map((r) => r.id)).size).toBe(1);
      expect(results[0]).toMatchObject({ builtin: true, version: 1 });
      const changed = await db.tasks.ensureBuiltin({ ...builtin, sha256: sha('v2') });
      expect(changed.version).toBe(2);
    });
  });
}
