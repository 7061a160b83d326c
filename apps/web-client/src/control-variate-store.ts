import {
  type ControlVariateStore,
  MemoryControlVariates,
  type StagedControl,
} from '@tessera/client/core';

/**
 * Where the page keeps SCAFFOLD's c_i between rounds: IndexedDB, one record per (coordinator
 * origin, run id) and kind, so that a reloaded or reopened page continues a run with the c_i it
 * had, as the Node client does with --state-dir (packages/client/src/control-variates.ts). Two
 * kinds: `adopted`, the c_i the next round starts from, and `staged`, the c_i⁺ of the last round
 * whose update the coordinator took, adopted when a later round of the run arrives. Values are
 * float32, as the client computes them.
 *
 * Layout (read back by test/web-client-scaffold.test.ts through the page):
 * database CONTROL_VARIATE_DB, object store CONTROL_VARIATE_STORE, key [origin, runId, kind],
 * value { values: Float32Array, round?: number }.
 */
export const CONTROL_VARIATE_DB = 'tessera-control-variates';
export const CONTROL_VARIATE_STORE = 'control-variates';
const DB_VERSION = 1;

type Kind = 'adopted' | 'staged';

interface StoredControl {
  values: Float32Array;
  round?: number;
}

function request<T>(operation: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    operation.onsuccess = () => resolve(operation.result);
    operation.onerror = () => reject(operation.error ?? new Error('IndexedDB request failed'));
  });
}

export class IndexedDbControlVariates implements ControlVariateStore {
  readonly where: string;

  private constructor(
    private readonly db: IDBDatabase,
    private readonly origin: string,
  ) {
    this.where = `in this browser's IndexedDB for ${origin} (one record per run), surviving a reload`;
  }

  /** Opens (creating it the first time) the page's control-variate database. */
  static async open(origin: string): Promise<IndexedDbControlVariates> {
    const opening = indexedDB.open(CONTROL_VARIATE_DB, DB_VERSION);
    opening.onupgradeneeded = () => {
      if (!opening.result.objectStoreNames.contains(CONTROL_VARIATE_STORE)) {
        opening.result.createObjectStore(CONTROL_VARIATE_STORE);
      }
    };
    return new IndexedDbControlVariates(await request(opening), origin);
  }

  async load(runId: string, paramCount: number): Promise<Float32Array | null> {
    return (await this.read(runId, 'adopted', paramCount))?.values ?? null;
  }

  async save(runId: string, values: Float32Array): Promise<void> {
    await this.write(runId, 'adopted', { values: values.slice() });
  }

  async stage(runId: string, staged: StagedControl | null): Promise<void> {
    await this.write(
      runId,
      'staged',
      staged === null ? null : { values: staged.values.slice(), round: staged.round },
    );
  }

  async staged(runId: string, paramCount: number): Promise<StagedControl | null> {
    const stored = await this.read(runId, 'staged', paramCount);
    return stored?.round === undefined ? null : { round: stored.round, values: stored.values };
  }

  /** A record of another length than the model (another model under the same run id) is ignored. */
  private async read(runId: string, kind: Kind, paramCount: number) {
    const transaction = this.db.transaction(CONTROL_VARIATE_STORE, 'readonly');
    const stored = (await request(
      transaction.objectStore(CONTROL_VARIATE_STORE).get([this.origin, runId, kind]),
    )) as StoredControl | undefined;
    if (!(stored?.values instanceof Float32Array) || stored.values.length !== paramCount) {
      return null;
    }
    return stored;
  }

  /** Resolves once the transaction is durable (complete), not merely queued. */
  private write(runId: string, kind: Kind, value: StoredControl | null): Promise<void> {
    const transaction = this.db.transaction(CONTROL_VARIATE_STORE, 'readwrite');
    const store = transaction.objectStore(CONTROL_VARIATE_STORE);
    const key = [this.origin, runId, kind];
    if (value === null) store.delete(key);
    else store.put(value, key);
    return new Promise((resolve, reject) => {
      transaction.oncomplete = () => resolve();
      transaction.onerror = () => reject(transaction.error ?? new Error('IndexedDB write failed'));
      transaction.onabort = () => reject(transaction.error ?? new Error('IndexedDB write aborted'));
    });
  }
}

/**
 * IndexedDB where the browser gives it; otherwise (no IndexedDB, storage blocked, a private
 * window refusing it) memory, whose `where` says that a reload starts c_i from zero again.
 */
export async function openControlVariates(
  origin: string,
): Promise<{ store: ControlVariateStore; fallback: string | null }> {
  try {
    if (typeof indexedDB === 'undefined') throw new Error('this browser has no IndexedDB');
    return { store: await IndexedDbControlVariates.open(origin), fallback: null };
  } catch (error) {
    return {
      store: new MemoryControlVariates(),
      fallback: error instanceof Error ? error.message : String(error),
    };
  }
}
