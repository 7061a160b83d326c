import {
  API_TOKEN_MAX_DAYS,
  API_TOKEN_NAME_MAX_LENGTH,
  type ApiTokenRecord,
  type Database,
  type UserRecord,
} from '@tessera/db';
import { ErrorCode, TesseraError, text } from '@tessera/protocol';
import { z } from 'zod';
import type { Principal } from './auth.js';
import type { defineRoutes } from './routes.js';

type Route = ReturnType<typeof defineRoutes>['route'];

export const createApiTokenSchema = z.strictObject({
  name: text()
    .trim()
    .min(1, 'give the token a name (e.g. "laptop" or "CI")')
    .max(API_TOKEN_NAME_MAX_LENGTH),
  expiresInDays: z
    .number()
    .int('a whole number of days')
    .min(1, 'at least 1 day')
    .max(API_TOKEN_MAX_DAYS, `at most ${API_TOKEN_MAX_DAYS} days`)
    .nullable()
    .optional()
    .describe('Days until the token stops working; left out or null: until it is revoked'),
});

const apiTokenOut = z.object({
  id: z.string(),
  name: z.string(),
  scope: z.literal('read'),
  createdAt: z.string(),
  expiresAt: z.string().nullable(),
  lastUsedAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
});

function publicToken(record: ApiTokenRecord) {
  const { userId: _owner, ...rest } = record;
  return rest;
}

/**
 * Whose tokens these are: a console user's own (their session, or one of their tokens). The
 * admin bearer token and an open coordinator have no user to own one.
 */
function owner(principal: Principal): UserRecord {
  if (principal.kind === 'user' || principal.kind === 'apiToken') return principal.user;
  throw new TesseraError(
    ErrorCode.FORBIDDEN,
    'API tokens belong to console users: log in to the console (a session, not the admin token) to manage yours',
    { reason: 'no-user' },
  );
}

/**
 * A console user's own API tokens: create (the token is answered once; only its sha256 is
 * stored), list and revoke. Creating and revoking are writes, so a token cannot mint or revoke
 * tokens itself (auth.ts refuses it before this runs).
 */
export function registerTokenRoutes(route: Route, db: Database): void {
  route(
    {
      method: 'post',
      path: '/me/tokens',
      summary:
        'Create an API token for yourself (Authorization: Bearer): read scope, the researcher role. Answered once; only its sha256 is kept',
      access: 'read',
      body: createApiTokenSchema,
      response: {
        status: 201,
        description: 'Created: `token` is shown here only',
        schema: z.object({ token: z.string(), apiToken: apiTokenOut }),
      },
    },
    async ({ principal, body }, _req, res) => {
      const user = owner(principal);
      const { name, expiresInDays } = body as z.infer<typeof createApiTokenSchema>;
      const { token, record } = await db.apiTokens.create({
        userId: user.id,
        name,
        expiresInDays: expiresInDays ?? null,
      });
      res.status(201).json({ token, apiToken: publicToken(record) });
    },
  );
  route(
    {
      method: 'get',
      path: '/me/tokens',
      summary: 'Your API tokens, newest first (revoked and expired ones included; never the token)',
      access: 'read',
      response: { status: 200, description: 'Your tokens', schema: z.array(apiTokenOut) },
    },
    async ({ principal }, _req, res) => {
      res.json((await db.apiTokens.list(owner(principal).id)).map(publicToken));
    },
  );
  route(
    {
      method: 'post',
      path: '/me/tokens/:tokenId/revoke',
      summary: "Revoke one of your API tokens (another user's answers 404)",
      access: 'read',
      response: { status: 200, description: 'Revoked', schema: apiTokenOut },
    },
    async ({ principal }, req, res) => {
      const record = await db.apiTokens.revoke(owner(principal).id, String(req.params['tokenId']));
      res.json(publicToken(record));
    },
  );
}
