import { ErrorCode, fieldIssues, TesseraError } from '@tessera/protocol';
import type { NextFunction, Request, Response, Router } from 'express';
import type { z } from 'zod';
import {
  type AuthOptions,
  CSRF_HEADER,
  checkCsrf,
  type Principal,
  requireAdmin,
  resolvePrincipal,
} from './auth.js';

/**
 * Who may call a route. `public`: anyone (login). `read`: any signed-in role (admins,
 * researchers, the service token). `admin`: admins only; researchers get 403.
 */
export type Access = 'public' | 'read' | 'admin';

/** One REST route, described once: registered on the router and published in OpenAPI. */
export interface RouteSpec {
  method: 'get' | 'post' | 'put';
  /** Express path under /api, e.g. `/runs/:id`. */
  path: string;
  summary: string;
  access: Access;
  /** The JSON body's schema: the request is validated with it, and OpenAPI shows it. */
  body?: z.ZodType;
  query?: z.ZodType;
  /** Extra request body types (predict takes images). */
  rawBodyTypes?: string[];
  /** Success status and a short description of the response (and its schema where useful). */
  response: { status: number; description: string; schema?: z.ZodType; contentType?: string };
  /** What the admin role guards, in words for the 403 message (admin routes). */
  action?: string;
}

export interface RouteContext {
  principal: Principal;
  body: unknown;
  query: unknown;
}

/** Validates with a schema; failures name every offending field (`error.data.issues`). */
export function parseWith<S extends z.ZodType>(
  schema: S,
  value: unknown,
  where = 'body',
): z.infer<S> {
  const result = schema.safeParse(value ?? {});
  if (result.success) return result.data;
  const issues = fieldIssues(result.error);
  const first = issues[0] ?? { field: '(body)', message: 'invalid' };
  throw new TesseraError(
    ErrorCode.INVALID_ARGUMENT,
    `${where === 'query' ? 'query ' : ''}${first.field}: ${first.message}`,
    { field: first.field, issues },
  );
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Registers routes with one guard in front of each: resolve the caller (401), check the CSRF
 * token of a session on state-changing methods and the role (403), then validate the body and
 * query (400). The order means a stranger learns nothing about valid input.
 */
export function defineRoutes(router: Router, auth: AuthOptions) {
  const specs: RouteSpec[] = [];
  const route = (
    spec: RouteSpec,
    handler: (context: RouteContext, req: Request, res: Response) => Promise<void> | void,
  ) => {
    specs.push(spec);
    router[spec.method](spec.path, async (req: Request, res: Response, next: NextFunction) => {
      try {
        let principal: Principal = { kind: 'open', role: 'admin' };
        if (spec.access !== 'public') {
          principal = await resolvePrincipal(auth, {
            authorization: req.headers.authorization,
            cookie: req.headers.cookie,
          });
          if (!SAFE_METHODS.has(req.method)) checkCsrf(principal, req.get(CSRF_HEADER));
          if (spec.access === 'admin') requireAdmin(principal, spec.action ?? spec.summary);
        }
        // A route that also takes raw uploads validates JSON bodies only; the handler
        // answers other types itself (415).
        const jsonBody =
          !Buffer.isBuffer(req.body) && (!spec.rawBodyTypes || req.is('application/json'));
        const body = spec.body && jsonBody ? parseWith(spec.body, req.body) : req.body;
        const query = spec.query ? parseWith(spec.query, req.query, 'query') : req.query;
        await handler({ principal, body, query }, req, res);
      } catch (error) {
        next(error);
      }
    });
  };
  return { route, specs };
}
