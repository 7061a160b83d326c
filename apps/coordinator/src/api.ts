import { timingSafeEqual } from 'node:crypto';
import { STRATEGY_NAMES } from '@tessera/aggregation';
import { MODEL_NAMES } from '@tessera/ml';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import express, { type NextFunction, type Request, type Response } from 'express';
import { z } from 'zod';
import type { Coordinator } from './coordinator.js';

const positiveInt = z.number().int().positive();

/** A run as an admin creates it; defaults are the FedAvg paper's MNIST settings where it has them. */
export const createRunSchema = z
  .object({
    federationId: z.string().min(1),
    name: z.string().max(200).optional(),
    model: z.enum(MODEL_NAMES as unknown as [string, ...string[]]),
    strategy: z.string().default('fedavg'),
    strategyOptions: z.record(z.string(), z.unknown()).default({}),
    rounds: positiveInt.max(100_000),
    clientsPerRound: positiveInt.nullable().default(null),
    fractionFit: z.number().gt(0).max(1).nullable().default(null),
    minClients: positiveInt.default(1),
    roundDeadlineMs: positiveInt.max(24 * 3600_000).default(600_000),
    localEpochs: positiveInt.max(1000).default(1),
    batchSize: positiveInt.max(65_536).default(10),
    learningRate: z.number().positive().max(100).default(0.05),
    seed: z
      .number()
      .int()
      .min(0)
      .max(2 ** 31 - 1)
      .default(0),
    data: z.record(z.string(), z.unknown()).default({ dataset: 'mnist' }),
  })
  .refine((run) => STRATEGY_NAMES.includes(run.strategy), {
    message: `unknown strategy; available: ${STRATEGY_NAMES.join(', ')}`,
    path: ['strategy'],
  })
  .refine((run) => run.clientsPerRound === null || run.clientsPerRound >= run.minClients, {
    message: 'clientsPerRound must be at least minClients',
    path: ['clientsPerRound'],
  });
export type CreateRunRequest = z.infer<typeof createRunSchema>;

const createFederationSchema = z.object({
  name: z.string().min(1).max(200),
  description: z.string().max(2000).optional(),
});
const issueTokenSchema = z.object({
  organisation: z.string().min(1).max(200),
  label: z.string().max(200).optional(),
});

function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  const result = schema.safeParse(body ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = issue?.path.join('.') || '(body)';
  throw new TesseraError(ErrorCode.INVALID_ARGUMENT, `${field}: ${issue?.message ?? 'invalid'}`, {
    field,
  });
}

const httpStatus: Partial<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: 400,
  MALFORMED_FRAME: 400,
  UNAUTHORIZED: 401,
  NOT_FOUND: 404,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNAVAILABLE: 503,
};

function bearerMatches(header: string | undefined, token: string): boolean {
  const given = Buffer.from(header?.startsWith('Bearer ') ? header.slice(7) : '');
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * The REST API (JSON). Errors have the wire shape `{ error: { code, message, data } }` with an
 * HTTP status derived from the code.
 */
export function createApi(coordinator: Coordinator, options: { adminToken: string | null }) {
  const { db } = coordinator;
  const app = express();
  app.disable('x-powered-by');
  app.use(express.json({ limit: '1mb' }));

  app.get('/healthz', (_req, res) => {
    res.json({ ok: true, database: db.kind, connectedClients: coordinator.registry.list().length });
  });

  const api = express.Router();
  api.use((req, _res, next) => {
    if (
      options.adminToken !== null &&
      !bearerMatches(req.headers.authorization, options.adminToken)
    ) {
      throw new TesseraError(
        ErrorCode.UNAUTHORIZED,
        'missing or wrong admin token (Authorization: Bearer ...)',
      );
    }
    next();
  });

  api.post('/federations', async (req, res) => {
    res.status(201).json(await db.federations.create(parseBody(createFederationSchema, req.body)));
  });
  api.get('/federations', async (_req, res) => {
    res.json(await db.federations.list());
  });
  api.get('/federations/:id', async (req, res) => {
    res.json(await db.federations.get(req.params.id));
  });
  api.post('/federations/:id/clients', async (req, res) => {
    const body = parseBody(issueTokenSchema, req.body);
    await db.federations.get(req.params.id);
    res.status(201).json(await db.clients.issueToken({ federationId: req.params.id, ...body }));
  });
  api.get('/federations/:id/clients', async (req, res) => {
    res.json(await db.clients.list(req.params.id));
  });
  api.post('/clients/:id/revoke', async (req, res) => {
    await db.clients.revoke(req.params.id);
    res.status(204).end();
  });
  api.get('/connected-clients', (_req, res) => {
    res.json(coordinator.registry.list().map(({ connectionId: _c, ...session }) => session));
  });

  api.post('/runs', async (req, res) => {
    const { federationId, name, ...config } = parseBody(createRunSchema, req.body);
    await db.federations.get(federationId);
    res.status(201).json(await db.runs.create({ federationId, ...(name ? { name } : {}), config }));
  });
  api.get('/runs', async (req, res) => {
    const federationId =
      typeof req.query['federationId'] === 'string' ? req.query['federationId'] : undefined;
    res.json(await db.runs.list(federationId ? { federationId } : {}));
  });
  api.get('/runs/:id', async (req, res) => {
    res.json(await db.runs.get(req.params.id));
  });
  api.post('/runs/:id/start', async (req, res) => {
    res.status(202).json(await coordinator.startRun(req.params.id));
  });
  api.post('/runs/:id/stop', async (req, res) => {
    await coordinator.stopRun(req.params.id);
    res.json(await db.runs.get(req.params.id));
  });
  api.get('/runs/:id/rounds', async (req, res) => {
    await db.runs.get(req.params.id);
    res.json(await db.rounds.list(req.params.id));
  });

  app.use('/api', api);
  app.use('/api', (_req, _res, next) =>
    next(new TesseraError(ErrorCode.NOT_FOUND, 'no such API route')),
  );
  app.use((cause: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const parseError = cause as { type?: string; status?: number };
    const error =
      parseError.type === 'entity.parse.failed'
        ? new TesseraError(ErrorCode.INVALID_ARGUMENT, 'request body is not valid JSON')
        : parseError.type === 'entity.too.large'
          ? new TesseraError(ErrorCode.PAYLOAD_TOO_LARGE, 'request body is too large')
          : TesseraError.from(cause);
    const status = httpStatus[error.code] ?? 500;
    if (status >= 500)
      coordinator.logger.error('API error', { code: error.code, message: error.message });
    res.status(status).json({ error: error.toWire() });
  });
  return app;
}
