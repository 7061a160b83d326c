import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Coordinator, createLogger } from '@tessera/coordinator';
import {
  type Database,
  openDatabase,
  type RoundCommit,
  type RunConfigInput,
  type UserRole,
} from '@tessera/db';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll } from 'vitest';
import { CHROMIUM, launchChromium } from './chromium.js';

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

const CONSOLE_INDEX = fileURLToPath(new URL('../apps/console/dist/index.html', import.meta.url));

/**
 * The console fixture and a headless Chromium for the file's tests: started before them
 * (after checking the console is built and Chromium installed), closed after.
 */
export function useConsoleInChromium(options: Parameters<typeof startConsoleFixture>[0] = {}): {
  readonly fx: ConsoleFixture;
  readonly browser: Browser;
} {
  let fx: ConsoleFixture | undefined;
  let browser: Browser | undefined;
  beforeAll(async () => {
    const missing = [CONSOLE_INDEX, CHROMIUM].filter((path) => !existsSync(path));
    if (missing.length > 0) {
      throw new Error(`missing ${missing.join(', ')}: npm run build, apt-get install -y chromium`);
    }
    fx = await startConsoleFixture(options);
    browser = await launchChromium('no-gpu');
  });
  afterAll(async () => {
    await browser?.close();
    await fx?.dispose();
  });
  const started = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('the console fixture starts in beforeAll');
    return value;
  };
  return {
    get fx() {
      return started(fx);
    },
    get browser() {
      return started(browser);
    },
  };
}

/** A page of the console in a new browser context, signed in as a new user of `role`. */
export async function signedInPage(
  fx: ConsoleFixture,
  browser: Browser,
  role: UserRole,
  options: { email?: string; timeoutMs?: number } = {},
): Promise<Page> {
  const email = options.email ?? `${role}-${++userCount}@example.org`;
  await fx.db.accounts.createUser({ email, role, password: PASSWORD });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(options.timeoutMs ?? 60_000);
  await page.goto(fx.url);
  await page.fill('input[name=email]', email);
  await page.fill('input[name=password]', PASSWORD);
  await page.click('button[type=submit]');
  await page.getByTestId('who').waitFor();
  return page;
}

/** A fedavg-2nn run's config for runs whose rounds a test commits straight into the database. */
export const recordedRunConfig = (overrides: Partial<RunConfigInput> = {}): RunConfigInput => ({
  model: 'fedavg-2nn',
  strategy: 'fedavg',
  strategyOptions: {},
  rounds: 1,
  clientsPerRound: null,
  fractionFit: null,
  minClients: 1,
  roundDeadlineMs: 60_000,
  localEpochs: 1,
  batchSize: 10,
  learningRate: 0.05,
  seed: 1,
  data: {},
  ...overrides,
});

/**
 * Commits round `round` of a run as the engine would record it, with one client's update of
 * 100 examples (started at 12:`round`:00 on 2026-12-01, 5 s long); `overrides` replace any part.
 */
export function commitRecordedRound(
  db: Database,
  round: { runId: string; round: number; clientId: string; checkpoint: Uint8Array },
  overrides: Partial<RoundCommit> = {},
) {
  const { runId, clientId, checkpoint } = round;
  return db.rounds.commit({
    runId,
    round: round.round,
    startedAt: new Date(Date.UTC(2026, 11, 1, 12, round.round, 0)),
    finishedAt: new Date(Date.UTC(2026, 11, 1, 12, round.round, 5)),
    selectedClientIds: [clientId],
    participantClientIds: [clientId],
    droppedClientIds: [],
    numExamples: 100,
    trainLoss: 0.5,
    trainAccuracy: 0.8,
    metrics: {},
    updates: [
      {
        clientId,
        arrivalIndex: 0,
        numExamples: 100,
        durationMs: 10,
        sizeBytes: 16,
        sha256: 'a'.repeat(64),
        metrics: {},
      },
    ],
    checkpoint,
    ...overrides,
  });
}
