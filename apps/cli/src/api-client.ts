import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type {
  CheckpointRecord,
  ClientRecord,
  ClientUpdateRecord,
  KeptUpdate,
  RoundRecord,
  RunRecord,
} from '@tessera/db';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { RunRecords } from '@tessera/research';

export const API_USAGE = `  --url URL           a coordinator's address (http://host:port): read the run over its REST
                      API as a researcher, instead of from the database
  --token-file FILE   a file whose first line is your API token (made on the console's
                      API tokens page, or POST /api/me/tokens); or set TESSERA_TOKEN
  --token TOKEN       the token on the command line: other users of this machine can read it
                      (ps, /proc); prefer --token-file or TESSERA_TOKEN`;

export interface TokenFlags {
  token?: string | undefined;
  'token-file'?: string | undefined;
}

function invalid(field: string, message: string): TesseraError {
  return new TesseraError(ErrorCode.INVALID_ARGUMENT, message, { field });
}

/**
 * The API token from exactly one of --token-file, TESSERA_TOKEN and --token, with warnings to
 * print (a token on the command line, a file others can read); null where none is given (an
 * open coordinator needs none; a closed one answers UNAUTHORIZED, with the hint added).
 * Several sources are refused rather than ranked: a stale TESSERA_TOKEN must not win silently.
 */
export function readApiToken(
  flags: TokenFlags,
  env: string | undefined = process.env['TESSERA_TOKEN'],
): { token: string | null; warnings: string[] } {
  const given: Array<[string, () => string]> = [];
  const warnings: string[] = [];
  if (flags.token !== undefined) {
    given.push(['--token', () => flags.token?.trim() ?? '']);
    warnings.push(
      'the API token on the command line can be read by other users of this machine (ps, /proc); prefer --token-file FILE or TESSERA_TOKEN',
    );
  }
  const file = flags['token-file'];
  if (file !== undefined) given.push(['--token-file', () => readTokenFile(file, warnings)]);
  if (env !== undefined && env.trim() !== '') given.push(['TESSERA_TOKEN', () => env.trim()]);
  if (given.length > 1) {
    throw invalid(
      'token',
      `the API token is given ${given.length} ways (${given.map(([kind]) => kind).join(', ')}); give exactly one`,
    );
  }
  const [source] = given;
  if (source === undefined) return { token: null, warnings };
  const token = source[1]();
  if (token === '') throw invalid('token', `${source[0]} is empty`);
  return { token, warnings };
}

function readTokenFile(path: string, warnings: string[]): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    const reason = (cause as NodeJS.ErrnoException).code ?? (cause as Error).message;
    throw invalid('token-file', `--token-file ${path}: cannot read it (${reason})`);
  }
  const token = (text.split(/\r?\n/, 1)[0] ?? '').trim();
  if (token === '') {
    throw invalid(
      'token-file',
      `--token-file ${path}: its first line is empty; it should hold your API token`,
    );
  }
  const mode = statSync(path).mode;
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
    warnings.push(
      `--token-file ${path} can be read by other users (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); chmod 600 ${path}`,
    );
  }
  return token;
}

/** `http://host:port` (a trailing slash or /api is tolerated), or INVALID_ARGUMENT naming --url. */
export function apiBase(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid(
      'url',
      `--url must be the coordinator's address, like http://localhost:8080 (got "${url}")`,
    );
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw invalid('url', `--url must start with http:// or https:// (got ${parsed.protocol}//)`);
  }
  const path = parsed.pathname.replace(/\/+$/, '').replace(/\/api$/, '');
  return `${parsed.origin}${path}/api`;
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const date = (value: unknown) => new Date(String(value));
const dateOrNull = (value: unknown) => (value === null || value === undefined ? null : date(value));

/**
 * A run's records read over the coordinator's REST API (GET only, so a read-scoped API token
 * is enough), shaped as the database's repositories return them: the CLI's export and replay
 * take either, and build their files and checks by the same code. Bytes (checkpoints, kept
 * updates) are checked against their recorded sha256 as they arrive.
 */
export class ApiRecords implements RunRecords {
  private readonly base: string;

  constructor(
    url: string,
    private readonly token: string | null,
  ) {
    this.base = apiBase(url);
  }

  readonly runs = {
    get: async (id: string): Promise<RunRecord> => {
      // The route adds the live `pausing` flag, which is no part of the record.
      const { pausing: _live, ...run } = await this.json<RunRecord & { pausing?: boolean }>(
        `/runs/${encodeURIComponent(id)}`,
      );
      return {
        ...run,
        createdAt: date(run.createdAt),
        startedAt: dateOrNull(run.startedAt),
        finishedAt: dateOrNull(run.finishedAt),
      };
    },
  };

  readonly rounds = {
    list: async (runId: string): Promise<RoundRecord[]> =>
      (await this.json<RoundRecord[]>(`/runs/${encodeURIComponent(runId)}/rounds`)).map(
        (round) => ({
          ...round,
          startedAt: date(round.startedAt),
          finishedAt: date(round.finishedAt),
        }),
      ),
    allUpdates: (runId: string): Promise<ClientUpdateRecord[]> =>
      this.json(`/runs/${encodeURIComponent(runId)}/updates`),
    checkpointHashes: (
      runId: string,
    ): Promise<{ round: number; sha256: string; paramCount: number }[]> =>
      this.json(`/runs/${encodeURIComponent(runId)}/checkpoints`),
    checkpoint: async (runId: string, round: number): Promise<CheckpointRecord> => {
      const path = `/runs/${encodeURIComponent(runId)}/checkpoints/${round}`;
      const { bytes, headers } = await this.bytes(`${path}/weights`);
      const recorded = headers.get('x-tessera-sha256') ?? '';
      this.checkIntact(bytes, recorded, `checkpoint ${round} of run ${runId}`);
      // The state committed with it (SCAFFOLD's c, FedOpt's moments): replay compares its own
      // against it. NOT_FOUND: none was stored (a stateless strategy, or a coordinator from
      // before this route, which replay then reports as '-').
      const strategyState = await this.bytes(`${path}/strategy-state`).then(
        (answer) => answer.bytes,
        (cause: unknown) => {
          if (cause instanceof TesseraError && cause.code === ErrorCode.NOT_FOUND) return null;
          throw cause;
        },
      );
      return {
        round,
        weights: bytes,
        sha256: recorded,
        paramCount: bytes.byteLength / 4,
        strategyState,
      };
    },
    updatesWithWeights: async (runId: string, round: number): Promise<KeptUpdate[]> => {
      const run = encodeURIComponent(runId);
      const detail = await this.json<{ updates: ClientUpdateRecord[] }>(
        `/runs/${run}/rounds/${round}`,
      );
      const kept = detail.updates.filter((update) => update.kept);
      const blocks = await this.backToBack(
        `/runs/${run}/rounds/${round}/updates/weights`,
        kept.length,
        { runId, round },
        (sent, byteLength) =>
          `round ${round} of run ${runId}: the coordinator sent ${sent} updates in ${byteLength} bytes for ${kept.length} kept update records`,
      );
      const controlDeltas = await this.controlDeltas(runId, round, kept);
      return kept.map((update, index) => {
        const weights = blocks[index] as Uint8Array;
        this.checkIntact(
          weights,
          update.sha256,
          `update ${update.arrivalIndex} of round ${round} of run ${runId}`,
        );
        return {
          clientId: update.clientId,
          arrivalIndex: update.arrivalIndex,
          numExamples: update.numExamples,
          sha256: update.sha256,
          weights,
          controlDelta: controlDeltas.get(update.arrivalIndex) ?? null,
        };
      });
    },
  };

  /**
   * The SCAFFOLD control-variate changes Δc_i kept with a round's updates, by arrival index,
   * each checked against its record's controlDeltaSha256; none fetched where no record has one
   * (another strategy, or a coordinator from before Δc_i were served).
   */
  private async controlDeltas(
    runId: string,
    round: number,
    kept: readonly ClientUpdateRecord[],
  ): Promise<Map<number, Uint8Array>> {
    const expected = kept.filter((update) => (update.controlDeltaSha256 ?? null) !== null);
    const deltas = new Map<number, Uint8Array>();
    if (expected.length === 0) return deltas;
    const blocks = await this.backToBack(
      `/runs/${encodeURIComponent(runId)}/rounds/${round}/updates/control-deltas`,
      expected.length,
      { runId, round },
      (_sent, byteLength, headers) =>
        `round ${round} of run ${runId}: the coordinator sent control-variate changes for updates ${headers.get('x-tessera-arrival-indexes')} in ${byteLength} bytes, for the ${expected.length} update records that have one`,
      (headers) =>
        headers.get('x-tessera-arrival-indexes') ===
        expected.map((update) => update.arrivalIndex).join(','),
    );
    for (const [index, update] of expected.entries()) {
      const delta = blocks[index] as Uint8Array;
      this.checkIntact(
        delta,
        update.controlDeltaSha256 ?? '',
        `the control-variate change of update ${update.arrivalIndex} of round ${round} of run ${runId}`,
      );
      deltas.set(update.arrivalIndex, delta);
    }
    return deltas;
  }

  readonly clients = {
    list: async (federationId: string): Promise<ClientRecord[]> =>
      (
        await this.json<ClientRecord[]>(`/federations/${encodeURIComponent(federationId)}/clients`)
      ).map((client) => ({
        ...client,
        createdAt: date(client.createdAt),
        revokedAt: dateOrNull(client.revokedAt),
        lastSeenAt: dateOrNull(client.lastSeenAt),
      })),
  };

  /**
   * A byte route's answer of `count` equal blocks back to back (x-tessera-updates of them, each
   * x-tessera-update-bytes long), split; INTERNAL (with `mismatch`'s message and `data`) where
   * the answer holds another count or size, or its headers fail `fits`.
   */
  private async backToBack(
    path: string,
    count: number,
    data: Record<string, unknown>,
    mismatch: (sent: string | null, byteLength: number, headers: Headers) => string,
    fits: (headers: Headers) => boolean = () => true,
  ): Promise<Uint8Array[]> {
    const { bytes, headers } = await this.bytes(path);
    const each = Number(headers.get('x-tessera-update-bytes'));
    if (
      Number(headers.get('x-tessera-updates')) !== count ||
      each * count !== bytes.byteLength ||
      !fits(headers)
    ) {
      throw new TesseraError(
        ErrorCode.INTERNAL,
        mismatch(headers.get('x-tessera-updates'), bytes.byteLength, headers),
        data,
      );
    }
    return Array.from({ length: count }, (_, index) =>
      bytes.subarray(index * each, (index + 1) * each),
    );
  }

  private checkIntact(bytes: Uint8Array, recorded: string, what: string): void {
    const actual = sha256(bytes);
    if (actual !== recorded) {
      throw new TesseraError(
        ErrorCode.INTERNAL,
        `${what} arrived damaged: sha256 ${actual}, recorded ${recorded}`,
      );
    }
  }

  private async json<T>(path: string): Promise<T> {
    return (await this.get(path)).json() as Promise<T>;
  }

  private async bytes(path: string): Promise<{ bytes: Uint8Array; headers: Headers }> {
    const response = await this.get(path);
    return { bytes: new Uint8Array(await response.arrayBuffer()), headers: response.headers };
  }

  private get(path: string): Promise<Response> {
    return callApi(this.base, this.token, path);
  }
}

/**
 * One REST call: the answer when it is 2xx, else the API's error as a TesseraError (its code,
 * message and data, the field included), with a hint where the token is missing or refused.
 */
export async function callApi(
  base: string,
  token: string | null,
  path: string,
  init: { method?: string; body?: string | FormData; contentType?: string } = {},
): Promise<Response> {
  const method = init.method ?? 'GET';
  const headers: Record<string, string> = {};
  if (token !== null) headers['authorization'] = `Bearer ${token}`;
  if (init.contentType !== undefined) headers['content-type'] = init.contentType;
  let response: Response;
  try {
    response = await fetch(`${base}${path}`, {
      method,
      headers,
      ...(init.body === undefined ? {} : { body: init.body }),
    });
  } catch (cause) {
    const reason = (cause as { cause?: { code?: string } }).cause?.code ?? (cause as Error).message;
    throw new TesseraError(
      ErrorCode.UNAVAILABLE,
      `cannot reach the coordinator at ${base} (${reason}); check --url`,
      { field: 'url' },
    );
  }
  if (response.ok) return response;
  const answer = (await response.json().catch(() => null)) as {
    error?: { code?: string; message?: string; data?: Record<string, unknown> };
  } | null;
  const code = (answer?.error?.code ?? ErrorCode.INTERNAL) as ErrorCode;
  let message = answer?.error?.message ?? `${method} ${path} answered HTTP ${response.status}`;
  if (code === ErrorCode.UNAUTHORIZED) {
    message +=
      token === null
        ? ' (no API token was given: pass --token-file FILE or set TESSERA_TOKEN)'
        : ' (the API token was refused)';
  }
  throw new TesseraError(code, message, answer?.error?.data);
}
