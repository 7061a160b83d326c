import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { NextFunction, Request, Response } from 'express';

/**
 * Refuses request paths that no route or static folder may see: bad percent-encoding, a NUL
 * byte, or a `..` segment once decoded (`/assets/..%2f..%2fpackage.json`). Mounted before
 * everything, so the console's and the web client's static files, and the API's parameters,
 * only ever get normalised paths (400 INVALID_ARGUMENT, never a 5xx from deeper down).
 */
export function refuseUnsafePaths(req: Request, _res: Response, next: NextFunction): void {
  const raw = req.path;
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    next(
      new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        'the request path is not valid percent-encoding',
        {
          field: '(path)',
        },
      ),
    );
    return;
  }
  if (decoded.includes('\0')) {
    next(
      new TesseraError(ErrorCode.INVALID_ARGUMENT, 'the request path contains a NUL byte', {
        field: '(path)',
      }),
    );
    return;
  }
  if (decoded.split(/[/\\]/).includes('..')) {
    next(
      new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        'the request path may not contain ".." segments',
        {
          field: '(path)',
        },
      ),
    );
    return;
  }
  next();
}
