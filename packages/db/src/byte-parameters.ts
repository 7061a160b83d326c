/**
 * A side channel for large bytea parameters. Prisma 7 turns every Bytes value, and every
 * Uint8Array given to $executeRaw, into base64 on the way to the driver adapter, which decodes
 * it again (and, for a model query, reads the bytes back from RETURNING and encodes them once
 * more): four passes over each update, and strings of 4/3 its size, before the driver sees it.
 *
 * Here a raw query names each large value by a short placeholder string instead; the wrapped
 * driver adapter swaps the placeholder for the registered bytes just before the driver runs
 * the query, inside the same transaction. node-postgres and PGlite then bind the bytes as a
 * binary parameter (see database.ts for PGlite's serializer).
 */
import { randomUUID } from 'node:crypto';
import type { SqlDriverAdapterFactory } from '@prisma/client/runtime/client';

/** Placeholders start with this; a registered one cannot be guessed (122 random bits). */
const PLACEHOLDER_PREFIX = 'tessera-bytes:';

/** The bytes behind the placeholders of the queries now being written. */
export class ByteParameters {
  readonly #pending = new Map<string, Uint8Array>();

  /**
   * Runs `write` with a function that registers bytes and returns their placeholder, to be
   * passed as a raw query's parameter. The registrations end with `write`, however it ends.
   */
  async with<T>(write: (bytes: (value: Uint8Array) => string) => Promise<T>): Promise<T> {
    const keys: string[] = [];
    try {
      return await write((value) => {
        const key = `${PLACEHOLDER_PREFIX}${randomUUID()}`;
        this.#pending.set(key, value);
        keys.push(key);
        return key;
      });
    } finally {
      for (const key of keys) this.#pending.delete(key);
    }
  }

  /** The query with every registered placeholder among its arguments replaced by its bytes. */
  resolve<Q extends { args: unknown[] }>(query: Q): Q {
    if (this.#pending.size === 0) return query;
    let args: unknown[] | undefined;
    query.args.forEach((arg, index) => {
      if (typeof arg !== 'string' || !arg.startsWith(PLACEHOLDER_PREFIX)) return;
      const bytes = this.#pending.get(arg);
      if (bytes === undefined) return;
      args ??= [...query.args];
      args[index] = bytes;
    });
    return args === undefined ? query : { ...query, args };
  }
}

type Queryable = Record<PropertyKey, unknown>;

/**
 * The same adapter factory, whose connections and transactions resolve `parameters` in every
 * query first. Everything else is the wrapped object's own (methods bound to it, so adapters
 * with private fields keep working).
 */
export function withByteParameters(
  factory: SqlDriverAdapterFactory,
  parameters: ByteParameters,
): SqlDriverAdapterFactory {
  const resolving = <T extends object>(target: T): T =>
    new Proxy(target, {
      get(object, property) {
        const value = Reflect.get(object, property, object) as unknown;
        if (typeof value !== 'function') return value;
        const method = value.bind(object) as (...args: unknown[]) => unknown;
        switch (property) {
          case 'queryRaw':
          case 'executeRaw':
            return (query: { args: unknown[] }) => method(parameters.resolve(query));
          case 'connect':
          case 'connectToShadowDb':
          case 'startTransaction':
            return async (...args: unknown[]) => resolving((await method(...args)) as Queryable);
          default:
            return method;
        }
      },
    });
  return resolving(factory);
}
