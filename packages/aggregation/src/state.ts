import { ErrorCode, TesseraError } from '@tessera/protocol';

/**
 * What a strategy carries from one round to the next (FedAvgM's velocity, FedAdam's moments,
 * centered clipping's centre), taken after round `round` finished. Arrays are float64 so that
 * a state written and read back is the same state bit for bit, and a resumed run or a replay
 * continues exactly where the uninterrupted one would have.
 *
 * A state is immutable once made: a strategy builds new arrays for each round rather than
 * writing into the old ones, so a snapshot handed out stays true.
 */
export interface StrategyState {
  /** The strategy that wrote it (`Strategy.name`). */
  readonly strategy: string;
  /** That strategy's own state version, bumped whenever its meaning changes. */
  readonly version: number;
  /** The round after which the state was taken; the next round to run is `round + 1`. */
  readonly round: number;
  /** Small finite numbers (FedAdam's step count). */
  readonly scalars: Readonly<Record<string, number>>;
  /** Named payloads, each as long as the model. */
  readonly arrays: Readonly<Record<string, Float64Array>>;
}

/** "TSST": Tessera strategy state. */
const MAGIC = [0x54, 0x53, 0x53, 0x54] as const;
/** Version of the byte layout below (not of any one strategy's state). */
export const STATE_FORMAT_VERSION = 1;
const PREAMBLE_BYTES = 12;

interface Header {
  strategy: string;
  version: number;
  round: number;
  scalars: Record<string, number>;
  arrays: { name: string; length: number }[];
}

function stateError(message: string, data?: Record<string, unknown>): TesseraError {
  return new TesseraError(ErrorCode.INVALID_ARGUMENT, `strategy state: ${message}`, {
    field: 'strategyState',
    ...data,
  });
}

const align8 = (n: number) => (n + 7) & ~7;

/**
 * Bytes of a state, little-endian (docs/research.md, "Strategy state"):
 *
 *   0   4  "TSST"
 *   4   2  u16 layout version (1)
 *   6   2  u16 zero
 *   8   4  u32 header length H
 *   12  H  UTF-8 JSON {strategy, version, round, scalars, arrays: [{name, length}]}
 *   ..     zero padding to a multiple of 8
 *   ..     each array in header order, `length` float64 values
 */
export function encodeStrategyState(state: StrategyState): Uint8Array {
  const arrays = Object.entries(state.arrays);
  const header: Header = {
    strategy: state.strategy,
    version: state.version,
    round: state.round,
    scalars: { ...state.scalars },
    arrays: arrays.map(([name, values]) => ({ name, length: values.length })),
  };
  const json = new TextEncoder().encode(JSON.stringify(header));
  const payloadStart = align8(PREAMBLE_BYTES + json.length);
  const total = payloadStart + arrays.reduce((sum, [, values]) => sum + values.length * 8, 0);
  const bytes = new Uint8Array(total);
  const view = new DataView(bytes.buffer);
  bytes.set(MAGIC, 0);
  view.setUint16(4, STATE_FORMAT_VERSION, true);
  view.setUint32(8, json.length, true);
  bytes.set(json, PREAMBLE_BYTES);
  let offset = payloadStart;
  for (const [, values] of arrays) {
    for (let i = 0; i < values.length; i++, offset += 8)
      view.setFloat64(offset, values[i] as number, true);
  }
  return bytes;
}

function isHeader(value: unknown): value is Header {
  if (typeof value !== 'object' || value === null) return false;
  const h = value as Record<string, unknown>;
  return (
    typeof h['strategy'] === 'string' &&
    Number.isSafeInteger(h['version']) &&
    Number.isSafeInteger(h['round']) &&
    (h['round'] as number) >= 0 &&
    typeof h['scalars'] === 'object' &&
    h['scalars'] !== null &&
    Object.values(h['scalars']).every((x) => typeof x === 'number' && Number.isFinite(x)) &&
    Array.isArray(h['arrays']) &&
    h['arrays'].every(
      (a: unknown) =>
        typeof a === 'object' &&
        a !== null &&
        typeof (a as Record<string, unknown>)['name'] === 'string' &&
        Number.isSafeInteger((a as Record<string, unknown>)['length']) &&
        ((a as Record<string, unknown>)['length'] as number) >= 0,
    )
  );
}

/** Reads bytes written by `encodeStrategyState`; anything else is INVALID_ARGUMENT. */
export function decodeStrategyState(bytes: Uint8Array): StrategyState {
  if (bytes.length < PREAMBLE_BYTES || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw stateError('not a Tessera strategy state (no "TSST" magic)');
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const layout = view.getUint16(4, true);
  if (layout !== STATE_FORMAT_VERSION) {
    throw stateError(`layout version ${layout} is not supported (this build reads 1)`);
  }
  const headerLength = view.getUint32(8, true);
  if (PREAMBLE_BYTES + headerLength > bytes.length) throw stateError('header runs past the end');
  let header: unknown;
  try {
    header = JSON.parse(
      new TextDecoder('utf-8', { fatal: true }).decode(
        bytes.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + headerLength),
      ),
    );
  } catch {
    throw stateError('header is not UTF-8 JSON');
  }
  if (!isHeader(header)) throw stateError('header lacks strategy, version, round or arrays');
  let offset = align8(PREAMBLE_BYTES + headerLength);
  const expected = offset + header.arrays.reduce((sum, a) => sum + a.length * 8, 0);
  if (expected !== bytes.length) {
    throw stateError(`${bytes.length} bytes where the header describes ${expected}`);
  }
  const arrays: Record<string, Float64Array> = {};
  for (const { name, length } of header.arrays) {
    const values = new Float64Array(length);
    for (let i = 0; i < length; i++, offset += 8) values[i] = view.getFloat64(offset, true);
    arrays[name] = values;
  }
  return {
    strategy: header.strategy,
    version: header.version,
    round: header.round,
    scalars: header.scalars,
    arrays,
  };
}

/**
 * Checks that `state` is one this strategy wrote, of the right version, with exactly the
 * named arrays (each of `paramCount` values when given) and scalars.
 */
export function checkState(
  state: StrategyState,
  expected: {
    strategy: string;
    version: number;
    arrays: readonly string[];
    scalars: readonly string[];
    paramCount?: number;
  },
): void {
  if (state.strategy !== expected.strategy) {
    throw stateError(`written by ${state.strategy}, cannot restore into ${expected.strategy}`, {
      strategy: state.strategy,
    });
  }
  if (state.version !== expected.version) {
    throw stateError(
      `${state.strategy} state version ${state.version}; this build reads version ${expected.version}`,
      { version: state.version },
    );
  }
  const names = Object.keys(state.arrays).sort();
  if (names.join(',') !== [...expected.arrays].sort().join(',')) {
    throw stateError(
      `${state.strategy} state has arrays [${names.join(', ')}], expected [${expected.arrays.join(', ')}]`,
    );
  }
  const scalars = Object.keys(state.scalars).sort();
  if (scalars.join(',') !== [...expected.scalars].sort().join(',')) {
    throw stateError(
      `${state.strategy} state has scalars [${scalars.join(', ')}], expected [${expected.scalars.join(', ')}]`,
    );
  }
  const lengths = new Set(Object.values(state.arrays).map((a) => a.length));
  if (lengths.size > 1) throw stateError(`${state.strategy} state arrays differ in length`);
  const [length] = lengths;
  if (expected.paramCount !== undefined && length !== undefined && length !== expected.paramCount) {
    throw stateError(
      `${state.strategy} state is for ${length} parameters; the model has ${expected.paramCount}`,
      { paramCount: length },
    );
  }
}

/**
 * Where a stateful strategy keeps its state, with the one rule the coordinator relies on: a
 * round that is begun again (the engine retries a round that got too few updates with a new
 * sample) starts from the same state as its first attempt, so an attempt that was thrown away
 * leaves no trace in the state of the run, and a replay of the committed rounds agrees.
 */
export class StateSlot {
  private current: StrategyState | null = null;
  /** The state `current` was computed from, kept while a retry of `current.round` may come. */
  private previous: StrategyState | null = null;
  /** False after a restore: what the restored state was computed from is not known here. */
  private previousKnown = true;

  constructor(
    private readonly strategy: string,
    private readonly version: number,
    private readonly arrays: readonly string[],
    private readonly scalars: readonly string[],
  ) {}

  get(): StrategyState | null {
    return this.current;
  }

  restore(state: StrategyState | null): void {
    if (state !== null) checkState(state, this.expected());
    this.current = state;
    this.previous = null;
    this.previousKnown = state === null;
  }

  private expected(paramCount?: number) {
    const { strategy, version, arrays, scalars } = this;
    return paramCount === undefined
      ? { strategy, version, arrays, scalars }
      : { strategy, version, arrays, scalars, paramCount };
  }

  /**
   * The state round `round` starts from, of `paramCount` values: null before the first round.
   * A second begin of the same round rolls back to what its first attempt started from.
   */
  startOf(round: number, paramCount: number): StrategyState | null {
    if (this.current !== null && this.current.round === round) {
      if (!this.previousKnown) {
        throw new TesseraError(
          ErrorCode.CONFLICT,
          `${this.strategy}: the restored state is from after round ${round}; run round ${round + 1} next`,
          { field: 'strategyState', round },
        );
      }
      this.current = this.previous;
      this.previous = null;
      this.previousKnown = false;
    }
    const state = this.current;
    if (state === null) return null;
    if (state.round > round) {
      throw new TesseraError(
        ErrorCode.CONFLICT,
        `${this.strategy}: its state is from round ${state.round}; round ${round} is before it`,
        { field: 'strategyState', round: state.round },
      );
    }
    checkState(state, this.expected(paramCount));
    return state;
  }

  /** Adopts the state after `round`. */
  set(
    round: number,
    arrays: Record<string, Float64Array>,
    scalars: Record<string, number> = {},
  ): void {
    this.previous = this.current;
    this.previousKnown = true;
    this.current = { strategy: this.strategy, version: this.version, round, scalars, arrays };
  }
}

/** `restore` of a strategy that keeps nothing between rounds: only null is accepted. */
export function refuseState(strategy: string, state: StrategyState | null): void {
  if (state !== null) {
    throw stateError(`${strategy} keeps no state; got a ${state.strategy} state`, {
      strategy: state.strategy,
    });
  }
}
