import { ErrorCode, TesseraError } from '@tessera/protocol';

/** Largest value a Postgres INTEGER column holds. */
export const INT32_MAX = 2_147_483_647;

export function invalid(field: string, message: string, value?: unknown): TesseraError {
  const data = value === undefined ? { field } : { field, value: describe(value) };
  return new TesseraError(ErrorCode.INVALID_ARGUMENT, `${field} ${message}`, data);
}

/** A short, printable form of a rejected value for error messages and error data. */
function describe(value: unknown): unknown {
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return value;
  if (typeof value === 'string') return value.length > 80 ? `${value.slice(0, 80)}...` : value;
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'Invalid Date' : value;
  return typeof value;
}

export function requireString(field: string, value: unknown, maxLength = 1000): string {
  if (typeof value !== 'string' || value.trim().length === 0) {
    throw invalid(field, 'must be a non-empty string', value);
  }
  if (value.length > maxLength) throw invalid(field, `must be at most ${maxLength} characters`);
  return value;
}

/** undefined and null both mean "not given" (null is returned). */
export function requireOptionalString(
  field: string,
  value: unknown,
  maxLength = 1000,
): string | null {
  return value === undefined || value === null ? null : requireString(field, value, maxLength);
}

export function requireInt(field: string, value: unknown, min: number, max = INT32_MAX): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalid(field, `must be an integer in [${min}, ${max}] (got ${String(value)})`, value);
  }
  return value;
}

export function requireFinite(field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw invalid(field, `must be a finite number (got ${String(value)})`, value);
  }
  return value;
}

export function requireFiniteOrNull(field: string, value: unknown): number | null {
  return value === null ? null : requireFinite(field, value);
}

export function requireDate(field: string, value: unknown): Date {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) {
    throw invalid(field, 'must be a valid Date', value);
  }
  return value;
}

export function requireId(field: string, value: unknown): string {
  return requireString(field, value, 200);
}

export function requireSha256(field: string, value: unknown): string {
  if (typeof value !== 'string' || !/^[0-9a-f]{64}$/.test(value)) {
    throw invalid(field, 'must be a lowercase hex sha256 (64 characters)', value);
  }
  return value;
}

export function requireStringArray(field: string, value: unknown): string[] {
  if (!Array.isArray(value)) throw invalid(field, 'must be an array of ids', value);
  const seen = new Set<string>();
  value.forEach((item, index) => {
    requireId(`${field}[${index}]`, item);
    if (seen.has(item)) throw invalid(field, `lists ${String(item)} twice`);
    seen.add(item);
  });
  return value as string[];
}

/** Metrics are stored as JSON, which cannot hold NaN or Infinity: refuse them rather than store null. */
export function requireMetrics(field: string, value: unknown): Record<string, number> {
  if (!isPlainObject(value)) throw invalid(field, 'must be an object of numbers', value);
  for (const [key, metric] of Object.entries(value)) requireFinite(`${field}.${key}`, metric);
  return value as Record<string, number>;
}

/** A plain object whose every leaf survives a JSON round trip unchanged. */
export function requireJsonObject(field: string, value: unknown): Record<string, unknown> {
  if (!isPlainObject(value)) throw invalid(field, 'must be a plain JSON object', value);
  assertJson(field, value);
  return value;
}

function assertJson(path: string, value: unknown): void {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw invalid(path, 'must be a finite number', value);
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((item, index) => {
      assertJson(`${path}[${index}]`, item);
    });
    return;
  }
  if (isPlainObject(value)) {
    for (const [key, item] of Object.entries(value)) assertJson(`${path}.${key}`, item);
    return;
  }
  throw invalid(path, 'must be JSON (null, boolean, number, string, array or plain object)', value);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * Weights are raw little-endian float32 bytes, so their length must be a non-zero multiple
 * of 4; anything else is a caller bug that would corrupt the run's history.
 */
export function requireWeights(field: string, value: unknown): Uint8Array {
  if (!(value instanceof Uint8Array)) throw invalid(field, 'must be a Uint8Array', value);
  if (value.byteLength === 0 || value.byteLength % 4 !== 0) {
    throw invalid(
      field,
      `must hold float32 weights: a non-zero multiple of 4 bytes (got ${value.byteLength})`,
    );
  }
  return value;
}

/** A non-empty byte string (an uploaded file). */
export function requireBytes(field: string, value: unknown): Uint8Array {
  if (!(value instanceof Uint8Array)) throw invalid(field, 'must be a Uint8Array', value);
  if (value.byteLength === 0) throw invalid(field, 'must not be empty');
  return value;
}
