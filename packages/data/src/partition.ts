import { ErrorCode, TesseraError } from '@tessera/protocol';
import { assertSeed, createRng } from './rng.js';

/**
 * How a dataset is split across clients:
 * - `iid`: a uniform random split into near-equal parts.
 * - `shards`: McMahan et al. 2017's pathological non-IID split: sort by label, cut into
 *   numClients * shardsPerClient shards, give each client shardsPerClient random shards.
 * - `dirichlet`: per class, proportions across clients drawn from Dirichlet(alpha)
 *   (Hsu et al. 2019); small alpha = few classes per client, large alpha = near IID.
 */
export type PartitionScheme =
  | { kind: 'iid' }
  | { kind: 'shards'; shardsPerClient?: number }
  | { kind: 'dirichlet'; alpha: number };

function invalid(message: string): TesseraError {
  return new TesseraError(ErrorCode.INVALID_ARGUMENT, message);
}

function assertClientCount(numClients: number, count: number, where: string): void {
  if (!Number.isInteger(numClients) || numClients < 1) {
    throw invalid(`${where}: numClients must be a positive integer, got ${String(numClients)}`);
  }
  if (numClients > count) {
    throw invalid(`${where}: ${numClients} clients cannot each get an example out of ${count}`);
  }
}

function sortedCopy(indices: ArrayLike<number>): Uint32Array {
  return Uint32Array.from(indices).sort();
}

/**
 * Indices 0..count-1 sorted by label, ascending, ties in index order: the order in which
 * shards are cut, so that it does not depend on any seed.
 */
export function indicesSortedByLabel(labels: ArrayLike<number>): Uint32Array {
  const order = new Uint32Array(labels.length);
  for (let i = 0; i < order.length; i++) order[i] = i;
  // Typed-array sort is not guaranteed stable with a comparator, so break ties by index.
  return order.sort((a, b) => (labels[a] ?? 0) - (labels[b] ?? 0) || a - b);
}

/** A uniform random split of 0..count-1 into numClients parts whose sizes differ by at most 1. */
export function partitionIid(count: number, numClients: number, seed: number): Uint32Array[] {
  if (!Number.isInteger(count) || count < 0) {
    throw invalid(`partitionIid: count must be a non-negative integer, got ${String(count)}`);
  }
  assertClientCount(numClients, count, 'partitionIid');
  assertSeed(seed, 'partitionIid');
  const order = new Uint32Array(count);
  for (let i = 0; i < count; i++) order[i] = i;
  createRng(seed).shuffle(order);
  const baseSize = Math.floor(count / numClients);
  const clientsWithOneMore = count % numClients;
  const parts: Uint32Array[] = [];
  let start = 0;
  for (let client = 0; client < numClients; client++) {
    const size = baseSize + (client < clientsWithOneMore ? 1 : 0);
    parts.push(sortedCopy(order.subarray(start, start + size)));
    start += size;
  }
  return parts;
}

export interface ShardsOptions {
  /** Shards per client; 2 in McMahan et al. 2017. */
  shardsPerClient?: number;
  seed: number;
}

/**
 * McMahan et al. 2017's pathological non-IID split. On MNIST with 100 clients and 2
 * shards each: 200 shards of 300 examples, so most clients see only two digits. When
 * the count does not divide evenly, the first shards (in label order) get one extra
 * example, so every example still belongs to a client.
 */
export function partitionShards(
  labels: ArrayLike<number>,
  numClients: number,
  options: ShardsOptions,
): Uint32Array[] {
  const shardsPerClient = options.shardsPerClient ?? 2;
  if (!Number.isInteger(shardsPerClient) || shardsPerClient < 1) {
    throw invalid(
      `partitionShards: shardsPerClient must be a positive integer, got ${String(shardsPerClient)}`,
    );
  }
  assertClientCount(numClients, labels.length, 'partitionShards');
  assertSeed(options.seed, 'partitionShards');
  const numShards = numClients * shardsPerClient;
  if (numShards > labels.length) {
    throw invalid(
      `partitionShards: ${numShards} shards (${numClients} clients x ${shardsPerClient}) need at least ${numShards} examples, got ${labels.length}`,
    );
  }
  const byLabel = indicesSortedByLabel(labels);
  const baseShardSize = Math.floor(labels.length / numShards);
  const shardsWithOneMore = labels.length % numShards;
  const shardStart = (shard: number): number =>
    shard * baseShardSize + Math.min(shard, shardsWithOneMore);

  const shardOrder = new Uint32Array(numShards);
  for (let i = 0; i < numShards; i++) shardOrder[i] = i;
  createRng(options.seed).shuffle(shardOrder);

  const parts: Uint32Array[] = [];
  for (let client = 0; client < numClients; client++) {
    const pieces: Uint32Array[] = [];
    let size = 0;
    for (let k = 0; k < shardsPerClient; k++) {
      const shard = shardOrder[client * shardsPerClient + k] ?? 0;
      const piece = byLabel.subarray(shardStart(shard), shardStart(shard + 1));
      pieces.push(piece);
      size += piece.length;
    }
    const part = new Uint32Array(size);
    let offset = 0;
    for (const piece of pieces) {
      part.set(piece, offset);
      offset += piece.length;
    }
    parts.push(part.sort());
  }
  return parts;
}

export interface DirichletOptions {
  /** Concentration: 0.1 is very skewed, 100 is close to IID. */
  alpha: number;
  seed: number;
  /**
   * Every client must get at least this many examples; the draw is repeated until it
   * does (as in Hsu et al.'s and NIID-Bench's code). Default: 10, or count/numClients
   * when that is smaller.
   */
  minPerClient?: number;
}

const DIRICHLET_MAX_ATTEMPTS = 1000;

/**
 * Per-class Dirichlet split: for each class, the class's examples are shuffled and cut
 * among the clients in proportions drawn from Dirichlet(alpha, ..., alpha).
 */
export function partitionDirichlet(
  labels: ArrayLike<number>,
  numClients: number,
  options: DirichletOptions,
): Uint32Array[] {
  const { alpha, seed } = options;
  if (!(alpha > 0) || !Number.isFinite(alpha)) {
    throw invalid(`partitionDirichlet: alpha must be a positive number, got ${String(alpha)}`);
  }
  assertClientCount(numClients, labels.length, 'partitionDirichlet');
  assertSeed(seed, 'partitionDirichlet');
  const minPerClient = options.minPerClient ?? Math.min(10, Math.floor(labels.length / numClients));
  if (!Number.isInteger(minPerClient) || minPerClient < 0) {
    throw invalid(
      `partitionDirichlet: minPerClient must be a non-negative integer, got ${String(minPerClient)}`,
    );
  }
  if (minPerClient * numClients > labels.length) {
    throw invalid(
      `partitionDirichlet: ${numClients} clients x minPerClient ${minPerClient} exceeds the ${labels.length} examples`,
    );
  }

  const classMembers = new Map<number, number[]>();
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i] ?? 0;
    let members = classMembers.get(label);
    if (members === undefined) {
      members = [];
      classMembers.set(label, members);
    }
    members.push(i);
  }
  const classes = [...classMembers.keys()].sort((a, b) => a - b);

  const rng = createRng(seed);
  for (let attempt = 0; attempt < DIRICHLET_MAX_ATTEMPTS; attempt++) {
    const clientIndices: number[][] = Array.from({ length: numClients }, () => []);
    for (const label of classes) {
      const members = rng.shuffle([...(classMembers.get(label) ?? [])]);
      const proportions = rng.dirichlet(alpha, numClients);
      // Cut at rounded cumulative proportions, so the pieces always add up to the class size.
      let cumulative = 0;
      let start = 0;
      for (let client = 0; client < numClients; client++) {
        cumulative += proportions[client] ?? 0;
        const end =
          client === numClients - 1 ? members.length : Math.round(cumulative * members.length);
        const target = clientIndices[client];
        for (let m = start; m < end; m++) target?.push(members[m] ?? 0);
        start = Math.max(start, end);
      }
    }
    if (clientIndices.every((indices) => indices.length >= minPerClient)) {
      return clientIndices.map(sortedCopy);
    }
  }
  throw invalid(
    `partitionDirichlet: no draw in ${DIRICHLET_MAX_ATTEMPTS} gave every one of ${numClients} clients at least ${minPerClient} examples with alpha ${alpha}; raise alpha or lower minPerClient`,
  );
}

/** Splits `labels` across `numClients` clients by `scheme`; one index array per client. */
export function partition(
  labels: ArrayLike<number>,
  numClients: number,
  scheme: PartitionScheme,
  seed: number,
): Uint32Array[] {
  switch (scheme.kind) {
    case 'iid':
      return partitionIid(labels.length, numClients, seed);
    case 'shards':
      return partitionShards(labels, numClients, {
        shardsPerClient: scheme.shardsPerClient ?? 2,
        seed,
      });
    case 'dirichlet':
      return partitionDirichlet(labels, numClients, { alpha: scheme.alpha, seed });
    default:
      throw invalid(
        `partition: unknown scheme kind '${String((scheme as { kind: unknown }).kind)}'`,
      );
  }
}

const SCHEME_SYNTAX = "'iid', 'shards', 'shards:<shards per client>' or 'dirichlet:<alpha>'";

/** Parses 'iid', 'shards', 'shards:2' or 'dirichlet:0.5' (command lines, run configs). */
export function parsePartitionScheme(text: string): PartitionScheme {
  const trimmed = String(text).trim();
  const [kind, parameter, ...extra] = trimmed.split(':');
  if (extra.length > 0) {
    throw invalid(`Invalid partition scheme '${trimmed}': too many ':'; expected ${SCHEME_SYNTAX}`);
  }
  if (kind === 'iid') {
    if (parameter !== undefined) {
      throw invalid(`Invalid partition scheme '${trimmed}': 'iid' takes no parameter`);
    }
    return { kind: 'iid' };
  }
  if (kind === 'shards') {
    if (parameter === undefined) return { kind: 'shards' };
    const shardsPerClient = Number(parameter);
    if (parameter.trim() === '' || !Number.isInteger(shardsPerClient) || shardsPerClient < 1) {
      throw invalid(
        `Invalid partition scheme '${trimmed}': shards per client must be a positive integer, got '${parameter}'`,
      );
    }
    return { kind: 'shards', shardsPerClient };
  }
  if (kind === 'dirichlet') {
    if (parameter === undefined) {
      throw invalid(
        `Invalid partition scheme '${trimmed}': dirichlet needs its alpha, e.g. 'dirichlet:0.5'`,
      );
    }
    const alpha = Number(parameter);
    if (parameter.trim() === '' || !Number.isFinite(alpha) || alpha <= 0) {
      throw invalid(
        `Invalid partition scheme '${trimmed}': alpha must be a positive number, got '${parameter}'`,
      );
    }
    return { kind: 'dirichlet', alpha };
  }
  throw invalid(`Invalid partition scheme '${trimmed}': expected ${SCHEME_SYNTAX}`);
}

/** The inverse of parsePartitionScheme: 'iid', 'shards:2', 'dirichlet:0.5'. */
export function formatPartitionScheme(scheme: PartitionScheme): string {
  switch (scheme.kind) {
    case 'iid':
      return 'iid';
    case 'shards':
      return `shards:${scheme.shardsPerClient ?? 2}`;
    case 'dirichlet':
      return `dirichlet:${scheme.alpha}`;
  }
}

/**
 * Splits a client's indices into a training part and a held-out part (for federated
 * evaluation), at random but reproducibly. The held-out part has round(n * fraction)
 * examples, never all of them when n > 0. Both parts come back sorted.
 */
export function splitHoldout(
  indices: Uint32Array,
  fraction: number,
  seed: number,
): { train: Uint32Array; holdout: Uint32Array } {
  if (!(fraction >= 0 && fraction < 1)) {
    throw invalid(`splitHoldout: fraction must be in [0, 1), got ${String(fraction)}`);
  }
  assertSeed(seed, 'splitHoldout');
  const shuffled = createRng(seed).shuffle(Uint32Array.from(indices));
  const holdoutCount = Math.min(
    Math.round(indices.length * fraction),
    Math.max(0, indices.length - 1),
  );
  return {
    holdout: shuffled.slice(0, holdoutCount).sort(),
    train: shuffled.slice(holdoutCount).sort(),
  };
}
