import type { Database } from '@tessera/db';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import {
  readRoundsTable,
  readUpdatesTable,
  type Table,
  toCsv,
  toJsonLines,
  verifyRun,
} from '@tessera/research';
import type { Response } from 'express';
import { z } from 'zod';
import { type defineRoutes, parseWith } from './routes.js';

type Route = ReturnType<typeof defineRoutes>['route'];

const exportQuerySchema = z.object({
  format: z.enum(['csv', 'jsonl']).default('csv'),
  round: z.coerce
    .number()
    .int()
    .min(1)
    .optional()
    .describe("Only this round's rows (the console's round page)"),
});

/** A `:round` path parameter: 0 is the initial checkpoint where `min` allows it. */
function roundParam(value: unknown, min: 0 | 1): number {
  return parseWith(z.object({ round: z.coerce.number().int().min(min) }), { round: value }, 'query')
    .round;
}

/** Only `round`'s rows; NOT_FOUND when the run has no such committed round. */
async function onlyRound(db: Database, runId: string, table: Table, round: number): Promise<Table> {
  await db.rounds.get(runId, round);
  return { columns: table.columns, rows: table.rows.filter((row) => row['round'] === round) };
}

/**
 * Writes chunks one by one, waiting for the socket to drain between them, so a slow reader
 * holds the server to what it has already read rather than a second copy of everything.
 * Stops quietly when the reader goes away.
 */
async function writeChunks(res: Response, chunks: readonly Uint8Array[]): Promise<void> {
  for (const chunk of chunks) {
    if (res.destroyed) return;
    if (!res.write(chunk)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.once('drain', done);
        res.once('close', done);
      });
    }
  }
  res.end();
}

/**
 * A round's blocks of bytes (kept updates, or their Δc_i), all of one size, back to back in
 * the order given: `x-tessera-updates` of them, each `x-tessera-update-bytes` long, with
 * `headers` besides once the blocks are known to fit.
 */
async function sendBackToBack(
  res: Response,
  blocks: readonly Uint8Array[],
  of: { what: string; runId: string; round: number },
  headers: Record<string, string> = {},
): Promise<void> {
  const { what, runId, round } = of;
  if (new Set(blocks.map((block) => block.byteLength)).size > 1) {
    throw new TesseraError(
      ErrorCode.INTERNAL,
      `round ${round} of run ${runId} kept ${what} of different sizes`,
      { runId, round },
    );
  }
  const each = blocks[0]?.byteLength ?? 0;
  res.setHeader('content-type', 'application/octet-stream');
  res.setHeader('content-length', String(each * blocks.length));
  res.setHeader('x-tessera-updates', String(blocks.length));
  res.setHeader('x-tessera-update-bytes', String(each));
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  await writeChunks(res, blocks);
}

/**
 * Researchers' read-only routes: a run's rounds and per-client updates as CSV or JSON Lines
 * (the columns of docs/export.md, the same files `tessera export` writes), the records and
 * bytes the CLI's API mode builds those files and its replay check from (update records,
 * checkpoint hashes, weights and strategy states, a round's kept update bytes and SCAFFOLD
 * control-variate changes), and a server-side replay check.
 */
export function registerResearchRoutes(route: Route, db: Database): void {
  for (const table of ['rounds', 'updates'] as const) {
    route(
      {
        method: 'get',
        path: `/runs/:id/export/${table}`,
        summary:
          table === 'rounds'
            ? "The run's rounds, one row each (?format=csv|jsonl, ?round=N for one; columns in docs/export.md)"
            : "The run's client updates, one row each, by round then arrival (?format=csv|jsonl, ?round=N for one round's)",
        access: 'read',
        query: exportQuerySchema,
        response: { status: 200, description: 'CSV or JSON Lines', contentType: 'text/csv' },
      },
      async ({ query }, req, res) => {
        const { format, round } = query as z.infer<typeof exportQuerySchema>;
        const runId = String(req.params['id']);
        // Only the table asked for: the rounds need no update rows, the updates no rounds.
        let rows =
          table === 'rounds'
            ? await readRoundsTable(db, runId)
            : await readUpdatesTable(db, await db.runs.get(runId));
        if (round !== undefined) rows = await onlyRound(db, runId, rows, round);
        const body = format === 'csv' ? toCsv(rows) : toJsonLines(rows);
        res.setHeader(
          'content-type',
          format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8',
        );
        const name = `${runId}-${round === undefined ? '' : `round-${round}-`}${table}.${format}`;
        res.setHeader('content-disposition', `attachment; filename="${name}"`);
        res.send(body);
      },
    );
  }
  route(
    {
      method: 'get',
      path: '/runs/:id/updates',
      summary:
        "The run's client update records (JSON), by round then arrival: sizes, sha256, metrics, whether the bytes were kept; never the bytes",
      access: 'read',
      response: { status: 200, description: 'Update records' },
    },
    async (_context, req, res) => {
      res.json(await db.rounds.allUpdates(String(req.params['id'])));
    },
  );
  route(
    {
      method: 'get',
      path: '/runs/:id/checkpoints',
      summary: "The run's checkpoints: round (0 is the initial model), sha256 and parameter count",
      access: 'read',
      response: {
        status: 200,
        description: 'Checkpoints',
        schema: z.array(
          z.object({ round: z.number().int(), sha256: z.string(), paramCount: z.number().int() }),
        ),
      },
    },
    async (_context, req, res) => {
      res.json(await db.rounds.checkpointHashes(String(req.params['id'])));
    },
  );
  route(
    {
      method: 'get',
      path: '/runs/:id/checkpoints/:round/weights',
      summary:
        "A checkpoint's global weights as stored: little-endian float32, the model's parameter order (x-tessera-sha256 is their sha256)",
      access: 'read',
      response: { status: 200, description: 'Weights', contentType: 'application/octet-stream' },
    },
    async (_context, req, res) => {
      const runId = String(req.params['id']);
      const round = roundParam(req.params['round'], 0);
      const checkpoint = await db.rounds.checkpoint(runId, round);
      res.setHeader('content-type', 'application/octet-stream');
      res.setHeader(
        'content-disposition',
        `attachment; filename="${runId}-checkpoint-${round}.bin"`,
      );
      res.setHeader('x-tessera-sha256', checkpoint.sha256);
      res.setHeader('x-tessera-param-count', String(checkpoint.paramCount));
      res.end(
        Buffer.from(
          checkpoint.weights.buffer,
          checkpoint.weights.byteOffset,
          checkpoint.weights.byteLength,
        ),
      );
    },
  );
  route(
    {
      method: 'get',
      path: '/runs/:id/rounds/:round/updates/weights',
      summary:
        "A round's kept client updates, back to back in arrival order: each little-endian float32, x-tessera-update-bytes long (x-tessera-updates of them; their records, sha256 included, are the round's updates where kept is true). 404 when the run did not keep them",
      access: 'read',
      response: {
        status: 200,
        description: 'Update bytes',
        contentType: 'application/octet-stream',
      },
    },
    async (_context, req, res) => {
      const runId = String(req.params['id']);
      const round = roundParam(req.params['round'], 1);
      // Each update was checked against its recorded sha256 as it was read.
      const kept = await db.rounds.updatesWithWeights(runId, round);
      await sendBackToBack(
        res,
        kept.map((update) => update.weights),
        { what: 'updates', runId, round },
      );
    },
  );
  route(
    {
      method: 'get',
      path: '/runs/:id/rounds/:round/updates/control-deltas',
      summary:
        "A SCAFFOLD round's kept control-variate changes Δc_i, back to back in arrival order: each little-endian float32, x-tessera-update-bytes long, one for each update x-tessera-arrival-indexes names (comma-separated; the sha256 of each is its update record's controlDeltaSha256). 404 when the round kept none",
      access: 'read',
      response: {
        status: 200,
        description: 'Control-variate change bytes',
        contentType: 'application/octet-stream',
      },
    },
    async (_context, req, res) => {
      const runId = String(req.params['id']);
      const round = roundParam(req.params['round'], 1);
      // Each Δc_i was checked against its recorded sha256 as it was read.
      const deltas = await db.rounds.controlDeltas(runId, round);
      if (deltas.length === 0) {
        throw new TesseraError(
          ErrorCode.NOT_FOUND,
          `round ${round} of run ${runId} kept no control-variate changes: only a scaffold run that keeps updates records them`,
          { runId, round },
        );
      }
      await sendBackToBack(
        res,
        deltas.map((delta) => delta.controlDelta),
        { what: 'control-variate changes', runId, round },
        { 'x-tessera-arrival-indexes': deltas.map((delta) => delta.arrivalIndex).join(',') },
      );
    },
  );
  route(
    {
      method: 'get',
      path: '/runs/:id/checkpoints/:round/strategy-state',
      summary:
        "The strategy state committed with a checkpoint (SCAFFOLD's c, FedOpt's moments, ...), as stored: the bytes of encodeStrategyState (docs/research.md). 404 when none was stored (a strategy without state)",
      access: 'read',
      response: {
        status: 200,
        description: 'Strategy state bytes',
        contentType: 'application/octet-stream',
      },
    },
    async (_context, req, res) => {
      const runId = String(req.params['id']);
      const round = roundParam(req.params['round'], 0);
      // The state alone: the weights (read and hashed by the weights route) are not needed.
      const strategyState = await db.rounds.strategyState(runId, round);
      if (strategyState === null) {
        throw new TesseraError(
          ErrorCode.NOT_FOUND,
          `checkpoint ${round} of run ${runId} was committed without a strategy state: its strategy keeps none`,
          { runId, round },
        );
      }
      res.setHeader('content-type', 'application/octet-stream');
      res.setHeader(
        'content-disposition',
        `attachment; filename="${runId}-strategy-state-${round}.bin"`,
      );
      res.end(
        Buffer.from(strategyState.buffer, strategyState.byteOffset, strategyState.byteLength),
      );
    },
  );
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
        integrity: report.integrity,
        checks: report.checks,
      });
    },
  );
}
