import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { STRATEGY_NAMES, STRATEGY_OPTIONS } from '@tessera/aggregation';
import type { UserRecord } from '@tessera/db';
import { DEFAULT_MAX_TASK_PARAMS, MODEL_NAMES, modelSpec } from '@tessera/ml';
import {
  CONSOLE_ROLES,
  createFederationSchema,
  createUserSchema,
  ErrorCode,
  issueTokenSchema,
  loginSchema,
  MAX_PREDICT_EXAMPLES,
  predictRequestSchema,
  roundQuerySchema,
  storedRunConfigSchema,
  TesseraError,
} from '@tessera/protocol';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Server } from 'socket.io';
import { z } from 'zod';
import type { Coordinator } from './coordinator.js';
import { DEFAULT_MAX_HOLDOUT_BYTES } from './holdout.js';
import { AdminFeed } from './http/admin-namespace.js';
import {
  type AuthOptions,
  clearedSessionCookie,
  constantTimeEquals,
  type LoginLimits,
  LoginRateLimiter,
  SESSION_TTL_MS,
  sessionCookie,
} from './http/auth.js';
import { serveConsole } from './http/console-static.js';
import { HTTP_STATUS, toApiError } from './http/errors.js';
import { checkJsonShape } from './http/json-shape.js';
import { buildOpenApi } from './http/openapi.js';
import {
  type ImageKind,
  MAX_IMAGE_BYTES,
  ModelServer,
  type PredictBody,
  sniffImage,
} from './http/predict.js';
import { PredictLimiter, type PredictLimits } from './http/predict-limits.js';
import { refuseUnsafePaths } from './http/request-path.js';
import { registerResearchRoutes } from './http/research-routes.js';
import { defineRoutes, parseWith } from './http/routes.js';
import { RunControl } from './http/run-control.js';
import { holdoutBodyParser, registerTaskRoutes, taskBodyParsers } from './http/task-routes.js';
import { registerTokenRoutes } from './http/token-routes.js';
import { type CreateRunRequest, createRunSchema } from './run-config.js';
import { refuseUntrainableTask } from './run-task.js';
import { mountWebClient } from './web-client-static.js';

// Response shapes, for the OpenAPI document (the repositories' records, as JSON).
const userOut = z.object({
  id: z.string(),
  email: z.string(),
  name: z.string(),
  role: z.enum(CONSOLE_ROLES),
  createdAt: z.string(),
  disabledAt: z.string().nullable(),
});
const sessionOut = z.object({ user: userOut, csrfToken: z.string(), expiresAt: z.string() });
const federationOut = z.object({
  id: z.string(),
  name: z.string(),
  description: z.string().nullable(),
  createdAt: z.string(),
});
const clientOut = z.object({
  id: z.string(),
  federationId: z.string(),
  organisation: z.string(),
  label: z.string().nullable(),
  createdAt: z.string(),
  revokedAt: z.string().nullable(),
  lastSeenAt: z.string().nullable(),
});
const runOut = z.object({
  id: z.string(),
  federationId: z.string(),
  name: z.string(),
  status: z.string(),
  config: storedRunConfigSchema,
  currentRound: z.number(),
  statistics: z
    .record(z.string(), z.unknown())
    .nullable()
    .describe(
      "The federated statistics round's combined statistics ({rows, columns}, docs/protocol.md §5.10; never one client's), or null until it ran (or when the task needs none)",
    ),
  resolvedTask: z
    .object({ name: z.string(), version: z.number(), sha256: z.string() })
    .nullable()
    .describe(
      "The task with the statistics round's constants filled in, which train and evaluate name from then on; null until then",
    ),
  error: z.string().nullable(),
  endReason: z
    .string()
    .nullable()
    .describe(
      'Why the run ended on its own before its last round ("privacy budget: epsilon would be X > budget Y ..." for dp-fedavg); null otherwise',
    ),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
});
const roundOut = z
  .record(z.string(), z.unknown())
  .describe(
    "A RoundRecord (see packages/db); `privacy`: the round's privacy mechanisms, flat (docs/research.md): dp-fedavg's accounting (epsilon, delta, steps, clipNorm, noiseStd, clippedCount, ...), the secure aggregation's record, local DP's (localEpsilon, localEpsilonPerRound, localNormRefused, ...); null without any",
  );
const taskPredictionOut = z.union([
  z.object({
    class: z.string().describe('The most probable class'),
    probabilities: z
      .record(z.string(), z.number())
      .describe("Each class's probability by name (binary tasks: both classes)"),
    tokens: z.number().int().optional().describe("Text tasks: the text's token count"),
    truncated: z
      .boolean()
      .optional()
      .describe('Text tasks: the text had more tokens than maxLength, and only those were read'),
  }),
  z.object({
    value: z.number().describe('Regression tasks: the predicted value'),
    tokens: z.number().int().optional(),
    truncated: z.boolean().optional(),
  }),
]);
const predictionOut = z.object({
  runId: z.string(),
  round: z.number().describe('The checkpoint used: 0 is the initial model'),
  task: z.object({ name: z.string(), version: z.number().int(), sha256: z.string() }),
  predictions: z.array(taskPredictionOut).describe('One per example sent, in order'),
  class: z.number().int().optional().describe('Built-in MNIST tasks: the digit'),
  probabilities: z
    .array(z.number())
    .length(10)
    .optional()
    .describe('Built-in MNIST tasks: the 10 digits probabilities, in order'),
});

function publicUser(user: UserRecord) {
  return {
    id: user.id,
    email: user.email,
    name: user.name,
    role: user.role,
    createdAt: user.createdAt,
    disabledAt: user.disabledAt,
  };
}

export interface ApiOptions {
  /** Bearer token with the admin role (machines, scripts); null: no login needed at all. */
  adminToken: string | null;
  /** The console's built files (index.html...); default apps/console/dist; null: no console. */
  consoleDir?: string | null;
  /** Behind a TLS-terminating proxy: trust X-Forwarded-* (Secure cookies, client addresses). */
  trustProxy?: boolean;
  /** The coordinator's Socket.IO server: the console's live `/admin` namespace goes on it. */
  io?: Server;
  /** Failed-login limits (tests lower them). */
  loginLimits?: LoginLimits;
  /** Predictions per session: in flight and per minute (tests lower them). */
  predictLimits?: PredictLimits;
  /** The most parameters a task's model may have; default DEFAULT_MAX_TASK_PARAMS. */
  maxTaskParams?: number;
  /** The largest held-out set upload, in bytes; default DEFAULT_MAX_HOLDOUT_BYTES. */
  maxHoldoutBytes?: number;
  /** A bearer token that reads /metrics and nothing else (besides the admin token). */
  metricsToken?: string | null;
}

const defaultConsoleDir = fileURLToPath(new URL('../../console/dist', import.meta.url));

/**
 * The REST API (JSON) and the console's static files. Errors have the wire shape
 * `{ error: { code, message, data } }` with an HTTP status derived from the code. Callers are
 * console users (session cookie + CSRF header) or machines (bearer admin token).
 */
export function createApi(coordinator: Coordinator, options: ApiOptions) {
  const { db } = coordinator;
  const app = express();
  app.disable('x-powered-by');
  // One hop: the address the proxy saw, not whatever the client put first in X-Forwarded-For.
  if (options.trustProxy) app.set('trust proxy', 1);
  app.use(refuseUnsafePaths);
  const maxTaskParams = options.maxTaskParams ?? DEFAULT_MAX_TASK_PARAMS;
  const maxHoldoutBytes = options.maxHoldoutBytes ?? DEFAULT_MAX_HOLDOUT_BYTES;
  // A held-out set has its own size limit (413 above it), parsed before the task parsers.
  app.use('/api/tasks/:name/versions/:version/holdout', holdoutBodyParser(maxHoldoutBytes));
  // Task definitions outgrow 1 MB: their routes parse their bodies first (the parser below
  // then leaves them be).
  app.use('/api/tasks', taskBodyParsers(maxTaskParams));
  // Depth and key counts are checked on the raw bytes, before JSON.parse and any schema.
  app.use(express.json({ limit: '1mb', verify: (_req, _res, bytes) => checkJsonShape(bytes) }));
  mountWebClient(app);

  // Liveness: always 200 while the process answers; `ok: false, status: 'degraded'` and `down`
  // say what it is waiting for (README, "Running it for real").
  app.get('/healthz', (_req, res) => {
    const health = coordinator.health();
    const { database } = health;
    res.json({
      ok: health.status === 'ok',
      status: health.status,
      database: db.kind,
      connectedClients: coordinator.registry.connectedHere().length,
      down:
        database.status === 'ok'
          ? []
          : [
              {
                component: 'database',
                since: database.since?.toISOString() ?? null,
                error: database.lastError,
                waitingCalls: database.waitingCalls,
              },
            ],
    });
  });
  // Readiness: 503 while the database does not answer (asked now), so a load balancer sends
  // no new work here; 200 once it does.
  app.get('/readyz', async (_req, res) => {
    const ready = await coordinator.probeDatabase();
    const { database } = coordinator.health();
    res.status(ready ? 200 : 503).json({
      ready,
      database: db.kind,
      ...(ready ? {} : { since: database.since?.toISOString() ?? null, error: database.lastError }),
    });
  });

  // Prometheus scrapes: the admin token, or a metrics-only token so that the scraper holds no
  // admin rights; open only where the REST API is open (no admin token).
  app.get('/metrics', async (req, res) => {
    const bearer = req.headers.authorization?.startsWith('Bearer ')
      ? req.headers.authorization.slice(7)
      : null;
    const allowed = [options.adminToken, options.metricsToken ?? null].filter(
      (token): token is string => token !== null,
    );
    const open = options.adminToken === null;
    if (!open && !(bearer !== null && allowed.some((token) => constantTimeEquals(bearer, token)))) {
      const error = new TesseraError(
        ErrorCode.UNAUTHORIZED,
        '/metrics needs the metrics token or the admin token (Authorization: Bearer)',
      );
      res.status(401).json({ error: error.toWire() });
      return;
    }
    const { contentType, body } = await coordinator.metrics.scrape();
    res.type(contentType).send(body);
  });

  const auth: AuthOptions = { db, adminToken: options.adminToken };
  const limiter = new LoginRateLimiter(db.accounts, options.loginLimits);
  const models = new ModelServer(db);
  const predictLimiter = new PredictLimiter(options.predictLimits);
  const control = new RunControl(coordinator);
  const feed = options.io ? new AdminFeed(options.io, coordinator, auth, control) : null;
  options.io?.httpServer?.once('close', () => models.dispose());
  const router = express.Router();
  const { route, specs } = defineRoutes(router, auth);
  const secure = (req: Request) => req.secure;

  // --- sessions
  route(
    {
      method: 'post',
      path: '/auth/login',
      summary: 'Log in to the console: sets the session cookie, returns the CSRF token',
      access: 'public',
      body: loginSchema,
      response: { status: 200, description: 'Logged in', schema: sessionOut },
    },
    async ({ body }, req, res) => {
      const { email, password } = body as z.infer<typeof loginSchema>;
      const address = req.ip ?? 'unknown';
      // The slot is taken before the slow hash: attempts in flight count too.
      await limiter.reserve(address, email);
      const user = await db.accounts.verifyLogin(email, password);
      if (!user) throw new TesseraError(ErrorCode.UNAUTHORIZED, 'wrong email or password');
      await limiter.succeeded(address, email);
      const { token, session } = await db.accounts.createSession(user.id, SESSION_TTL_MS);
      res.setHeader(
        'set-cookie',
        sessionCookie(token, { secure: secure(req), maxAgeMs: SESSION_TTL_MS }),
      );
      res.json({
        user: publicUser(user),
        csrfToken: session.csrfToken,
        expiresAt: session.expiresAt,
      });
    },
  );
  route(
    {
      method: 'get',
      path: '/auth/session',
      summary: 'The signed-in user and the CSRF token of this session',
      access: 'read',
      response: { status: 200, description: 'Current session', schema: sessionOut },
    },
    ({ principal }, _req, res) => {
      if (principal.kind === 'apiToken') {
        // Its owner, with the token's role and scope (not the owner's role): no CSRF, no writes.
        res.json({
          user: { ...publicUser(principal.user), role: principal.role },
          csrfToken: '',
          scope: principal.scope,
          expiresAt: principal.apiToken.expiresAt,
        });
        return;
      }
      if (principal.kind !== 'user') {
        // The bearer token and an open coordinator act as an anonymous admin.
        res.json({
          user: { id: principal.kind, email: '', name: principal.kind, role: 'admin' },
          csrfToken: '',
        });
        return;
      }
      res.json({
        user: publicUser(principal.user),
        csrfToken: principal.session.csrfToken,
        expiresAt: principal.session.expiresAt,
      });
    },
  );
  route(
    {
      method: 'post',
      path: '/auth/logout',
      summary: 'End this session (and close its live connections)',
      access: 'read',
      response: { status: 204, description: 'Logged out' },
    },
    async ({ principal }, req, res) => {
      if (principal.kind === 'user') {
        await db.accounts.deleteSession(principal.token);
        feed?.endSession(principal.session.id);
      }
      res.setHeader('set-cookie', clearedSessionCookie(secure(req)));
      res.status(204).end();
    },
  );

  // --- users
  route(
    {
      method: 'get',
      path: '/users',
      summary: 'List console users',
      access: 'admin',
      action: 'list users',
      response: { status: 200, description: 'Users', schema: z.array(userOut) },
    },
    async (_context, _req, res) => {
      res.json((await db.accounts.listUsers()).map(publicUser));
    },
  );
  route(
    {
      method: 'post',
      path: '/users',
      summary: 'Create a console user (admin or researcher)',
      access: 'admin',
      action: 'create users',
      body: createUserSchema,
      response: { status: 201, description: 'Created', schema: userOut },
    },
    async ({ body }, _req, res) => {
      res
        .status(201)
        .json(publicUser(await db.accounts.createUser(body as z.infer<typeof createUserSchema>)));
    },
  );
  route(
    {
      method: 'post',
      path: '/users/:id/disable',
      summary: 'Disable a user and end their sessions',
      access: 'admin',
      action: 'disable users',
      response: { status: 200, description: 'Disabled', schema: userOut },
    },
    async (_context, req, res) => {
      res.json(publicUser(await db.accounts.disableUser(String(req.params['id']))));
    },
  );

  // --- what this coordinator offers (the console builds its forms from it)
  route(
    {
      method: 'get',
      path: '/meta',
      summary: 'Models, strategies and limits of this coordinator',
      access: 'read',
      response: { status: 200, description: 'Choices for the run form' },
    },
    (_context, _req, res) => {
      res.json({
        models: MODEL_NAMES.map((name) => {
          const spec = modelSpec(name);
          return { name, description: spec.description, paramCount: spec.paramCount };
        }),
        strategies: STRATEGY_NAMES,
        // Each strategy's options as JSON Schema (the schema a run's strategyOptions must meet).
        strategyOptions: Object.fromEntries(
          STRATEGY_NAMES.map((name) => [
            name,
            z.toJSONSchema(STRATEGY_OPTIONS[name] ?? z.strictObject({}), { io: 'input' }),
          ]),
        ),
        roles: CONSOLE_ROLES,
        maxImageBytes: MAX_IMAGE_BYTES,
      });
    },
  );

  // --- federations and client tokens
  route(
    {
      method: 'post',
      path: '/federations',
      summary: 'Create a federation',
      access: 'admin',
      action: 'create federations',
      body: createFederationSchema,
      response: { status: 201, description: 'Created', schema: federationOut },
    },
    async ({ body }, _req, res) => {
      res
        .status(201)
        .json(await db.federations.create(body as z.infer<typeof createFederationSchema>));
    },
  );
  route(
    {
      method: 'get',
      path: '/federations',
      summary: 'List federations',
      access: 'read',
      response: { status: 200, description: 'Federations', schema: z.array(federationOut) },
    },
    async (_context, _req, res) => {
      res.json(await db.federations.list());
    },
  );
  route(
    {
      method: 'get',
      path: '/federations/:id',
      summary: 'One federation',
      access: 'read',
      response: { status: 200, description: 'Federation', schema: federationOut },
    },
    async (_context, req, res) => {
      res.json(await db.federations.get(String(req.params['id'])));
    },
  );
  route(
    {
      method: 'post',
      path: '/federations/:id/clients',
      summary:
        'Issue a client token for an organisation (the token is returned once; only its hash is kept)',
      access: 'admin',
      action: 'issue client tokens',
      body: issueTokenSchema,
      response: {
        status: 201,
        description: 'Issued',
        schema: z.object({ client: clientOut, token: z.string() }),
      },
    },
    async ({ body }, req, res) => {
      const federationId = String(req.params['id']);
      await db.federations.get(federationId);
      res.status(201).json(
        await db.clients.issueToken({
          federationId,
          ...(body as z.infer<typeof issueTokenSchema>),
        }),
      );
    },
  );
  route(
    {
      method: 'get',
      path: '/federations/:id/clients',
      summary: "A federation's client credentials (organisations), revoked ones included",
      access: 'read',
      response: { status: 200, description: 'Clients', schema: z.array(clientOut) },
    },
    async (_context, req, res) => {
      res.json(await db.clients.list(String(req.params['id'])));
    },
  );
  route(
    {
      method: 'post',
      path: '/clients/:id/revoke',
      summary: 'Revoke a client token',
      access: 'admin',
      action: 'revoke client tokens',
      response: { status: 204, description: 'Revoked' },
    },
    async (_context, req, res) => {
      await coordinator.revokeClient(String(req.params['id']));
      res.status(204).end();
    },
  );
  route(
    {
      method: 'get',
      path: '/connected-clients',
      summary: 'Clients connected to this coordinator now (live: the /admin socket pushes these)',
      access: 'read',
      response: { status: 200, description: 'Connected clients' },
    },
    (_context, _req, res) => {
      res.json(coordinator.registry.list().map(({ connectionId: _c, ...session }) => session));
    },
  );

  // --- runs
  route(
    {
      method: 'post',
      path: '/runs',
      summary:
        "Create a run. `task: {name, version?}` names what it trains (default: the latest version; stored resolved to {name, version, sha256}). `model` (fedavg-2nn, fedavg-cnn, mlp, cnn) still works as an alias of that model's built-in MNIST task. A task whose preprocessing leaves constants to statistics gets a federated statistics round before round 1 (docs/protocol.md §7.6); one that leaves more than 1000 columns to it is refused (INVALID_ARGUMENT, field task)",
      access: 'admin',
      action: 'create runs',
      body: createRunSchema,
      response: { status: 201, description: 'Created', schema: runOut },
    },
    async ({ body }, _req, res) => {
      const { federationId, name, ...config } = body as CreateRunRequest;
      await db.federations.get(federationId);
      refuseUntrainableTask(await db.runs.resolveTask(config.task, ''));
      res
        .status(201)
        .json(await db.runs.create({ federationId, ...(name ? { name } : {}), config }));
    },
  );
  route(
    {
      method: 'get',
      path: '/runs',
      summary: 'List runs',
      access: 'read',
      query: z.object({ federationId: z.string().optional() }),
      response: { status: 200, description: 'Runs', schema: z.array(runOut) },
    },
    async ({ query }, _req, res) => {
      const { federationId } = query as { federationId?: string };
      res.json(await db.runs.list(federationId ? { federationId } : {}));
    },
  );
  route(
    {
      method: 'get',
      path: '/runs/:id',
      summary: 'One run',
      access: 'read',
      response: { status: 200, description: 'Run', schema: runOut },
    },
    async (_context, req, res) => {
      const id = String(req.params['id']);
      res.json({ ...(await db.runs.get(id)), pausing: control.isPausing(id) });
    },
  );
  route(
    {
      method: 'post',
      path: '/runs/:id/start',
      summary:
        'Start a run, or resume a paused one from its last committed round (a stopped run is final)',
      access: 'admin',
      action: 'start runs',
      response: { status: 202, description: 'Running', schema: runOut },
    },
    async (_context, req, res) => {
      res.status(202).json(await control.start(String(req.params['id'])));
    },
  );
  route(
    {
      method: 'post',
      path: '/runs/:id/stop',
      summary:
        'Stop a run for good (the open round is discarded; a stopped run cannot be started again)',
      access: 'admin',
      action: 'stop runs',
      response: { status: 200, description: 'Stopped', schema: runOut },
    },
    async (_context, req, res) => {
      res.json(await control.stop(String(req.params['id'])));
    },
  );
  route(
    {
      method: 'post',
      path: '/runs/:id/pause',
      summary:
        'Pause a run after its open round (trained, committed and evaluated); start resumes it',
      access: 'admin',
      action: 'pause runs',
      response: { status: 202, description: 'Pausing after the open round', schema: runOut },
    },
    async (_context, req, res) => {
      res.status(202).json(await control.pause(String(req.params['id'])));
    },
  );
  route(
    {
      method: 'get',
      path: '/runs/:id/rounds',
      summary: "A run's committed rounds",
      access: 'read',
      response: { status: 200, description: 'Rounds', schema: z.array(roundOut) },
    },
    async (_context, req, res) => {
      const id = String(req.params['id']);
      await db.runs.get(id);
      res.json(await db.rounds.list(id));
    },
  );
  route(
    {
      method: 'get',
      path: '/runs/:id/rounds/:round',
      summary:
        'One round: its record, client updates (metrics, durations, sizes) and checkpoint hash',
      access: 'read',
      response: { status: 200, description: 'Round detail' },
    },
    async (_context, req, res) => {
      const id = String(req.params['id']);
      const number = parseWith(
        z.object({ round: z.coerce.number().int().min(1) }),
        { round: req.params['round'] },
        'query',
      ).round;
      const round = (await db.rounds.list(id)).find((r) => r.number === number);
      if (!round)
        throw new TesseraError(ErrorCode.NOT_FOUND, `round ${number} of run ${id} not found`);
      const [updates, checkpoint] = await Promise.all([
        db.rounds.updates(id, number),
        db.rounds.checkpoint(id, number),
      ]);
      res.json({
        round,
        updates,
        checkpoint: { round: number, sha256: checkpoint.sha256, paramCount: checkpoint.paramCount },
      });
    },
  );

  // --- the model: predictions and tfjs downloads
  route(
    {
      method: 'post',
      path: '/runs/:id/predict',
      summary: `Predict with the run's global model (latest, or ?round=N), in its task's terms: multiclass and binary tasks answer class names and probabilities, regression tasks a value. JSON: tabular tasks {features: {column: value}} or {rows: [...]} (at most ${MAX_PREDICT_EXAMPLES}); text tasks {text} or {texts: [...]}; image tasks {pixels: height x width x channels values in the task's valueRange} (MNIST: 784 in [0,1]). Image tasks also take a PNG/JPEG body (any size up to the limit; resized to the task's shape, channels converted; MNIST: made 28x28 grayscale, white on black, centred by mass). Per session: 2 in flight, 120 a minute (429 RATE_LIMITED)`,
      access: 'read',
      query: roundQuerySchema,
      body: predictRequestSchema,
      rawBodyTypes: ['image/png', 'image/jpeg'],
      response: { status: 200, description: 'Predictions', schema: predictionOut },
    },
    async ({ principal, query, body }, req, res) => {
      const { round } = query as z.infer<typeof roundQuerySchema>;
      const release = predictLimiter.acquire(
        principal.kind === 'user' ? `session:${principal.session.id}` : principal.kind,
      );
      try {
        let request: PredictBody;
        if (Buffer.isBuffer(req.body)) {
          const claimed: ImageKind = req.is('image/png') ? 'png' : 'jpeg';
          const actual = sniffImage(req.body);
          if (actual === null || actual !== claimed) {
            throw new TesseraError(
              ErrorCode.UNSUPPORTED_MEDIA_TYPE,
              `the body is not a ${claimed.toUpperCase()} image (checked by its first bytes)`,
              { claimed, actual },
            );
          }
          request = { kind: 'image', bytes: new Uint8Array(req.body), imageKind: actual };
        } else if (req.is('application/json')) {
          request = { kind: 'json', body: body as z.infer<typeof predictRequestSchema> };
        } else {
          throw new TesseraError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            "send application/json (the task's input), or image/png or image/jpeg for an image task",
            { contentType: req.get('content-type') ?? null },
          );
        }
        res.json(await models.predict(String(req.params['id']), round, request));
      } finally {
        release();
      }
    },
  );
  route(
    {
      method: 'get',
      path: '/runs/:id/model/model.json',
      summary:
        "The run's global model (latest, or ?round=N) in tfjs format: load with tf.loadLayersModel(url)",
      access: 'read',
      query: roundQuerySchema,
      response: { status: 200, description: 'tfjs model.json (layers-model)' },
    },
    async ({ query }, req, res) => {
      const { round } = query as z.infer<typeof roundQuerySchema>;
      const artifacts = await models.artifacts(String(req.params['id']), round);
      res.setHeader('x-tessera-round', String(artifacts.round));
      res.setHeader('x-tessera-sha256', artifacts.sha256);
      res.json(artifacts.modelJson);
    },
  );
  route(
    {
      method: 'get',
      path: '/runs/:id/model/weights.bin',
      summary: 'The weights file that model.json refers to (float32, manifest order)',
      access: 'read',
      query: roundQuerySchema,
      response: {
        status: 200,
        description: 'Weights',
        contentType: 'application/octet-stream',
      },
    },
    async ({ query }, req, res) => {
      const { round } = query as z.infer<typeof roundQuerySchema>;
      const artifacts = await models.artifacts(String(req.params['id']), round);
      res.setHeader('content-type', 'application/octet-stream');
      res.setHeader('x-tessera-round', String(artifacts.round));
      res.end(Buffer.from(artifacts.weightsBin));
    },
  );

  registerResearchRoutes(route, db);
  registerTokenRoutes(route, db);
  registerTaskRoutes(route, db, { maxParams: maxTaskParams, maxHoldoutBytes });

  const openApi = buildOpenApi(specs);
  const api = express.Router();
  // Images for predict arrive raw; their size limit answers 413 before anything is decoded.
  api.use(
    '/runs/:id/predict',
    express.raw({ type: ['image/png', 'image/jpeg'], limit: MAX_IMAGE_BYTES }),
  );
  api.get('/openapi.json', (_req, res) => {
    res.json(openApi);
  });
  api.use(router);
  app.use('/api', api);
  app.use('/api', (_req, _res, next) =>
    next(new TesseraError(ErrorCode.NOT_FOUND, 'no such API route')),
  );

  const consoleDir = options.consoleDir === undefined ? defaultConsoleDir : options.consoleDir;
  if (consoleDir !== null && existsSync(consoleDir)) app.use(serveConsole(consoleDir));

  app.use((cause: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const error = toApiError(cause);
    const status = HTTP_STATUS[error.code] ?? 500;
    if (status >= 500)
      coordinator.logger.error('API error', { code: error.code, message: error.message });
    if (error.code === ErrorCode.RATE_LIMITED || error.code === ErrorCode.UNAVAILABLE) {
      res.setHeader('retry-after', String(error.data?.['retryAfterSeconds'] ?? 60));
    }
    res.status(status).json({ error: error.toWire() });
  });
  return app;
}
