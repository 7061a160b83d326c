/**
 * Every bound the coordinator puts on what a client sends, in one table: the zod schemas
 * (messages.ts), the MessagePack pre-scan (msgpack-scan.ts), the parser (parser.ts) and the
 * socket edge read them from here, and docs/protocol.md §9 states the same numbers (a test
 * checks that it does).
 */

/** Postgres INTEGER, the column type of every count and duration the coordinator stores. */
export const PG_INT_MAX = 2 ** 31 - 1;

export const WIRE_LIMITS = {
  /**
   * Examples in one update or evaluation. Below PG_INT_MAX with room for the sum of a few
   * replies; the engine still has to keep a round's sum within the column.
   */
  maxNumExamples: 1_000_000_000,
  /** `round`, `durationMs`, `epoch(s)`, `batch(es)`: anything else stored as INTEGER. */
  maxInteger: PG_INT_MAX,
  /**
   * Largest magnitude of a metric value or a loss. A weighted sum of 10^4 such values times
   * 10^9 examples stays far below float64's 1.8e308, so the round's means cannot overflow.
   */
  maxMetricMagnitude: 1e12,
  maxMetrics: 64,
  maxMetricKeyLength: 64,
  maxTokenLength: 512,
  maxIdLength: 128,
  maxClientNameLength: 64,
  maxClientVersionLength: 32,
  maxBackendLength: 64,
  maxErrorMessageLength: 2000,
  /**
   * The train instruction's `strategy` (S→C, docs/protocol.md §5.2): a client checks it against
   * these before it reads a setting, so a coordinator's strategy cannot make it hold an
   * unbounded map. The engine checks what its strategy configures against the same bounds.
   */
  maxStrategySettings: 16,
  /** Longest strategy name, setting name or text setting value. */
  maxStrategyTextLength: 64,
  /**
   * FedProx's μ. With learning rate η each step scales w − w_global by (1 − ημ) besides the
   * data gradient, so ημ ≥ 2 diverges; 100 keeps every μ of Li et al. 2020 (0.001 … 1) and
   * still fails loudly on a typo like 1e6.
   */
  maxProximalMu: 100,
  /**
   * Columns one `statistics` reply may summarise (docs/protocol.md §5.10): a run whose task
   * leaves more columns to statistics is refused at creation, since no reply could carry them.
   */
  maxStatisticsColumns: 1000,
  /**
   * Categories one `statistics` reply may list over all its columns (each column at most
   * @tessera/data's MAX_CATEGORIES, 1,000): what makes the frame's element count below.
   */
  maxStatisticsCategories: 10_000,
} as const;

/** Structural limits of one decoded MessagePack document (see scanMsgpack). */
export interface ScanLimits {
  /** Map entries plus array items, over the whole document. */
  maxElements: number;
  /** Containers inside containers; the packet map itself is depth 1. */
  maxDepth: number;
  /** Longest `str`, in bytes (UTF-8). `bin` values are bounded by the frame size only. */
  maxStringBytes: number;
}

/**
 * Elements of the largest legitimate `statistics` reply: each numeric column is 8 (its map of
 * at most 7 entries, and its place in `columns`), each categorical one 4 plus 3 per category
 * (its place in `counts` and the 2 entries of `{category, count}`); 1,024 for the envelope.
 */
const STATISTICS_FRAME_ELEMENTS =
  1024 + 8 * WIRE_LIMITS.maxStatisticsColumns + 3 * WIRE_LIMITS.maxStatisticsCategories;

/**
 * What the coordinator accepts from a client. An update with 64 metrics has about 90 elements
 * at depth 4; the largest frame by elements is a `statistics` reply (STATISTICS_FRAME_ELEMENTS,
 * 39,024), whose `{category, count}` maps sit at depth 8. The longest string is an error
 * message of 2,000 characters (at most 8,000 UTF-8 bytes).
 */
export const CLIENT_FRAME_LIMITS: ScanLimits = {
  maxElements: STATISTICS_FRAME_ELEMENTS,
  maxDepth: 8,
  maxStringBytes: 8192,
};

/**
 * What a client accepts from the coordinator (the default of createMsgpackParser): looser,
 * since the console's snapshot lists every connected client, but still bounded.
 */
export const PEER_FRAME_LIMITS: ScanLimits = {
  maxElements: 1_000_000,
  maxDepth: 32,
  maxStringBytes: 16 * 1024 * 1024,
};

/**
 * Before the handshake is accepted, a connection may send frames of this size only: the
 * CONNECT with its auth object needs well under 1 KiB (178 B in docs/protocol.md §12).
 */
export const PRE_AUTH_MAX_FRAME_BYTES = 4096;

/**
 * The default application frame limit, announced in `welcome`: the largest update of the model
 * zoo (`fedavg-cnn`, 1,663,370 parameters = 6,653,480 B of weights, plus a few hundred bytes of
 * envelope) with about 25 % headroom.
 */
export const DEFAULT_MAX_FRAME_BYTES = 8 * 1024 * 1024;

/**
 * The transport cap (Engine.IO `maxHttpBufferSize`) above the application limit: frames up to
 * it still reach the parser and get PAYLOAD_TOO_LARGE; larger ones close the connection.
 */
export const TRANSPORT_MARGIN_BYTES = 1024 * 1024;

/** A connection must have joined the namespace (handshake accepted) within this time. */
export const AUTH_DEADLINE_MS = 10_000;

/** Token buckets of the handshake: `capacity` attempts at once, then one per `refillMs`. */
export interface RateLimit {
  capacity: number;
  refillMs: number;
}

/**
 * `task` requests per connection: a client needs one per task it trains (it keeps the
 * definition), and each answer may be megabytes of topology, so a loop asking again and again
 * is refused (RATE_LIMITED) rather than served.
 */
export const TASK_REQUEST_RATE_LIMIT: RateLimit = { capacity: 8, refillMs: 5000 };

export const HANDSHAKE_RATE_LIMITS = {
  /** Per remote address (not for loopback: simulations and a local proxy share it). */
  perAddress: { capacity: 30, refillMs: 1000 },
  /** Per presented token. */
  perToken: { capacity: 6, refillMs: 5000 },
} as const satisfies Record<string, RateLimit>;
