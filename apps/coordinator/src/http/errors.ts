import { isTransientDatabaseError } from '@tessera/db';
import { ErrorCode, TesseraError } from '@tessera/protocol';

/** The HTTP status of each error code the REST API answers with; anything else is a 500. */
export const HTTP_STATUS: Partial<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: 400,
  MALFORMED_FRAME: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RATE_LIMITED: 429,
  UNAVAILABLE: 503,
};

/** What Express's body parsers and static files throw: an http-errors object. */
interface HttpLibraryError {
  type?: unknown;
  status?: unknown;
  message?: unknown;
}

/**
 * Any error that reaches the API's error handler as a TesseraError. The body parser's and
 * static files' own client errors (bad JSON, bad encodings, a path refused by `send`) keep
 * their 4xx meaning, so that only a real fault of the coordinator is ever a 5xx.
 */
export function toApiError(cause: unknown): TesseraError {
  if (cause instanceof TesseraError && cause.code !== ErrorCode.INTERNAL) return cause;
  // REST calls are not retried: a database outage is the caller's to retry, so say so (503)
  // instead of a 500 that reads like a bug.
  if (
    isTransientDatabaseError(cause) ||
    isTransientDatabaseError((cause as Error | undefined)?.cause)
  ) {
    return new TesseraError(
      ErrorCode.UNAVAILABLE,
      'the database is unavailable; retry in a few seconds',
      { retryAfterSeconds: 5 },
    );
  }
  if (cause instanceof TesseraError) return cause;
  const error = (typeof cause === 'object' && cause !== null ? cause : {}) as HttpLibraryError;
  switch (error.type) {
    case 'entity.parse.failed':
      return new TesseraError(ErrorCode.INVALID_ARGUMENT, 'request body is not valid JSON', {
        field: '(body)',
      });
    case 'entity.too.large':
      return new TesseraError(ErrorCode.PAYLOAD_TOO_LARGE, 'request body is too large', {
        field: '(body)',
      });
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new TesseraError(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        'unsupported request body encoding or charset',
        { field: '(body)' },
      );
  }
  const status = typeof error.status === 'number' ? error.status : 500;
  if (status === 403 || status === 404) {
    // express.static: a missing file, or a path `send` refuses to serve.
    return new TesseraError(ErrorCode.NOT_FOUND, 'no such file');
  }
  if (status >= 400 && status < 500) {
    return new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `bad request: ${typeof error.message === 'string' ? error.message : 'refused'}`,
    );
  }
  return TesseraError.from(cause);
}
