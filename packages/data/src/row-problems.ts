import { ErrorCode, TesseraError } from '@tessera/protocol';

/**
 * Where a data error is and what it is. Every refusal of a client's file carries this as the
 * TesseraError's `data`, so that programs (the clients' pre-join check) can show it without
 * parsing the message.
 */
export interface DataProblem {
  file: string;
  /** 1-based line of the source where the bad row (or the header) starts. */
  line: number;
  /** The column's name (tabular, text from CSV) or the JSON field (JSON Lines). */
  column?: string;
  /** The problem in a few words, without file and line: "'x' is not a number". */
  problem: string;
  /** Bad rows after the first one reported (0 when it is the only one). */
  moreBadRows: number;
  /** Data rows in the source (all of them, good and bad); absent when parsing stopped early. */
  rows?: number;
  /** True when the problem is the header's (a column missing), not a row's. */
  header?: true;
}

/** ' (and N more bad rows)', or nothing for 0. */
export function moreBadRowsText(moreBadRows: number): string {
  if (moreBadRows === 0) return '';
  return ` (and ${moreBadRows} more bad row${moreBadRows === 1 ? '' : 's'})`;
}

/** The message of a problem: `file:line: column 'c': problem (and N more bad rows)`. */
export function formatProblem(problem: Omit<DataProblem, 'rows'>): string {
  const where = problem.column === undefined ? '' : ` column '${problem.column}':`;
  return `${problem.file}:${problem.line}:${where} ${problem.problem}${moreBadRowsText(problem.moreBadRows)}`;
}

export function dataError(problem: DataProblem): TesseraError {
  return new TesseraError(ErrorCode.INVALID_ARGUMENT, formatProblem(problem), { ...problem });
}

/**
 * Collects the problems of a file's rows while it is read to the end, so that the refusal
 * names the first one and says how many more rows are bad: one round of fixing, not one per
 * row. Only the first problem is kept (a file of a million bad rows costs no memory).
 */
export class RowProblems {
  private first: { line: number; column: string | undefined; problem: string } | undefined;
  private badRows = 0;
  private lastBadLine = -1;

  constructor(private readonly file: string) {}

  /** Records a problem on the row starting at `line`; later problems of the same row add nothing. */
  add(line: number, column: string | undefined, problem: string): void {
    if (line === this.lastBadLine) return;
    this.lastBadLine = line;
    this.badRows++;
    this.first ??= { line, column, problem };
  }

  get count(): number {
    return this.badRows;
  }

  /** Throws the first problem (INVALID_ARGUMENT with DataProblem data) if any row was bad. */
  throwIfAny(rows: number): void {
    if (this.first === undefined) return;
    throw dataError({
      file: this.file,
      line: this.first.line,
      ...(this.first.column === undefined ? {} : { column: this.first.column }),
      problem: this.first.problem,
      moreBadRows: this.badRows - 1,
      rows,
    });
  }
}
