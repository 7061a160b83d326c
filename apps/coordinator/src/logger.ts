import { hostname } from 'node:os';
import { pino } from 'pino';

/**
 * Structured logs: one JSON object per line (pino), `{level, time, pid, hostname, ...bindings,
 * ...fields, msg}`. Fields name what an event is about with the same keys everywhere (`runId`,
 * `round`, `clientId`, `code`), so that logs of several coordinator processes can be merged
 * and filtered; `withFields` binds them once (a process's lease owner id, say).
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

const LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];

export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  /** A logger that adds `fields` to every line (pino's child loggers). */
  withFields(fields: Record<string, unknown>): Logger;
}

/**
 * Writes each line to `write` (default: stderr, synchronously, so a crash loses no line).
 * `base`: fields on every line; default the process id and host name.
 */
export function createLogger(
  level: LogLevel = 'info',
  write?: (line: string) => void,
  base: Record<string, unknown> = { pid: process.pid, hostname: hostname() },
): Logger {
  const destination =
    write === undefined
      ? pino.destination({ dest: 2, sync: true })
      : // pino hands a destination whole lines with their newline.
        { write: (line: string) => write(line.endsWith('\n') ? line.slice(0, -1) : line) };
  const root = pino(
    {
      level,
      base,
      // Level names, not numbers: what people grep for and what log shippers map.
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
  return wrap(root);
}

function wrap(logger: pino.Logger): Logger {
  const at =
    (level: Exclude<LogLevel, 'silent'>) =>
    (message: string, fields?: Record<string, unknown>): void => {
      if (fields === undefined) logger[level](message);
      else logger[level](fields, message);
    };
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    withFields: (fields) => wrap(logger.child(fields)),
  };
}

export function parseLogLevel(value: string | undefined, fallback: LogLevel): LogLevel {
  return value !== undefined && (LEVELS as readonly string[]).includes(value)
    ? (value as LogLevel)
    : fallback;
}
