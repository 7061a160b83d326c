// Held-out sets on every database backend: one per task version, replaced by a new upload,
// read back byte for byte; bad input refused with its field, writing nothing.
import { createHash } from 'node:crypto';
import { ErrorCode } from '@tessera/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from './index.js';
import { testBackends } from './test-backends.js';

const sha = (bytes: Uint8Array | string) => createHash('sha256').update(bytes).digest('hex');
const bytes = (text: string) => new TextEncoder().encode(text);

for (const backend of testBackends('holdouts')) {
  describe(`held-out sets on ${backend.name}`, () => {
    let db: Database;
    let dispose: () => Promise<void>;
    let taskSha256: string;
    beforeAll(async () => {
      ({ db, dispose } = await backend.open());
      const content = 'holdout-task';
      taskSha256 = sha(content);
      await db.tasks.create({
        name: 'holdout-task',
        sha256: taskSha256,
        definition: { content },
        paramCount: 3,
      });
    });
    afterAll(() => dispose?.());

    const refused = async (promise: Promise<unknown>, code: string, field: string) => {
      await expect(promise).rejects.toMatchObject({
        code,
        data: expect.objectContaining({ field }),
      });
    };

    it('refuses an unknown task, a bad format, empty data and a bad row count: nothing stored', async () => {
      const good = { taskSha256, format: 'csv' as const, data: bytes('a,b\n1,2\n'), rows: 1 };
      await refused(
        db.tasks.putHoldout({ ...good, taskSha256: sha('nothing') }),
        ErrorCode.NOT_FOUND,
        'task',
      );
      await refused(
        db.tasks.putHoldout({ ...good, format: 'xlsx' as never }),
        ErrorCode.INVALID_ARGUMENT,
        'format',
      );
      await refused(
        db.tasks.putHoldout({ ...good, data: new Uint8Array(0) }),
        ErrorCode.INVALID_ARGUMENT,
        'data',
      );
      await refused(db.tasks.putHoldout({ ...good, rows: 0 }), ErrorCode.INVALID_ARGUMENT, 'rows');
      await refused(
        db.tasks.putHoldout({ ...good, taskSha256: 'nope' }),
        ErrorCode.INVALID_ARGUMENT,
        'task',
      );
      expect((await db.tasks.holdouts()).size).toBe(0);
      expect(await db.tasks.holdout(taskSha256)).toBeNull();
    });

    it('stores one, replaces it, and reads the bytes back', async () => {
      const first = bytes('a,b\n1,2\n');
      const stored = await db.tasks.putHoldout({ taskSha256, format: 'csv', data: first, rows: 1 });
      expect(stored).toMatchObject({
        taskSha256,
        format: 'csv',
        sha256: sha(first),
        byteLength: first.byteLength,
        rows: 1,
      });
      const second = bytes('a\tb\n1\t2\n3\t4\n');
      await db.tasks.putHoldout({ taskSha256, format: 'tsv', data: second, rows: 2 });
      const read = await db.tasks.holdout(taskSha256);
      expect(read).toMatchObject({ format: 'tsv', rows: 2, sha256: sha(second) });
      expect(Buffer.from(read?.data ?? []).toString()).toBe('a\tb\n1\t2\n3\t4\n');
      const summaries = await db.tasks.holdouts([taskSha256]);
      expect([...summaries.keys()]).toEqual([taskSha256]);
      expect(summaries.get(taskSha256)).not.toHaveProperty('data');
    });
  });
}
