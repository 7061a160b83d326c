import { createAdapter } from '@socket.io/redis-adapter';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { createClient, type RedisClientType } from 'redis';

export type RedisClient = RedisClientType;

/** Cluster mode's settings: `--redis URL` (`$TESSERA_REDIS_URL`) and its key prefix. */
export interface ClusterOptions {
  url: string;
  /**
   * Prefix of every Redis key and channel this coordinator uses (default `tessera:`):
   * coordinators with the same prefix share clients; tests give each cluster its own.
   */
  prefix?: string;
}

export const DEFAULT_REDIS_PREFIX = 'tessera:';

/**
 * The two Redis connections of a coordinator in cluster mode: `commands` for keys and
 * PUBLISH, `subscriber` in subscribed mode (node-redis allows only pub/sub commands on it).
 * The Socket.IO adapter, the client registry and the reply relay share both.
 */
export interface RedisConnections {
  commands: RedisClient;
  subscriber: RedisClient;
  prefix: string;
  /** Socket.IO's Redis adapter (pub/sub), on the same prefix. */
  adapter: ReturnType<typeof createAdapter>;
  close(): Promise<void>;
}

export async function connectRedis(options: ClusterOptions): Promise<RedisConnections> {
  const prefix = options.prefix ?? DEFAULT_REDIS_PREFIX;
  const commands: RedisClient = createClient({ url: options.url });
  const subscriber = commands.duplicate();
  // Without a listener node-redis throws on a lost connection; it reconnects by itself.
  for (const client of [commands, subscriber]) client.on('error', () => {});
  try {
    await Promise.all([commands.connect(), subscriber.connect()]);
  } catch (cause) {
    commands.destroy();
    subscriber.destroy();
    throw new TesseraError(
      ErrorCode.UNAVAILABLE,
      `cannot reach Redis at ${options.url}: ${(cause as Error).message}`,
    );
  }
  return {
    commands,
    subscriber,
    prefix,
    adapter: createAdapter(commands, subscriber, { key: `${prefix}socket.io` }),
    async close() {
      // A connection already lost is dropped (quit would wait for it to come back).
      await Promise.allSettled(
        [commands, subscriber].map((client) => (client.isReady ? client.quit() : client.destroy())),
      );
    },
  };
}
