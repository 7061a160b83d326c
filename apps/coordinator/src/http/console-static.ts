import { join } from 'node:path';
import express, { type Router } from 'express';

/**
 * Serves the console's built files (apps/console/dist) at `/`. Hashed assets are cached for
 * long; index.html never is, and every other GET that accepts HTML gets index.html, so the
 * single-page app's own routes (/runs/:id ...) survive a reload.
 */
export function serveConsole(dir: string): Router {
  const router = express.Router();
  router.use(
    '/assets',
    express.static(join(dir, 'assets'), { immutable: true, maxAge: '365d', fallthrough: false }),
  );
  router.use(express.static(dir, { index: false, maxAge: 0 }));
  // The console's own routes (src/main.tsx); anything else (the API, Socket.IO, other apps
  // mounted beside the console) is not the console's to answer.
  router.get(
    /^\/(?:(?:runs|federations|tasks|clients|tokens|users)(?:\/.*)?)?$/,
    (req, res, next) => {
      if (!req.accepts('html')) {
        next();
        return;
      }
      res.setHeader('cache-control', 'no-store');
      // The console loads only its own scripts and talks only to this origin.
      res.setHeader(
        'content-security-policy',
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:; frame-ancestors 'none'",
      );
      res.sendFile(join(dir, 'index.html'));
    },
  );
  return router;
}
