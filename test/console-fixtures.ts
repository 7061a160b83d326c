import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Coordinator, createLogger } from '@tessera/coordinator';
import { type Database, openDatabase, type UserRole } from '@tessera/db';

/**
 * Fixtures for the console tests: a real coordinator on port 0 with a bearer admin token (so
 * the API is closed), over PGlite on disk, and helpers that log in as console users.
 */
export const SERVICE_TOKEN = 'service-token-for-tests-0123456789';
export const PASSWORD = 'a password long enough';

export interface ConsoleFixture {
  coordinator: Coordinator;
  db: Database;
  logs: string[];
  url: string;
  /** Creates a user and logs in: the cookie header value and the CSRF token. */
  login(role: UserRole, email?: string): Promise<Session>;
  /** A JSON (or raw) request; `as` picks the credentials. */
  call<T = unknown>(
    method: string,
    path: string,
    options?: {
      as?: Session | 'service' | 'none';
      body?: unknown;
      raw?: Uint8Array;
      contentType?: string;
      csrf?: string | null;
      cookie?: string;
    },
  ): Promise<{ status: number; body: T; headers: Headers }>;
  dispose(): Promise<void>;
}

export interface Session {
  cookie: string;
  csrfToken: string;
  email: string;
}

let userCount = 0;

export async function startConsoleFixture(
  options: { centralEvaluation?: boolean; maxTaskParams?: number } = {},
): Promise<ConsoleFixture> {
  const dataDir = mkdtempSync(join(tmpdir(), 'tessera-console-'));
  const logs: string[] = [];
  const db = await openDatabase({ dataDir: join(dataDir, 'pglite') });
  const coordinator = await Coordinator.start({
    db,
    logger: createLogger('info', (line) => logs.push(line)),
    adminToken: SERVICE_TOKEN,
    centralEvaluation: options.centralEvaluation ?? false,
    ...(options.maxTaskParams === undefined ? {} : { maxTaskParams: options.maxTaskParams }),
    port: 0,
  });
  const url = coordinator.url;

  const call: ConsoleFixture['call'] = async (method, path, opts = {}) => {
    const headers: Record<string, string> = {};
    const as = opts.as ?? 'service';
    if (as === 'service') headers['authorization'] = `Bearer ${SERVICE_TOKEN}`;
    else if (as !== 'none') {
      headers['cookie'] = as.cookie;
      if (opts.csrf !== null) headers['x-csrf-token'] = opts.csrf ?? as.csrfToken;
    }
    if (opts.cookie !== undefined) headers['cookie'] = opts.cookie;
    let body: BodyInit | undefined;
    if (method === 'GET' || method === 'HEAD') {
      // no body
    } else if (opts.raw !== undefined) {
      body = opts.raw as unknown as BodyInit;
      headers['content-type'] = opts.contentType ?? 'application/octet-stream';
    } else if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] = opts.contentType ?? 'application/json';
    }
    const response = await fetch(`${url}/api${path}`, {
      method,
      headers,
      ...(body ? { body } : {}),
    });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: keep the text
    }
    return { status: response.status, body: parsed as never, headers: response.headers };
  };

  return {
    coordinator,
    db,
    logs,
    url,
    call,
    async login(role, email = `${role}-${++userCount}@example.org`) {
      await db.accounts.createUser({ email, role, password: PASSWORD });
      const response = await fetch(`${url}/api/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email, password: PASSWORD }),
      });
      if (response.status !== 200) throw new Error(`login failed: ${response.status}`);
      const setCookie = response.headers.get('set-cookie') ?? '';
      const { csrfToken } = (await response.json()) as { csrfToken: string };
      return { cookie: setCookie.split(';')[0] ?? '', csrfToken, email };
    },
    async dispose() {
      await coordinator.close();
      await db.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
