import type { FieldIssue, RoundPhases, RunConfig, WireError } from '@tessera/protocol';
import type { TaskDefinition } from '@tessera/tasks';

/** An API refusal, with the field-level messages the server sent (for forms). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly issues: FieldIssue[],
    readonly data: Record<string, unknown>,
  ) {
    super(message);
  }
}

let csrfToken = '';

/** The session's CSRF token, sent with every state-changing request (set at login). */
export function setCsrfToken(token: string): void {
  csrfToken = token;
}

type Unauthorized = () => void;
let onUnauthorized: Unauthorized = () => {};
/** Called when the session has ended (401): the app goes back to the login page. */
export function handleUnauthorized(callback: Unauthorized): void {
  onUnauthorized = callback;
}

/** The live feed learned that the session has ended. */
export function notifyUnauthorized(): void {
  onUnauthorized();
}

/**
 * Calls the coordinator's REST API with the session cookie (same origin) and the CSRF token.
 * JSON in, JSON out; a Blob body is sent as is with its own type (images for predict).
 */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  let payload: BodyInit | undefined;
  if (body instanceof Blob) {
    payload = body;
    headers['content-type'] = body.type;
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['content-type'] = 'application/json';
  }
  if (method !== 'GET') headers['x-csrf-token'] = csrfToken;
  const response = await fetch(`/api${path}`, {
    method,
    headers,
    credentials: 'same-origin',
    ...(payload === undefined ? {} : { body: payload }),
  });
  const text = await response.text();
  const parsed: unknown = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = (parsed as { error?: WireError } | null)?.error;
    const data = error?.data ?? {};
    const issues = Array.isArray(data['issues']) ? (data['issues'] as FieldIssue[]) : [];
    if (response.status === 401 && path !== '/auth/login') onUnauthorized();
    throw new ApiError(
      response.status,
      error?.code ?? 'INTERNAL',
      error?.message ?? `HTTP ${response.status}`,
      issues,
      data,
    );
  }
  return parsed as T;
}

/** The messages of an ApiError by field, for a form. */
export function issuesByField(error: unknown): Record<string, string> {
  if (!(error instanceof ApiError)) return {};
  const out: Record<string, string> = {};
  for (const issue of error.issues) out[issue.field] ??= issue.message;
  if (error.issues.length === 0 && typeof error.data['field'] === 'string') {
    out[error.data['field']] = error.message;
  }
  return out;
}

// --- the shapes the API returns (dates as ISO strings)

export type Role = 'admin' | 'researcher';

export interface User {
  id: string;
  email: string;
  name: string;
  role: Role;
  createdAt: string;
  disabledAt: string | null;
}

/** A task version (GET /api/tasks). */
export interface Task {
  id: string;
  name: string;
  version: number;
  sha256: string;
  definition: TaskDefinition;
  paramCount: number;
  hasWeights: boolean;
  builtin: boolean;
  createdAt: string;
}

/** One task with its model's layers (GET /api/tasks/{name}). */
export interface TaskDetail extends Task {
  model: {
    inputShape: (number | null)[];
    layers: {
      name: string;
      className: string;
      outputShape: (number | null)[];
      paramCount: number;
    }[];
  };
}

export interface Federation {
  id: string;
  name: string;
  description: string | null;
  createdAt: string;
}

export interface ClientCredential {
  id: string;
  federationId: string;
  organisation: string;
  label: string | null;
  createdAt: string;
  revokedAt: string | null;
  lastSeenAt: string | null;
}

export interface Run {
  id: string;
  federationId: string;
  name: string;
  status: string;
  /** Defined once, by the run config schema in @tessera/protocol. */
  config: RunConfig;
  currentRound: number;
  error: string | null;
  /** Why the run ended on its own before its last round (a dp-fedavg privacy budget). */
  endReason: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  /** Pause requested: the run stops after its open round. */
  pausing?: boolean;
}

export interface Round {
  id: string;
  runId: string;
  number: number;
  status: string;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  selectedClientIds: string[];
  participantClientIds: string[];
  droppedClientIds: string[];
  numExamples: number;
  trainLoss: number | null;
  trainAccuracy: number | null;
  federatedLoss: number | null;
  federatedAccuracy: number | null;
  centralLoss: number | null;
  centralAccuracy: number | null;
  metrics: Record<string, number>;
  /** Each selected client's outcome with its reason (empty for rounds recorded before). */
  outcomes: ClientOutcome[];
  /** dp-fedavg's accounting of the round (packages/db's RoundPrivacyRecord); null without DP. */
  privacy: Record<string, number | string | boolean | null> | null;
  /** Where the round's time went; null for rounds recorded before phases were. */
  phases: RoundPhases | null;
}

/** packages/db's ClientOutcome, as JSON. */
export interface ClientOutcome {
  clientId: string;
  outcome: 'updated' | 'failed' | 'rejected' | 'dropped' | 'timed-out';
  code: string | null;
  reason: string | null;
}

export interface ClientUpdate {
  clientId: string;
  arrivalIndex: number;
  numExamples: number;
  durationMs: number;
  sizeBytes: number;
  sha256: string;
  metrics: Record<string, number>;
}

export interface RoundDetail {
  round: Round;
  updates: ClientUpdate[];
  checkpoint: { round: number; sha256: string; paramCount: number };
}

export interface Meta {
  models: Array<{ name: string; description: string; paramCount: number }>;
  strategies: string[];
  /** Each strategy's options as JSON Schema (what a run's strategyOptions must meet). */
  strategyOptions: Record<string, unknown>;
  roles: Role[];
  maxImageBytes: number;
}

export interface Prediction {
  runId: string;
  round: number;
  class: number;
  probabilities: number[];
}

export type ExportTable = 'rounds' | 'updates';
export type ExportFormat = 'csv' | 'jsonl';

/**
 * Where a run's table downloads (GET, the session cookie is enough: researchers may export);
 * `round` keeps one round's rows. The columns are docs/export.md's, as `tessera export` writes.
 */
export function exportUrl(
  runId: string,
  table: ExportTable,
  format: ExportFormat,
  round?: number,
): string {
  const query = new URLSearchParams({ format });
  if (round !== undefined) query.set('round', String(round));
  return `/api/runs/${encodeURIComponent(runId)}/export/${table}?${query}`;
}

/** A round's global model in the tfjs format (model.json names weights.bin beside it). */
export function modelUrl(runId: string, file: 'model.json' | 'weights.bin', round: number): string {
  return `/api/runs/${encodeURIComponent(runId)}/model/${file}?round=${round}`;
}
