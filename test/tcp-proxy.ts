import { randomBytes } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';

import pg from 'pg';
/**
 * A TCP proxy for outage tests, put in front of a real server (the shared PostgreSQL) so that a
 * test can cut the database off without stopping it. Modes:
 * - `pass`: bytes flow both ways;
 * - `reset`: every open connection is reset and every new one is reset on accept (the
 *   server "restarting", or a firewall sending RSTs);
 * - `blackhole`: connections are accepted and bytes are swallowed, nothing ever answers (a
 *   partition: clients wait for their own timeouts). Leaving it resets the connections held
 *   meanwhile, as TCP would give up on them after a long partition.
 */
export type ProxyMode = 'pass' | 'reset' | 'blackhole';

export interface TcpProxy {
  readonly port: number;
  readonly mode: ProxyMode;
  /** Connections accepted so far (each test can check the database was really used through it). */
  readonly accepted: number;
  setMode(mode: ProxyMode): void;
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  upstream: Socket | null;
  /** Held in black-hole mode: never forwarded, reset when the mode changes. */
  held: boolean;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  let mode: ProxyMode = 'pass';
  let accepted = 0;
  const pairs = new Set<Pair>();

  const drop = (pair: Pair) => {
    pairs.delete(pair);
    pair.client.resetAndDestroy();
    pair.upstream?.resetAndDestroy();
  };

  const server: Server = createServer((client) => {
    accepted += 1;
    const pair: Pair = { client, upstream: null, held: false };
    pairs.add(pair);
    client.on('error', () => drop(pair));
    client.on('close', () => drop(pair));
    if (mode === 'reset') {
      drop(pair);
      return;
    }
    if (mode === 'blackhole') {
      pair.held = true;
      client.on('data', () => {});
      return;
    }
    const upstream = connect(target.port, target.host);
    pair.upstream = upstream;
    upstream.on('error', () => drop(pair));
    upstream.on('close', () => drop(pair));
    client.on('data', (chunk) => {
      if (mode === 'pass') upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (mode === 'pass') client.write(chunk);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no port');

  return {
    port: address.port,
    get mode() {
      return mode;
    },
    get accepted() {
      return accepted;
    },
    setMode(next) {
      const previous = mode;
      mode = next;
      if (next === 'reset' || previous === 'blackhole') {
        for (const pair of [...pairs]) drop(pair);
      }
    },
    async close() {
      for (const pair of [...pairs]) drop(pair);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A schema of its own on the shared PostgreSQL (as packages/db's suite does), and the
 * connection string that reaches it through `proxy`. `drop` removes it (and everything in it).
 */
export async function createTestSchema(
  url: string,
  proxy?: TcpProxy,
): Promise<{ schema: string; url: string; drop(): Promise<void> }> {
  const schema = `tessera_outage_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    await admin.query(`CREATE SCHEMA "${schema}"`);
  } finally {
    await admin.end();
  }
  const proxied = new URL(url);
  if (proxy) {
    proxied.hostname = '127.0.0.1';
    proxied.port = String(proxy.port);
  }
  proxied.searchParams.set('schema', schema);
  return {
    schema,
    url: proxied.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}

/** The host and port of a PostgreSQL connection string (what the proxy forwards to). */
export function postgresTarget(url: string): { host: string; port: number } {
  const parsed = new URL(url);
  return { host: parsed.hostname || '127.0.0.1', port: Number(parsed.port || 5432) };
}
