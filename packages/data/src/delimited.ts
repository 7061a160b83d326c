// csv-parse's own browser build (the same parser, bundled with a small Buffer shim): the Node
// build under 'csv-parse/sync' uses Node's Buffer, which a web page does not have. One import
// for both entries keeps the Node client and the web client on the same parser.
import { CsvError, parse } from 'csv-parse/browser/esm/sync';
import { dataError } from './row-problems.js';

/** A file of delimited text with a header line, as strings, before any column is interpreted. */
export interface DelimitedTable {
  /** The header's column names (trimmed), in file order. */
  header: string[];
  delimiter: string;
  /** Data rows: their fields in header order, and the 1-based line each row starts on. */
  rows: Array<{ line: number; fields: string[] }>;
}

export interface DelimitedOptions {
  /** Names the source in errors (the file's path, or a picked file's name). Default 'CSV'. */
  source?: string;
  /** The field separator. Default: detected from the header line (see detectDelimiter). */
  delimiter?: string;
}

const CANDIDATE_DELIMITERS = [',', '\t', ';', '|'] as const;

/**
 * The separator of a header line: whichever of comma, tab, semicolon and bar occurs most often
 * outside double quotes (ties go to the earlier one in that order; a header of one column is
 * comma-separated). Only the header is looked at because it is the one line whose shape is
 * known (names, rarely quoted); a data field such as "3,5" in a TSV cannot fool it.
 */
export function detectDelimiter(headerLine: string): string {
  const counts = new Map<string, number>();
  let quoted = false;
  for (const char of headerLine) {
    if (char === '"') quoted = !quoted;
    else if (!quoted) counts.set(char, (counts.get(char) ?? 0) + 1);
  }
  let best: string = ',';
  let bestCount = 0;
  for (const candidate of CANDIDATE_DELIMITERS) {
    const count = counts.get(candidate) ?? 0;
    if (count > bestCount) {
      best = candidate;
      bestCount = count;
    }
  }
  return best;
}

interface ParsedRecord {
  record: string[];
  info: { lines: number; empty_lines: number };
}

/**
 * Parses CSV/TSV text with a header line (RFC 4180: quoted fields may hold separators, line
 * breaks and doubled quotes; LF, CRLF or CR line ends, mixed too, all read as LF; a UTF-8 BOM
 * is dropped; empty lines are skipped). Pure. The parser is csv-parse's synchronous API: it is strict
 * about quoting, reports the line of a broken quote, and runs in browsers.
 *
 * Rows keep the field count they have: the caller decides what a short or long row means.
 * Structural errors (an unclosed quote, a quote inside an unquoted field) stop parsing and are
 * refused as INVALID_ARGUMENT with `data: {file, line}`.
 */
export function parseDelimited(text: string, options: DelimitedOptions = {}): DelimitedTable {
  const file = options.source ?? 'CSV';
  // Line ends become LF before parsing, inside quoted fields too: the parser otherwise takes
  // the first line's ending as the only one (a file edited on two systems would run rows
  // together) and counts a quoted CRLF as two lines (every later line number would be off).
  const normalized = (text.charCodeAt(0) === 0xfeff ? text.slice(1) : text).replace(/\r\n?/g, '\n');
  const firstLine = normalized.trimStart().split('\n', 1)[0] ?? '';
  const delimiter = options.delimiter ?? detectDelimiter(firstLine);
  let records: ParsedRecord[];
  try {
    records = parse(normalized, {
      delimiter,
      record_delimiter: '\n',
      relax_column_count: true,
      skip_empty_lines: true,
      info: true,
    }) as unknown as ParsedRecord[];
  } catch (cause) {
    if (!(cause instanceof CsvError)) throw cause;
    const line = (cause as CsvError & { lines?: number }).lines ?? 1;
    const error = dataError({
      file,
      line,
      problem: `malformed ${delimiter === '\t' ? 'TSV' : 'CSV'}: ${cause.message.replace(/^[^:]*: /, '')}`,
      moreBadRows: 0,
    });
    throw Object.assign(error, { cause });
  }
  const [headerRecord, ...dataRecords] = records;
  if (headerRecord === undefined) {
    throw dataError({ file, line: 1, problem: 'no header line', moreBadRows: 0, rows: 0 });
  }
  // A record's info tells the line it ends on; it starts after the previous record's end and
  // the empty lines skipped since (a quoted field may span lines: the start is what editors show).
  let previousEnd = headerRecord.info.lines;
  let previousEmpty = headerRecord.info.empty_lines;
  const rows = dataRecords.map(({ record, info }) => {
    const line = previousEnd + 1 + (info.empty_lines - previousEmpty);
    previousEnd = info.lines;
    previousEmpty = info.empty_lines;
    return { line, fields: record };
  });
  return { header: headerRecord.record.map((name) => name.trim()), delimiter, rows };
}
