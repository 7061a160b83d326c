import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import express, { type Express } from 'express';

/** Where the coordinator serves the browser client (apps/web-client). */
export const WEB_CLIENT_PATH = '/join';

/**
 * The web client's built files (apps/web-client/dist), found through the @tessera/web-client
 * package, or null when it is not installed.
 */
export function webClientDist(): string | null {
  try {
    const packageJson = createRequire(import.meta.url).resolve('@tessera/web-client/package.json');
    return path.join(path.dirname(packageJson), 'dist');
  } catch {
    return null;
  }
}

/**
 * Serves the browser client at /join/: organisations without Node open
 * `<coordinator>/join/#token=...` and train from the page. When it has not been built, /join/
 * answers 404 with the command that builds it rather than an empty page.
 */
export function mountWebClient(app: Express, distDirectory: string | null = webClientDist()): void {
  // The page loads its scripts by relative URLs, which need the trailing slash.
  app.get(WEB_CLIENT_PATH, (req, res, next) => {
    if (req.originalUrl.split('?')[0] !== WEB_CLIENT_PATH) return next();
    const query = req.originalUrl.slice(WEB_CLIENT_PATH.length);
    res.redirect(301, `${WEB_CLIENT_PATH}/${query}`);
  });
  if (distDirectory !== null) {
    app.use(WEB_CLIENT_PATH, express.static(distDirectory, { index: 'index.html', maxAge: 0 }));
  }
  app.use(WEB_CLIENT_PATH, (_req, res) => {
    const built = distDirectory !== null && existsSync(path.join(distDirectory, 'index.html'));
    res
      .status(404)
      .type('text/plain')
      .send(
        built
          ? 'Not found.\n'
          : 'The web client is not built on this coordinator. Build it with `npm run build -w @tessera/web-client` (or `npm run build`).\n',
      );
  });
}
