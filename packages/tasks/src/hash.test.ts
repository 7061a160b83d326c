import { createHash } from 'node:crypto';
import { ErrorCode } from '@tessera/protocol';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BUILTIN_TASKS, builtinTask } from './builtin.js';
import { canonicalJson } from './canonical-json.js';
import { taskSha256 } from './hash.js';
import type { TaskDefinition } from './schema.js';
import { sha256Hex, sha256HexOfText } from './sha256.js';

const nodeSha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

describe('sha256Hex', () => {
  it('gives the FIPS 180-4 test vectors', () => {
    expect(sha256HexOfText('')).toBe(
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
    expect(sha256HexOfText('abc')).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });

  it('agrees with node:crypto on every padding edge (55, 56, 63, 64, 65 bytes) and random input', () => {
    for (const length of [1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000]) {
      const bytes = Uint8Array.from({ length }, (_, i) => (i * 31 + length) & 0xff);
      expect(sha256Hex(bytes)).toBe(nodeSha256(bytes));
    }
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        expect(sha256Hex(bytes)).toBe(nodeSha256(bytes));
      }),
    );
  });
});

describe('canonicalJson', () => {
  it('sorts keys by UTF-16 code units, drops whitespace and undefined, writes numbers as JS does', () => {
    expect(
      canonicalJson({ b: [1, 0.1, 1e21, -0, 'é\n"'], a: null, B: true, ä: false, skip: undefined }),
    ).toBe('{"B":true,"a":null,"b":[1,0.1,1e+21,0,"é\\n\\""],"ä":false}');
  });

  it('refuses what JSON cannot hold', () => {
    expect(() => canonicalJson({ x: Number.NaN })).toThrow(/NaN has no JSON form/);
    expect(() => canonicalJson({ x: 1n })).toThrow(/bigint/);
  });

  it('reads back as the same value', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expect(JSON.parse(canonicalJson(value))).toEqual(JSON.parse(JSON.stringify(value)));
      }),
    );
  });
});

/** A key-order permutation of a JSON value (reversed at every level). */
function reversedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reversedKeys);
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(
    Object.entries(value)
      .reverse()
      .map(([key, member]) => [key, reversedKeys(member)]),
  );
}

describe('taskSha256', () => {
  const task = builtinTask('mnist-small-cnn');

  it('is sha256 of the sorted-key, whitespace-free JSON of the task', () => {
    expect(taskSha256(task)).toBe(nodeSha256(new TextEncoder().encode(canonicalJson(task))));
  });

  it('does not depend on key order or whitespace, and changes with any value', () => {
    const reordered = reversedKeys(JSON.parse(JSON.stringify(task, null, 2)));
    expect(taskSha256(reordered)).toBe(taskSha256(task));
    const renamedLayer = JSON.parse(
      JSON.stringify(task).replace('"conv2d_1"', '"conv2d_x"'),
    ) as TaskDefinition;
    expect(renamedLayer).not.toEqual(task);
    const hashes = new Set(
      [
        task,
        { ...task, description: `${task.description}.` },
        { ...task, output: { kind: 'multiclass', classes: [...'abcdefghij'] } },
        renamedLayer,
      ].map(taskSha256),
    );
    expect(hashes.size).toBe(4);
  });

  it('gives each built-in its own hash, stable from release to release', () => {
    // Pinned: a change here changes the task every recorded MNIST run refers to. Recomputed
    // outside JavaScript, as an outsider would: in Python, hashlib.sha256(json.dumps(task,
    // sort_keys=True, separators=(',', ':'), ensure_ascii=False).encode()).hexdigest().
    expect(Object.fromEntries(BUILTIN_TASKS.map((t) => [t.name, taskSha256(t)]))).toEqual({
      'mnist-2nn': 'd8d0b6da784ebb02a51a7375acd48cdf83aaebaa3bb241a16eddb70bc057b136',
      'mnist-cnn': 'a2152f06beeac49d928485fd264e62c4452d72fc2851538fe3408a54978c6416',
      'mnist-mlp': '81bf5549ffcc2d8d6d9d55658b6abc09081d1cd0a09fb966de6ab227607ded28',
      'mnist-small-cnn': 'b1c702a78c8d3288dd67cc0eebbfd5bca2b674627f040b8511afdda1c78f4d30',
      penguins: '360c20a14fa3b303ea8fa192c76ba958789f9ea323374fd08cd60f4192f736b7',
      spam: '962a1c464f4a928e21ab94b5b78a1ead5ca0a2b5e42cdfd0f33bc136deb6f70d',
    });
  });

  it('refuses a value that is not a task', () => {
    expect(() => taskSha256({ ...task, loss: 'hinge' })).toThrow(
      expect.objectContaining({
        code: ErrorCode.INVALID_ARGUMENT,
        data: expect.objectContaining({ field: 'loss' }),
      }),
    );
  });
});
