/** Helpers shared by the repositories; not part of the public API. */
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { Prisma } from './generated/client.js';

export function notFound(entity: string, id: string | number, data?: Record<string, unknown>) {
  return new TesseraError(ErrorCode.NOT_FOUND, `${entity} ${String(id)} not found`, {
    entity,
    id,
    ...data,
  });
}

/** The Prisma error code (P2002 unique, P2003 foreign key, P2025 missing row...), if any. */
export function prismaCode(error: unknown): string | undefined {
  return error instanceof Prisma.PrismaClientKnownRequestError ? error.code : undefined;
}

/**
 * What the driver adapter said went wrong in a raw query. Prisma reports every failed raw
 * query as P2010 and leaves the kind of failure (the one its model queries turn into P2002,
 * P2003...) in meta.driverAdapterError.cause.kind.
 */
function rawQueryFailure(error: unknown): string | undefined {
  if (prismaCode(error) !== 'P2010') return undefined;
  const meta = (error as Prisma.PrismaClientKnownRequestError).meta;
  const adapterError = meta?.['driverAdapterError'];
  if (typeof adapterError !== 'object' || adapterError === null) return undefined;
  const cause = (adapterError as { cause?: unknown }).cause;
  if (typeof cause !== 'object' || cause === null) return undefined;
  const kind = (cause as { kind?: unknown }).kind;
  return typeof kind === 'string' ? kind : undefined;
}

export function isUniqueViolation(error: unknown): boolean {
  return prismaCode(error) === 'P2002' || rawQueryFailure(error) === 'UniqueConstraintViolation';
}

export function isForeignKeyViolation(error: unknown): boolean {
  return (
    prismaCode(error) === 'P2003' || rawQueryFailure(error) === 'ForeignKeyConstraintViolation'
  );
}

export function isRecordNotFound(error: unknown): boolean {
  return prismaCode(error) === 'P2025';
}

/**
 * Bytes come back as a Uint8Array from PGlite and as a Buffer (a Uint8Array subclass) from pg;
 * hand out a plain Uint8Array view either way, without copying the weights.
 */
export function toUint8Array(bytes: Uint8Array): Uint8Array {
  return bytes.constructor === Uint8Array
    ? bytes
    : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Prisma takes bytes as Uint8Array<ArrayBuffer>; a view over a SharedArrayBuffer is copied. */
export function toPrismaBytes(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer
    ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    : new Uint8Array(bytes);
}

/** JSON columns we wrote ourselves from validated objects; anything else reads as empty. */
export function jsonObject(value: Prisma.JsonValue): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? { ...value } : {};
}

export function numberRecord(value: Prisma.JsonValue): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, metric] of Object.entries(jsonObject(value))) {
    if (typeof metric === 'number') out[key] = metric;
  }
  return out;
}

/** Our validated objects are JSON already; this only narrows the type for Prisma. */
export function toJsonInput(value: Record<string, unknown>): Prisma.InputJsonObject {
  return value as Prisma.InputJsonObject;
}

export type Tx = Prisma.TransactionClient;
