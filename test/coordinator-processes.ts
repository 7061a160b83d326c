// Coordinator processes for the multi-process tests (chaos, failover, cluster): apps/coordinator/
// dist/main.js on its own port, its pino lines collected, two of them on Redis, one address in
// front of several of them, the admin API of one of them, and client processes
// (apps/node-client/dist/main.js) with tokens it issued.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { waitFor } from './harness.js';

export const coordinatorCli = fileURLToPath(
  new URL('../apps/coordinator/dist/main.js', import.meta.url),
);
export const clientCli = fileURLToPath(
  new URL('../apps/node-client/dist/main.js', import.meta.url),
);

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/**
 * One address in front of several coordinators: a new connection is forwarded to the first
 * port that accepts it (a dead coordinator refuses, so its clients' reconnections reach the
 * next one); a connection whose coordinator goes away is closed, as a load balancer would.
 */
export async function startFailoverFront(
  ports: number[],
): Promise<{ port: number; close(): void }> {
  const sockets = new Set<Socket>();
  const forward = (client: Socket, index: number) => {
    const port = ports[index];
    if (port === undefined) {
      client.destroy();
      return;
    }
    const upstream = connect(port, '127.0.0.1');
    let connected = false;
    sockets.add(upstream);
    upstream.once('error', () => {
      // Refused: that coordinator is down, try the next one.
      if (!connected) forward(client, index + 1);
      else client.destroy();
    });
    upstream.once('connect', () => {
      connected = true;
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
    upstream.once('close', () => {
      sockets.delete(upstream);
      if (connected) client.destroy();
    });
    client.once('close', () => upstream.destroy());
  };
  const server: Server = createServer((client) => {
    sockets.add(client);
    client.pause();
    client.on('error', () => client.destroy());
    client.once('close', () => sockets.delete(client));
    forward(client, 0);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('front has no port');
  return {
    port: address.port,
    close() {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

/** The run's lease row, read from the test's schema. */
export async function leaseRow(databaseUrl: string, schema: string, runId: string) {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query(
      `SELECT "owner", "token"::text AS "token" FROM "${schema}"."RunLease" WHERE "runId" = $1`,
      [runId],
    );
    return rows[0] as { owner: string; token: string } | undefined;
  } finally {
    await client.end();
  }
}

export interface CoordinatorProcess {
  name: string;
  url: string;
  child: ChildProcess;
  lines: string[];
  exited: Promise<void>;
  /** Where its Node diagnostic reports go (see diagnose). */
  reportDir: string;
}

/** The libuv handles whose fields diagnose prints: timers, connections, the loop. */
const DETAILED_HANDLES = new Set(['timer', 'tcp', 'loop']);

/**
 * What a coordinator that went quiet is doing, for a test's failure message: whether it is
 * alive, and if so its Node diagnostic report (SIGUSR2, `--report-on-signal`): the libuv
 * handles still open (when each timer fires, what each connection has left to write), its CPU
 * time and its memory. Node writes the report from the process's own event loop, so a loop
 * held busy for the 10 s this waits shows as "wrote no report".
 */
export async function diagnose(coordinator: CoordinatorProcess): Promise<string> {
  const { child, reportDir } = coordinator;
  if (child.exitCode !== null || child.signalCode !== null) {
    return `coordinator ${coordinator.name} exited (code ${child.exitCode}, signal ${child.signalCode})`;
  }
  const before = new Set(readdirSync(reportDir));
  child.kill('SIGUSR2');
  let file: string | undefined;
  for (let tries = 0; tries < 100 && file === undefined; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    file = readdirSync(reportDir).find((name) => !before.has(name) && name.endsWith('.json'));
  }
  if (file === undefined)
    return `coordinator ${coordinator.name} is alive but wrote no report in 10 s (its event loop is held busy)`;
  await new Promise((resolve) => setTimeout(resolve, 200));
  try {
    const report = JSON.parse(readFileSync(join(reportDir, file), 'utf8')) as {
      javascriptStack?: { message?: string; stack?: string[] };
      libuv?: Array<{ type: string; is_active?: boolean; [field: string]: unknown }>;
      resourceUsage?: { userCpuSeconds?: number; kernelCpuSeconds?: number };
      javascriptHeap?: { usedMemory?: number };
    };
    const active = new Map<string, number>();
    for (const handle of report.libuv ?? []) {
      if (handle.is_active) active.set(handle.type, (active.get(handle.type) ?? 0) + 1);
    }
    return [
      `coordinator ${coordinator.name} is alive; its diagnostic report (${join(reportDir, file)}):`,
      `  JavaScript stack: ${report.javascriptStack?.message ?? ''}`,
      ...(report.javascriptStack?.stack ?? []).slice(0, 12).map((frame) => `    ${frame}`),
      `  active libuv handles: ${[...active].map(([type, n]) => `${type} x${n}`).join(', ')}`,
      // When each timer fires, and what each connection still has to write: a wait that never
      // ends shows up as a timer far off (or none), or a write queue that never drains.
      ...(report.libuv ?? [])
        .filter((handle) => DETAILED_HANDLES.has(handle.type))
        .map(({ type, address: _address, ...fields }) => `    ${type} ${JSON.stringify(fields)}`),
      `  CPU: user ${report.resourceUsage?.userCpuSeconds} s, kernel ${report.resourceUsage?.kernelCpuSeconds} s; heap used ${report.javascriptHeap?.usedMemory} B`,
    ].join('\n');
  } catch (cause) {
    return `coordinator ${coordinator.name} wrote an unreadable report ${file}: ${(cause as Error).message}`;
  }
}

/**
 * Starts a coordinator process and waits until it listens; `cleanups` gets its SIGKILL. Without
 * `databaseUrl`, `args` names its database (`--database-url` or `--data-dir`).
 */
export async function startCoordinatorProcess(options: {
  name: string;
  port: number;
  databaseUrl?: string;
  adminToken: string;
  args: string[];
  cleanups: Array<() => unknown>;
}): Promise<CoordinatorProcess> {
  const { name, port } = options;
  const reportDir = mkdtempSync(join(tmpdir(), 'tessera-coordinator-report-'));
  options.cleanups.push(() => rmSync(reportDir, { recursive: true, force: true }));
  const child = spawn(
    process.execPath,
    [
      coordinatorCli,
      ...['--port', String(port), '--host', '127.0.0.1'],
      ...(options.databaseUrl === undefined ? [] : ['--database-url', options.databaseUrl]),
      ...options.args,
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        TESSERA_ADMIN_TOKEN: options.adminToken,
        DATABASE_URL: '',
        // For diagnose: a report on SIGUSR2 (Node's default report signal), into reportDir. In
        // NODE_OPTIONS, not in the arguments: worker threads take their parent's execArgv, and
        // refuse these there.
        NODE_OPTIONS: `--report-on-signal --report-directory=${reportDir}`,
      },
    },
  );
  options.cleanups.push(() => {
    child.kill('SIGKILL');
  });
  const lines: string[] = [];
  for (const stream of [child.stdout, child.stderr]) {
    if (stream) createInterface({ input: stream }).on('line', (line) => lines.push(line));
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitFor(
    () => lines.some((line) => line.includes('coordinator listening')),
    () => `coordinator ${name} to listen (log: ${lines.slice(-5).join(' | ')})`,
    90_000,
  );
  return { name, url: `http://127.0.0.1:${port}`, child, lines, exited, reportDir };
}

/** Redis for the cluster tests: TEST_REDIS_URL, else one on 127.0.0.1:6379. */
export const redisUrl = process.env['TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';

/**
 * Two coordinator processes, A and B, each on a port of its own, on one database and one Redis
 * (--redis, under a key prefix of this call's own: test:`test`:<uuid>:). One after the other:
 * both apply the same migrations at start.
 */
export async function startRedisCoordinators(options: {
  test: string;
  databaseUrl: string;
  adminToken: string;
  leaseMs: number;
  cleanups: Array<() => unknown>;
}): Promise<{ a: CoordinatorProcess; b: CoordinatorProcess }> {
  const prefix = `test:${options.test}:${randomUUID()}:`;
  const start = async (name: string) =>
    startCoordinatorProcess({
      name,
      port: await freePort(),
      databaseUrl: options.databaseUrl,
      adminToken: options.adminToken,
      args: [
        ...['--lease-ms', String(options.leaseMs)],
        ...['--redis', redisUrl, '--redis-prefix', prefix],
      ],
      cleanups: options.cleanups,
    });
  const a = await start('A');
  const b = await start('B');
  return { a, b };
}

/** The admin REST API of one coordinator process. */
export function adminApi(adminToken: string) {
  return async <T>(on: CoordinatorProcess, method: string, path: string, body?: unknown) => {
    const response = await fetch(`${on.url}/api${path}`, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${on.name} ${method} ${path}: ${response.status} ${text}`);
    return JSON.parse(text) as T;
  };
}

export type AdminApi = ReturnType<typeof adminApi>;

/** A token for client `k` of a federation (organisation org-`k`), issued by `on`. */
export const issueClientToken = (
  api: AdminApi,
  on: CoordinatorProcess,
  federationId: string,
  k: number,
) =>
  api<{ token: string; client: { id: string } }>(
    on,
    'POST',
    `/federations/${federationId}/clients`,
    {
      organisation: `org-${k}`,
    },
  );

/**
 * A Node client process of `token` (one thread, no progress output, its output dropped) that
 * connects to `coordinator`, a URL; `cleanups` gets its SIGKILL.
 */
export function spawnClientProcess(options: {
  coordinator: string;
  token: string;
  args: string[];
  cleanups: Array<() => unknown>;
}): ChildProcess {
  const child = spawn(
    process.execPath,
    [
      clientCli,
      ...['--coordinator', options.coordinator, '--token', options.token],
      ...['--progress', 'none', '--threads', '1'],
      ...options.args,
    ],
    { stdio: ['ignore', 'ignore', 'ignore'] },
  );
  options.cleanups.push(() => {
    child.kill('SIGKILL');
  });
  return child;
}

/** The ids of the clients whose connection this coordinator's log says it accepted. */
export const connectedTo = (c: CoordinatorProcess) =>
  new Set(
    c.lines
      .filter((line) => line.includes('"msg":"client connected"'))
      .map((line) => /"clientId":"([^"]+)"/.exec(line)?.[1] ?? ''),
  );

/** This coordinator's lease owner name, from its start-up log line. */
export const leaseOwnerOf = (c: CoordinatorProcess) =>
  /"owner":"([^"]+)"/.exec(c.lines.find((l) => l.includes('coordinator lease owner')) ?? '')?.[1];

/** Round numbers of a run's `message` lines in a coordinator's log. */
export const roundsLogged = (c: CoordinatorProcess, runId: string, message: string) =>
  c.lines
    .filter((line) => line.includes(`"msg":"${message}"`) && line.includes(runId))
    .map((line) => Number(/"round":(\d+)/.exec(line)?.[1] ?? 0));

/**
 * What a run killed by killOwnerMidRound needs so that its rounds outlast the kill delay (up to
 * 250 ms after the round started): 40 local epochs of 600 examples. With one epoch a 2NN round
 * took about 100 ms once central evaluation stopped holding the loop, and the kill landed
 * rounds later than the one drawn.
 */
export const KILLED_MID_ROUND_RUN = { localEpochs: 40 };

/**
 * SIGKILLs the run's owner mid-round (in round 2 or 3, a delay of 0-250 ms after that round
 * started, both drawn from `rng`: the run's rounds must outlast that, KILLED_MID_ROUND_RUN,
 * so that the kill falls inside the round drawn), then waits for `successor` to take the run
 * over. Says what it did on stdout.
 */
export async function killOwnerMidRound(options: {
  owner: CoordinatorProcess;
  successor: CoordinatorProcess;
  runId: string;
  rng: { next(): number };
}) {
  const { owner, successor, runId, rng } = options;
  const killRound = 2 + Math.floor(rng.next() * 2);
  const delayMs = Math.floor(rng.next() * 250);
  await waitFor(
    () => roundsLogged(owner, runId, 'round started').includes(killRound),
    () =>
      `round ${killRound} to start on ${owner.name} (log: ${owner.lines.slice(-5).join(' | ')})`,
    180_000,
  );
  await new Promise((resolve) => setTimeout(resolve, delayMs));
  owner.child.kill('SIGKILL');
  const killedAt = Date.now();
  await owner.exited;
  const committedByOwner = roundsLogged(owner, runId, 'round committed');
  console.log(
    `${owner.name} killed ${delayMs} ms after round ${killRound} started; it had committed rounds [${committedByOwner.join(', ')}]`,
  );
  const resumedLine = () =>
    successor.lines.find((line) => line.includes('"msg":"resuming run"') && line.includes(runId));
  await waitFor(
    () => resumedLine() !== undefined,
    () => `${successor.name} to take the run over (log: ${successor.lines.slice(-5).join(' | ')})`,
    30_000,
  );
  const takeoverMs = Date.now() - killedAt;
  console.log(`${successor.name} took the run over ${takeoverMs} ms after the kill`);
  const resumedFrom = Number(/"committedRounds":(\d+)/.exec(resumedLine() ?? '')?.[1]);
  return { killRound, committedByOwner, takeoverMs, resumedFrom };
}
