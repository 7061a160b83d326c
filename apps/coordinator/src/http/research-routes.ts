import type { Database } from '@tessera/db';
import {
  readRoundsTable,
  readUpdatesTable,
  toCsv,
  toJsonLines,
  verifyRun,
} from '@tessera/research';
import { z } from 'zod';
import type { defineRoutes } from './routes.js';

type Route = ReturnType<typeof defineRoutes>['route'];

const exportQuerySchema = z.object({ format: z.enum(['csv', 'jsonl']).default('csv') });

/**
 * Researchers' read-only routes: a run's rounds and per-client updates as CSV or JSON Lines
 * (the columns of docs/export.md, the same files `tessera export` writes), and a replay check
 * of every recorded checkpoint.
 */
export function registerResearchRoutes(route: Route, db: Database): void {
  for (const table of ['rounds', 'updates'] as const) {
    route(
      {
        method: 'get',
        path: `/runs/:id/export/${table}`,
        summary:
          table === 'rounds'
            ? "The run's rounds, one row each (?format=csv|jsonl; columns in docs/export.md)"
            : "The run's client updates, one row each, by round then arrival (?format=csv|jsonl)",
        access: 'read',
        query: exportQuerySchema,
        response: { status: 200, description: 'CSV or JSON Lines', contentType: 'text/csv' },
      },
      async ({ query }, req, res) => {
        const { format } = query as z.infer<typeof exportQuerySchema>;
        const runId = String(req.params['id']);
        // Only the table asked for: the rounds need no update rows, the updates no rounds.
        const rows =
          table === 'rounds'
            ? await readRoundsTable(db, runId)
            : await readUpdatesTable(db, await db.runs.get(runId));
        const body = format === 'csv' ? toCsv(rows) : toJsonLines(rows);
        res.setHeader(
          'content-type',
          format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8',
        );
        res.setHeader('content-disposition', `attachment; filename="${runId}-${table}.${format}"`);
        res.send(body);
      },
    );
  }
  route(
    {
      method: 'get',
      path: '/runs/:id/verify',
      summary:
        'Replays the run from its kept updates and compares every checkpoint sha256 (bit-identical or not)',
      access: 'read',
      response: { status: 200, description: 'Replay report: per-round checks' },
    },
    async (_context, req, res) => {
      const report = await verifyRun(db, String(req.params['id']));
      res.json({
        runId: report.run.id,
        strategy: report.run.config.strategy,
        identical: report.identical,
        unchecked: report.unchecked,
        checks: report.checks,
      });
    },
  );
}
