import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Coordinator, type CoordinatorOptions, createLogger } from '@tessera/coordinator';
import { type Database, openDatabase } from '@tessera/db';
import { loadNativeKernels } from '@tessera/ml-native';

/**
 * Fixtures for whole-federation tests: a real coordinator on port 0 over PGlite on disk, real
 * client processes (the built CLI), and a REST helper. Everything is disposable: `dispose`
 * kills the clients, closes the coordinator and deletes the data folder.
 */

const clientCli = fileURLToPath(new URL('../apps/node-client/dist/main.js', import.meta.url));

export interface Harness {
  coordinator: Coordinator;
  db: Database;
  dataDir: string;
  logs: string[];
  api<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: T }>;
  spawnClient(token: string, args?: string[]): ChildProcess;
  /** Stops the coordinator and closes the database, leaving clients running (for restarts). */
  restart(options?: Partial<CoordinatorOptions>): Promise<void>;
  dispose(): Promise<void>;
}

export async function startHarness(options: Partial<CoordinatorOptions> = {}): Promise<Harness> {
  const dataDir = mkdtempSync(join(tmpdir(), 'tessera-test-'));
  const logs: string[] = [];
  const logger = createLogger('info', (line) => logs.push(line));
  const clients: ChildProcess[] = [];
  const open = async (port: number) => {
    const db = await openDatabase({ dataDir: join(dataDir, 'pglite') });
    const coordinator = await Coordinator.start({
      centralEvaluation: false,
      ...options,
      db,
      logger,
      port,
    });
    return { db, coordinator };
  };
  let { db, coordinator } = await open(0);

  const harness: Harness = {
    get coordinator() {
      return coordinator;
    },
    get db() {
      return db;
    },
    dataDir,
    logs,
    async api<T>(method: string, path: string, body?: unknown) {
      const response = await fetch(`${coordinator.url}/api${path}`, {
        method,
        headers: { 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await response.text();
      return { status: response.status, body: (text ? JSON.parse(text) : null) as T };
    },
    spawnClient(token, args = []) {
      const child = spawn(
        process.execPath,
        [
          clientCli,
          '--coordinator',
          coordinator.url,
          '--token',
          token,
          '--progress',
          'none',
          ...args,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      child.stdout?.resume();
      child.stderr?.resume();
      clients.push(child);
      return child;
    },
    async restart(overrides = {}) {
      const port = coordinator.port;
      await coordinator.close();
      await db.close();
      ({ db, coordinator } = await open(port));
      Object.assign(options, overrides);
    },
    async dispose() {
      for (const child of clients) child.kill('SIGKILL');
      await coordinator.close();
      await db.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return harness;
}

/**
 * Polls `check` every 50 ms until it gives a value, or throws "timed out waiting for <what>".
 * `what` as a function is read when the wait gives up: a log tail in it is then the log at the
 * timeout, not at the call (a tail taken at the call once read as a process gone silent).
 */
export async function waitFor<T>(
  check: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  what: string | (() => string),
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${typeof what === 'function' ? what() : what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

let federationCount = 0;

/** A federation with `count` issued tokens. */
export async function createFederation(harness: Harness, count: number) {
  const federation = await harness.api<{ id: string }>('POST', '/federations', {
    name: `test federation ${++federationCount}`,
  });
  const tokens: Array<{ token: string; client: { id: string } }> = [];
  for (let k = 0; k < count; k++) {
    const issued = await harness.api<{ token: string; client: { id: string } }>(
      'POST',
      `/federations/${federation.body.id}/clients`,
      { organisation: `org-${k}` },
    );
    tokens.push(issued.body);
  }
  return { federationId: federation.body.id, tokens };
}

export const quickRun = {
  model: 'fedavg-2nn',
  rounds: 3,
  minClients: 1,
  roundDeadlineMs: 60_000,
  localEpochs: 1,
  batchSize: 20,
  learningRate: 0.05,
  seed: 7,
};

/**
 * The backend a Node client picks with --backend auto on this machine: 'openblas' where
 * @tessera/ml-native is built (always in CI), else 'wasm'.
 */
export const NODE_AUTO_BACKEND = loadNativeKernels().ok ? 'openblas' : 'wasm';
