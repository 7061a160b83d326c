import { PROTOCOL_VERSION } from '@tessera/protocol';
import { z } from 'zod';
import { CSRF_HEADER, SESSION_COOKIE } from './auth.js';
import type { RouteSpec } from './routes.js';

const errorSchema = z.object({
  error: z.object({
    code: z.string().describe('An ErrorCode, e.g. INVALID_ARGUMENT, UNAUTHORIZED, FORBIDDEN'),
    message: z.string(),
    data: z
      .record(z.string(), z.unknown())
      .optional()
      .describe('For INVALID_ARGUMENT: {field, issues: [{field, message}]}'),
  }),
});

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): Record<string, unknown> {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' });
  return rest;
}

/**
 * The OpenAPI 3.1 document of the REST API, built from the same route table and zod schemas
 * that register and validate the routes, so the document cannot drift from the code.
 */
export function buildOpenApi(specs: readonly RouteSpec[]): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const spec of specs) {
    const path = `/api${spec.path.replace(/:([A-Za-z][A-Za-z0-9]*)/g, '{$1}')}`;
    const parameters: unknown[] = [...spec.path.matchAll(/:([A-Za-z][A-Za-z0-9]*)/g)].map(
      (match) => ({
        name: match[1],
        in: 'path',
        required: true,
        schema: { type: 'string' },
      }),
    );
    if (spec.query) {
      const query = jsonSchema(spec.query, 'input') as {
        properties?: Record<string, unknown>;
        required?: string[];
      };
      for (const [name, schema] of Object.entries(query.properties ?? {})) {
        parameters.push({
          name,
          in: 'query',
          required: query.required?.includes(name) ?? false,
          schema,
        });
      }
    }
    const content: Record<string, unknown> = {};
    if (spec.body) content['application/json'] = { schema: jsonSchema(spec.body, 'input') };
    for (const type of spec.rawBodyTypes ?? []) {
      content[type] = { schema: { type: 'string', format: 'binary' } };
    }
    const responses: Record<string, unknown> = {
      [spec.response.status]: {
        description: spec.response.description,
        ...(spec.response.schema || spec.response.contentType
          ? {
              content: {
                [spec.response.contentType ?? 'application/json']: {
                  schema: spec.response.schema
                    ? jsonSchema(spec.response.schema, 'output')
                    : { type: 'string', format: 'binary' },
                },
              },
            }
          : {}),
      },
      default: {
        description: 'Error',
        content: { 'application/json': { schema: jsonSchema(errorSchema, 'output') } },
      },
    };
    paths[path] ??= {};
    (paths[path] as Record<string, unknown>)[spec.method] = {
      summary: spec.summary,
      'x-tessera-access': spec.access,
      ...(spec.access === 'public' ? { security: [] } : {}),
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(Object.keys(content).length > 0 ? { requestBody: { required: true, content } } : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Tessera coordinator API',
      version: `protocol ${PROTOCOL_VERSION}`,
      description: [
        'The REST API of the admin console. Every route except login needs a session cookie',
        `(\`${SESSION_COOKIE}\`, from POST /api/auth/login), the admin bearer token, or an API`,
        'token (`Authorization: Bearer tsa_...`, from POST /api/me/tokens). With a session,',
        `state-changing requests (POST, PUT) also need the session's CSRF token in the`,
        `\`${CSRF_HEADER}\` header (returned by login and GET /api/auth/session).`,
        '`x-tessera-access` says who may call a route: public, read (admins and researchers) or',
        'admin (researchers get 403). An API token acts as a researcher with the read scope: it',
        'may call GET routes only, and every POST or PUT answers 403 FORBIDDEN with',
        '`data.reason: "read-only-token"`. Errors are `{error: {code, message, data}}`.',
      ].join(' '),
    },
    components: {
      securitySchemes: {
        session: { type: 'apiKey', in: 'cookie', name: SESSION_COOKIE },
        adminToken: { type: 'http', scheme: 'bearer' },
        apiToken: {
          type: 'http',
          scheme: 'bearer',
          description: 'A read-scoped API token (tsa_...): GET routes only',
        },
      },
    },
    security: [{ session: [] }, { adminToken: [] }, { apiToken: [] }],
    paths,
  };
}
