import { ErrorCode } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import { loadMnist } from './mnist.js';
import {
  formatPartitionScheme,
  indicesSortedByLabel,
  parsePartitionScheme,
  partition,
  partitionDirichlet,
  partitionIid,
  partitionShards,
  splitHoldout,
} from './partition.js';

/** Asserts the parts are disjoint and together cover 0..count-1 exactly once. */
function expectDisjointCover(parts: Uint32Array[], count: number): void {
  const owner = new Int32Array(count).fill(-1);
  parts.forEach((part, client) => {
    for (const index of part) {
      expect(owner[index], `index ${index} given to clients ${owner[index]} and ${client}`).toBe(
        -1,
      );
      owner[index] = client;
    }
  });
  expect(owner.indexOf(-1)).toBe(-1);
}

const distinctLabels = (labels: Uint8Array, part: Uint32Array): number =>
  new Set(Array.from(part, (i) => labels[i])).size;

describe('partitionIid', () => {
  it('covers every index once, in near-equal parts', () => {
    const parts = partitionIid(1003, 10, 1);
    expectDisjointCover(parts, 1003);
    expect(parts.map((p) => p.length)).toEqual([101, 101, 101, 100, 100, 100, 100, 100, 100, 100]);
  });

  it('is deterministic for a seed and differs across seeds', () => {
    expect(partitionIid(500, 5, 7)).toEqual(partitionIid(500, 5, 7));
    expect(partitionIid(500, 5, 7)).not.toEqual(partitionIid(500, 5, 8));
  });

  it('rejects more clients than examples, and a bad client count', () => {
    expect(() => partitionIid(3, 4, 0)).toThrow(/4 clients cannot each get an example out of 3/);
    expect(() => partitionIid(10, 0, 0)).toThrow(
      expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }),
    );
  });
});

describe('partitionShards on MNIST (McMahan et al. 2017)', () => {
  const labels = loadMnist('train').labels;
  const parts = partitionShards(labels, 100, { seed: 1 });

  it('gives 100 clients 600 examples each, covering all 60,000', () => {
    expect(parts).toHaveLength(100);
    for (const part of parts) expect(part.length).toBe(600);
    expectDisjointCover(parts, 60_000);
  });

  it('builds each client from exactly 2 label-sorted shards of 300', () => {
    const positionInLabelOrder = new Uint32Array(60_000);
    indicesSortedByLabel(labels).forEach((index, position) => {
      positionInLabelOrder[index] = position;
    });
    let clientsWithAtMostTwoLabels = 0;
    for (const part of parts) {
      const shardSizes = new Map<number, number>();
      for (const index of part) {
        const shard = Math.floor((positionInLabelOrder[index] ?? 0) / 300);
        shardSizes.set(shard, (shardSizes.get(shard) ?? 0) + 1);
      }
      expect([...shardSizes.values()]).toEqual([300, 300]);
      if (distinctLabels(labels, part) <= 2) clientsWithAtMostTwoLabels++;
    }
    // A shard can straddle two digits, so a few clients see 3 or 4 labels.
    expect(clientsWithAtMostTwoLabels).toBeGreaterThan(80);
  });

  it('is deterministic for a seed and differs across seeds', () => {
    expect(partitionShards(labels, 100, { seed: 1 })).toEqual(parts);
    expect(partitionShards(labels, 100, { seed: 2 })).not.toEqual(parts);
  });

  it('still covers everything when the count does not divide into shards', () => {
    const small = labels.subarray(0, 1001);
    const smallParts = partitionShards(small, 7, { shardsPerClient: 3, seed: 4 });
    expectDisjointCover(smallParts, 1001);
  });
});

describe('partitionDirichlet', () => {
  const labels = loadMnist('train').labels.subarray(0, 10_000);

  /** Mean over clients of the share of the client's most common label. */
  const meanTopLabelShare = (parts: Uint32Array[]): number => {
    let total = 0;
    for (const part of parts) {
      const counts = new Array<number>(10).fill(0);
      for (const index of part) counts[labels[index] ?? 0] = (counts[labels[index] ?? 0] ?? 0) + 1;
      total += Math.max(...counts) / part.length;
    }
    return total / parts.length;
  };

  it('covers every index once and respects minPerClient', () => {
    const parts = partitionDirichlet(labels, 20, { alpha: 0.5, seed: 3, minPerClient: 50 });
    expectDisjointCover(parts, labels.length);
    for (const part of parts) expect(part.length).toBeGreaterThanOrEqual(50);
  });

  it('is skewed for small alpha and near-uniform for large alpha', () => {
    const skewed = partitionDirichlet(labels, 20, { alpha: 0.1, seed: 3 });
    const uniform = partitionDirichlet(labels, 20, { alpha: 1000, seed: 3 });
    expect(meanTopLabelShare(skewed)).toBeGreaterThan(0.5);
    // IID would give ~0.11 (the largest digit's share, plus noise).
    expect(meanTopLabelShare(uniform)).toBeLessThan(0.15);
    for (const part of uniform) expect(part.length).toBeGreaterThan(400);
  });

  it('is deterministic for a seed and differs across seeds', () => {
    const a = partitionDirichlet(labels, 10, { alpha: 0.5, seed: 11 });
    expect(partitionDirichlet(labels, 10, { alpha: 0.5, seed: 11 })).toEqual(a);
    expect(partitionDirichlet(labels, 10, { alpha: 0.5, seed: 12 })).not.toEqual(a);
  });

  it('says what to change when no draw satisfies minPerClient', () => {
    expect(() =>
      partitionDirichlet(labels.subarray(0, 100), 10, { alpha: 0.001, seed: 1, minPerClient: 10 }),
    ).toThrow(/raise alpha or lower minPerClient/);
    expect(() => partitionDirichlet(labels, 10, { alpha: 0, seed: 1 })).toThrow(
      /alpha must be a positive number/,
    );
  });
});

describe('partition and parsePartitionScheme', () => {
  const labels = loadMnist('test').labels;

  it('dispatches on the scheme', () => {
    expect(partition(labels, 10, { kind: 'iid' }, 5)).toEqual(partitionIid(labels.length, 10, 5));
    expect(partition(labels, 10, { kind: 'shards' }, 5)).toEqual(
      partitionShards(labels, 10, { seed: 5 }),
    );
    expect(partition(labels, 10, { kind: 'dirichlet', alpha: 0.5 }, 5)).toEqual(
      partitionDirichlet(labels, 10, { alpha: 0.5, seed: 5 }),
    );
  });

  it('parses the command-line forms and formats them back', () => {
    expect(parsePartitionScheme('iid')).toEqual({ kind: 'iid' });
    expect(parsePartitionScheme('shards')).toEqual({ kind: 'shards' });
    expect(parsePartitionScheme('shards:3')).toEqual({ kind: 'shards', shardsPerClient: 3 });
    expect(parsePartitionScheme(' dirichlet:0.5 ')).toEqual({ kind: 'dirichlet', alpha: 0.5 });
    for (const text of ['iid', 'shards:2', 'dirichlet:0.1']) {
      expect(formatPartitionScheme(parsePartitionScheme(text))).toBe(text);
    }
  });

  it.each([
    ['', /expected 'iid', 'shards'/],
    ['random', /Invalid partition scheme 'random'/],
    ['iid:3', /'iid' takes no parameter/],
    ['shards:0', /shards per client must be a positive integer, got '0'/],
    ['shards:1.5', /positive integer/],
    ['shards:', /positive integer/],
    ['dirichlet', /dirichlet needs its alpha/],
    ['dirichlet:-1', /alpha must be a positive number, got '-1'/],
    ['dirichlet:abc', /alpha must be a positive number/],
    ['dirichlet:0.5:1', /too many ':'/],
  ])('rejects %j', (text, message) => {
    expect(() => parsePartitionScheme(text)).toThrow(
      expect.objectContaining({
        code: ErrorCode.INVALID_ARGUMENT,
        message: expect.stringMatching(message),
      }),
    );
  });
});

describe('splitHoldout', () => {
  const indices = partitionIid(1000, 4, 0)[0] ?? new Uint32Array();

  it('splits into disjoint train and holdout parts of the right sizes', () => {
    const { train, holdout } = splitHoldout(indices, 0.2, 9);
    expect(holdout.length).toBe(50);
    expect(train.length).toBe(200);
    expect([...train, ...holdout].sort((a, b) => a - b)).toEqual([...indices]);
  });

  it('is deterministic for a seed and differs across seeds', () => {
    expect(splitHoldout(indices, 0.2, 9)).toEqual(splitHoldout(indices, 0.2, 9));
    expect(splitHoldout(indices, 0.2, 9).holdout).not.toEqual(
      splitHoldout(indices, 0.2, 10).holdout,
    );
  });

  it('never holds out every example, and rejects a bad fraction', () => {
    expect(splitHoldout(Uint32Array.of(4), 0.9, 1)).toEqual({
      train: Uint32Array.of(4),
      holdout: new Uint32Array(0),
    });
    expect(() => splitHoldout(indices, 1, 1)).toThrow(/fraction must be in \[0, 1\), got 1/);
  });
});
