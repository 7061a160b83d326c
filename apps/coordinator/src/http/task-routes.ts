import { createHash } from 'node:crypto';
import type { Database, HoldoutFormat, TaskHoldoutRecord, TaskRecord } from '@tessera/db';
import { buildTaskModel, checkTaskModel } from '@tessera/ml';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import {
  featureWidth,
  minimumFeatureWidth,
  parseTaskDefinition,
  type TaskDefinition,
  taskDefinitionSchema,
  taskSha256,
} from '@tessera/tasks';
import express, { type RequestHandler } from 'express';
import { z } from 'zod';
import { formatOfFileName, holdoutFormats, readHoldout } from '../holdout.js';
import { checkJsonShape } from './json-shape.js';
import { type defineRoutes, parseWith } from './routes.js';

type Route = ReturnType<typeof defineRoutes>['route'];

/**
 * A task definition's JSON, larger than the API's 1 MB: a topology with its layer configs, or
 * a text task's vocabulary, outgrows that.
 */
export const MAX_TASK_JSON_BYTES = 8 * 1024 * 1024;

/** The multipart body of a create: the definition and the initial weights (4 bytes each). */
function maxUploadBytes(maxParams: number): number {
  return MAX_TASK_JSON_BYTES + 4 * maxParams + 64 * 1024;
}

/**
 * The task routes' own body parsers, mounted before the API's 1 MB JSON parser (which then
 * leaves the parsed body alone): JSON up to 8 MB with the same shape checks, and multipart
 * uploads up to the definition plus the largest weights allowed (413 above either).
 */
export function taskBodyParsers(maxParams: number): RequestHandler[] {
  return [
    express.json({
      limit: MAX_TASK_JSON_BYTES,
      verify: (_req, _res, bytes) => checkJsonShape(bytes),
    }),
    express.raw({ type: 'multipart/form-data', limit: maxUploadBytes(maxParams) }),
  ];
}

const holdoutOut = z
  .object({
    format: z.enum(['csv', 'tsv', 'jsonl']),
    sha256: z.string().describe('sha256 of the file as uploaded'),
    byteLength: z.number().int(),
    rows: z.number().int().describe('Examples in it'),
    uploadedAt: z.string(),
  })
  .describe("The held-out set central evaluation of the task's runs uses");

const taskOut = z.object({
  id: z.string(),
  name: z.string(),
  version: z.number().int(),
  sha256: z.string().describe('sha256 of the canonical JSON of the definition (taskSha256)'),
  definition: z.record(z.string(), z.unknown()).describe('The task definition as validated'),
  paramCount: z.number().int(),
  hasWeights: z.boolean().describe('Initial weights were uploaded with it'),
  builtin: z.boolean(),
  createdAt: z.string(),
  holdout: holdoutOut.nullable().describe('null: none uploaded (no central evaluation)'),
});

const layerOut = z.object({
  name: z.string(),
  className: z.string(),
  outputShape: z.array(z.number().nullable()).describe('Without the batch dimension'),
  paramCount: z.number().int(),
});
const taskDetailOut = taskOut.extend({
  model: z.object({
    inputShape: z.array(z.number().nullable()),
    layers: z.array(layerOut),
  }),
});
const createdOut = taskOut.extend({
  notes: z
    .array(z.string())
    .describe('What the check could not settle yet (categories a statistics round collects)'),
});

const versionQuery = z.object({
  version: z.coerce.number().int().min(1).optional().describe('A version; default the latest'),
});

const sha256Pattern = /^[0-9a-f]{64}$/;

/** A task definition and its initial weights, as a create request carries them. */
interface Submission {
  definition: unknown;
  weights: Uint8Array | null;
}

function invalid(field: string, message: string, data: Record<string, unknown> = {}) {
  return new TesseraError(ErrorCode.INVALID_ARGUMENT, message, { field, ...data });
}

/**
 * A multipart body's two parts: `definition` (the task JSON, a file or a plain field) and
 * optionally `weights` (weights.bin: little-endian float32 in the tfjs manifest order).
 * The web platform's own multipart parser reads the buffered body; anything else is refused.
 */
async function readMultipart(body: Buffer, contentType: string): Promise<Submission> {
  let form: FormData;
  try {
    form = await new Response(new Blob([new Uint8Array(body)]), {
      headers: { 'content-type': contentType },
    }).formData();
  } catch {
    throw invalid('(body)', 'the multipart body cannot be read (check its boundary)');
  }
  const names = new Set<string>();
  form.forEach((_value, key) => {
    names.add(key);
  });
  const unknown = [...names].filter((key) => !['definition', 'weights'].includes(key));
  if (unknown.length > 0) {
    throw invalid(
      unknown[0] as string,
      `unknown part "${unknown[0]}": send definition and weights`,
    );
  }
  if (form.getAll('definition').length !== 1 || form.getAll('weights').length > 1) {
    throw invalid(
      'definition',
      'send one definition part (the task JSON) and at most one weights part',
    );
  }
  const part = form.get('definition') as string | Blob;
  const text = typeof part === 'string' ? Buffer.from(part) : Buffer.from(await part.arrayBuffer());
  if (text.byteLength > MAX_TASK_JSON_BYTES) {
    throw new TesseraError(
      ErrorCode.PAYLOAD_TOO_LARGE,
      `the definition is larger than ${MAX_TASK_JSON_BYTES} bytes`,
      { field: 'definition' },
    );
  }
  checkJsonShape(text);
  let definition: unknown;
  try {
    definition = JSON.parse(text.toString('utf8'));
  } catch {
    throw invalid('definition', 'the definition part is not valid JSON');
  }
  const weightsPart = form.get('weights');
  let weights: Uint8Array | null = null;
  if (weightsPart !== null) {
    weights =
      typeof weightsPart === 'string'
        ? Buffer.from(weightsPart, 'latin1')
        : new Uint8Array(await weightsPart.arrayBuffer());
  }
  return { definition, weights };
}

/**
 * The uploaded weights against what the task declares: a task's sha256 covers
 * `model.weights` ({sha256, byteLength}), so weights come with a declaration and a
 * declaration with its weights.
 */
function checkWeights(task: TaskDefinition, weights: Uint8Array | null): void {
  const declared = task.model.weights;
  if (declared === undefined) {
    if (weights !== null) {
      throw invalid(
        'model.weights',
        'weights were uploaded but the task does not declare them: add model.weights {sha256, byteLength} of weights.bin to the definition',
      );
    }
    return;
  }
  if (weights === null) {
    throw invalid(
      'weights',
      'the task declares initial weights (model.weights): upload weights.bin with it (multipart part "weights")',
    );
  }
  if (weights.byteLength !== declared.byteLength) {
    throw invalid(
      'model.weights.byteLength',
      `the task declares ${declared.byteLength} bytes of weights; the upload has ${weights.byteLength}`,
      { expected: declared.byteLength, got: weights.byteLength },
    );
  }
  const actual = createHash('sha256').update(weights).digest('hex');
  if (actual !== declared.sha256) {
    throw invalid(
      'model.weights.sha256',
      `the uploaded weights have sha256 ${actual}, not the declared ${declared.sha256}`,
      { expected: declared.sha256, got: actual },
    );
  }
}

/** What the model check could not settle yet, in words for the answer. */
function pendingNotes(task: TaskDefinition): string[] {
  const { input } = task;
  if (input.kind !== 'tabular' || featureWidth(input) !== undefined) return [];
  const open = input.columns
    .filter((column) => column.type === 'categorical' && column.categories === undefined)
    .map((column) => column.name);
  return [
    `categorical columns without categories (${open.join(', ')}): the federated statistics round collects them, so the model's input width was checked only against the least it can be (${minimumFeatureWidth(input)}); a run's statistics round then sets the model's input width to the width the collected categories make (where the topology states it and the task has no initial weights, which fix it; docs/protocol.md §7.6)`,
  ];
}

export interface TaskRoutesOptions {
  /** The most parameters a task's model may have (`--max-task-params`). */
  maxParams: number;
  /** The largest held-out set, in bytes (`--max-holdout-mb`). */
  maxHoldoutBytes: number;
}

/** The held-out set upload's body: the file and a little room for the multipart framing. */
export function holdoutBodyParser(maxHoldoutBytes: number): RequestHandler {
  return express.raw({ type: 'multipart/form-data', limit: maxHoldoutBytes + 64 * 1024 });
}

/** What a task's GET shows of its held-out set. */
function holdoutSummary(holdout: TaskHoldoutRecord | undefined) {
  if (holdout === undefined) return null;
  const { taskSha256: _task, ...summary } = holdout;
  return summary;
}

/** A held-out set upload: part `holdout` (the file), and `format` where its name does not say. */
async function readHoldoutUpload(
  body: unknown,
  contentType: string,
  maxBytes: number,
): Promise<{ bytes: Uint8Array; fileName: string; format: HoldoutFormat | null }> {
  if (!Buffer.isBuffer(body)) {
    throw new TesseraError(
      ErrorCode.UNSUPPORTED_MEDIA_TYPE,
      'send the held-out set as multipart/form-data: part holdout (the file), optionally part format (csv, tsv or jsonl)',
      { contentType: contentType || null },
    );
  }
  let form: FormData;
  try {
    form = await new Response(new Blob([new Uint8Array(body)]), {
      headers: { 'content-type': contentType },
    }).formData();
  } catch {
    throw invalid('(body)', 'the multipart body cannot be read (check its boundary)');
  }
  const keys = new Set<string>();
  form.forEach((_value, key) => {
    keys.add(key);
  });
  for (const key of keys) {
    if (key !== 'holdout' && key !== 'format') {
      throw invalid(key, `unknown part "${key}": send holdout and optionally format`);
    }
  }
  const parts = form.getAll('holdout');
  if (parts.length !== 1) throw invalid('holdout', 'send one holdout part (the file)');
  const part = parts[0] as string | File;
  const bytes =
    typeof part === 'string' ? Buffer.from(part) : new Uint8Array(await part.arrayBuffer());
  if (bytes.byteLength > maxBytes) {
    throw new TesseraError(
      ErrorCode.PAYLOAD_TOO_LARGE,
      `the held-out set is larger than ${maxBytes} bytes (--max-holdout-mb)`,
      { field: 'holdout', limit: maxBytes },
    );
  }
  if (bytes.byteLength === 0) throw invalid('holdout', 'the file is empty');
  const fileName = typeof part === 'string' ? 'holdout' : part.name || 'holdout';
  const given = form.get('format');
  if (given !== null && typeof given !== 'string') {
    throw invalid('format', 'must be a plain field: csv, tsv or jsonl');
  }
  let format: HoldoutFormat | null = null;
  if (given !== null) {
    if (given !== 'csv' && given !== 'tsv' && given !== 'jsonl') {
      throw invalid('format', `must be csv, tsv or jsonl, not ${JSON.stringify(given)}`);
    }
    format = given;
  }
  return { bytes, fileName, format: format ?? formatOfFileName(fileName) };
}

/**
 * Tasks: created by admins (parsed with @tessera/tasks, the model built and checked with
 * @tessera/ml, hashed, then stored: nothing is stored on any refusal), read by everyone
 * signed in. A task's content is immutable: new content under a name is its next version.
 */
export function registerTaskRoutes(route: Route, db: Database, options: TaskRoutesOptions): void {
  const { maxParams } = options;

  /** Validates a submission fully, then stores it: the last step is the only write. */
  const store = async (
    submission: Submission,
    save: (input: Parameters<Database['tasks']['create']>[0]) => Promise<TaskRecord>,
    versionOf?: string,
  ) => {
    const task = parseTaskDefinition(submission.definition);
    if (versionOf !== undefined && task.name !== versionOf) {
      throw invalid(
        'name',
        `the definition is named "${task.name}", but this is a version of "${versionOf}"`,
      );
    }
    const summary = await checkTaskModel(task, { maxParams });
    checkWeights(task, submission.weights);
    const record = await save({
      name: task.name,
      sha256: taskSha256(task),
      definition: task as unknown as Record<string, unknown>,
      paramCount: summary.paramCount,
      weights: submission.weights,
    });
    return { ...record, holdout: null, notes: pendingNotes(task) };
  };

  const submission = async (
    body: unknown,
    req: Parameters<Parameters<Route>[1]>[1],
  ): Promise<Submission> => {
    if (Buffer.isBuffer(body)) return readMultipart(body, req.get('content-type') ?? '');
    if (req.is('application/json')) return { definition: body, weights: null };
    throw new TesseraError(
      ErrorCode.UNSUPPORTED_MEDIA_TYPE,
      'send the task as application/json, or as multipart/form-data with parts definition (the JSON) and weights (weights.bin)',
      { contentType: req.get('content-type') ?? null },
    );
  };

  const createDoc =
    'JSON: the task definition. multipart/form-data: part `definition` (the JSON) and part `weights` (weights.bin, float32 in tfjs manifest order, matching model.weights {sha256, byteLength}).';
  route(
    {
      method: 'post',
      path: '/tasks',
      summary: `Create a task (version 1 of a new name; a taken name is 409). The model is built and checked against the input schema, output and the parameter limit before anything is stored. ${createDoc}`,
      access: 'admin',
      action: 'create tasks',
      body: taskDefinitionSchema,
      rawBodyTypes: ['multipart/form-data'],
      response: { status: 201, description: 'Created', schema: createdOut },
    },
    async ({ body }, req, res) => {
      const record = await store(await submission(body, req), (input) => db.tasks.create(input));
      res.status(201).json(record);
    },
  );
  route(
    {
      method: 'post',
      path: '/tasks/:name/versions',
      summary: `Add the next version of a task (its definition's name must be :name; the same content as a stored version is 409). ${createDoc}`,
      access: 'admin',
      action: 'create tasks',
      body: taskDefinitionSchema,
      rawBodyTypes: ['multipart/form-data'],
      response: { status: 201, description: 'Created', schema: createdOut },
    },
    async ({ body }, req, res) => {
      const name = String(req.params['name']);
      const given = await submission(body, req);
      const record = await store(given, (input) => db.tasks.addVersion(input), name);
      res.status(201).json(record);
    },
  );

  route(
    {
      method: 'get',
      path: '/tasks',
      summary: 'Every version of every task, by name then version (built-in ones included)',
      access: 'read',
      response: { status: 200, description: 'Tasks', schema: z.array(taskOut) },
    },
    async (_context, _req, res) => {
      const [tasks, holdouts] = await Promise.all([db.tasks.list(), db.tasks.holdouts()]);
      res.json(
        tasks.map((task) => ({ ...task, holdout: holdoutSummary(holdouts.get(task.sha256)) })),
      );
    },
  );

  // A task's content never changes, so its layer summary is computed once per sha256.
  const summaries = new Map<string, Promise<z.infer<typeof taskDetailOut>['model']>>();
  const detail = async (record: TaskRecord) => {
    let summary = summaries.get(record.sha256);
    if (summary === undefined) {
      summary = modelSummary(parseTaskDefinition(record.definition));
      summaries.set(record.sha256, summary);
      summary.catch(() => summaries.delete(record.sha256));
    }
    const holdouts = await db.tasks.holdouts([record.sha256]);
    return {
      ...record,
      holdout: holdoutSummary(holdouts.get(record.sha256)),
      model: await summary,
    };
  };
  route(
    {
      method: 'get',
      path: '/tasks/by-sha256/:sha256',
      summary: 'A task by its content address, with its layers and their output shapes',
      access: 'read',
      response: { status: 200, description: 'Task', schema: taskDetailOut },
    },
    async (_context, req, res) => {
      const sha256 = String(req.params['sha256']);
      if (!sha256Pattern.test(sha256)) {
        throw invalid('sha256', 'must be 64 lowercase hex digits');
      }
      res.json(await detail(await db.tasks.get(sha256)));
    },
  );
  route(
    {
      method: 'get',
      path: '/tasks/:name',
      summary: "A task's latest version (or ?version=N), with its layers and their output shapes",
      access: 'read',
      query: versionQuery,
      response: { status: 200, description: 'Task', schema: taskDetailOut },
    },
    async ({ query }, req, res) => {
      const { version } = query as z.infer<typeof versionQuery>;
      res.json(await detail(await db.tasks.byName(String(req.params['name']), version)));
    },
  );

  const versionParams = z.object({
    name: z.string(),
    version: z.coerce.number().int().min(1).max(2_147_483_647),
  });
  route(
    {
      method: 'put',
      path: '/tasks/:name/versions/:version/holdout',
      summary:
        "Upload (or replace) a task version's held-out set for central evaluation of its runs: multipart/form-data with part `holdout` (the file) and optionally `format` (csv, tsv or jsonl; default from the file name). Tabular tasks: CSV/TSV with a header, by column name (the feature columns and the label). Text tasks: CSV/TSV with columns text and label, or JSON Lines {text, label}. Checked as the clients check their files (problems with file, line and column) before it is stored; at most --max-holdout-mb (413)",
      access: 'admin',
      action: 'upload held-out sets',
      rawBodyTypes: ['multipart/form-data'],
      response: { status: 200, description: 'Stored', schema: holdoutOut },
    },
    async (_context, req, res) => {
      const { name, version } = parseWith(versionParams, req.params, 'path');
      const upload = await readHoldoutUpload(
        req.body,
        req.get('content-type') ?? '',
        options.maxHoldoutBytes,
      );
      const record = await db.tasks.byName(name, version);
      const task = parseTaskDefinition(record.definition);
      const format = upload.format;
      if (format === null) {
        throw invalid(
          'format',
          `say the file's format: part format (${holdoutFormats(task).join(', ') || 'none for this task'}), or a file name ending in .csv, .tsv or .jsonl`,
        );
      }
      const holdout = readHoldout(upload.bytes, format, task, upload.fileName);
      const stored = await db.tasks.putHoldout({
        taskSha256: record.sha256,
        format,
        data: upload.bytes,
        rows: holdout.data.count,
      });
      res.json(holdoutSummary(stored));
    },
  );
}

/** The model's input shape and its layers: name, class, output shape, parameters. */
async function modelSummary(task: TaskDefinition) {
  const model = await buildTaskModel(task, { seed: 0 });
  try {
    const withoutBatch = (shape: unknown): (number | null)[] => {
      const first = Array.isArray(shape) && Array.isArray(shape[0]) ? shape[0] : shape;
      return Array.isArray(first) ? (first as (number | null)[]).slice(1) : [];
    };
    return {
      inputShape: withoutBatch(model.inputs[0]?.shape),
      layers: model.layers.map((layer) => ({
        name: layer.name,
        className: layer.getClassName(),
        outputShape: withoutBatch(layer.outputShape),
        paramCount: layer.countParams(),
      })),
    };
  } finally {
    model.dispose();
  }
}
