/**
 * The one error type of Tessera. Every failure that crosses a package boundary, or the
 * wire, is a TesseraError with a code from this table; anything else is wrapped.
 * The wire shape is `{ code, message, data? }` (see docs/protocol.md).
 */
export const ErrorCode = {
  /** The token is unknown, malformed or revoked. */
  UNAUTHORIZED: 'UNAUTHORIZED',
  /** The client speaks another protocol version. */
  PROTOCOL_VERSION_MISMATCH: 'PROTOCOL_VERSION_MISMATCH',
  /** A frame failed schema validation (wrong types, missing fields). */
  MALFORMED_FRAME: 'MALFORMED_FRAME',
  /** A frame is larger than the coordinator accepts. */
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  /** A weight vector has the wrong number of parameters. */
  WEIGHTS_LENGTH_MISMATCH: 'WEIGHTS_LENGTH_MISMATCH',
  /** A weight vector contains NaN or +-Infinity. */
  NON_FINITE_WEIGHTS: 'NON_FINITE_WEIGHTS',
  /** An update names a run this client is not training. */
  WRONG_RUN: 'WRONG_RUN',
  /** An update names a round that is not the open one. */
  WRONG_ROUND: 'WRONG_ROUND',
  /** The client was not selected for this round. */
  NOT_SELECTED: 'NOT_SELECTED',
  /** The client already sent its reply for this round. */
  DUPLICATE_UPDATE: 'DUPLICATE_UPDATE',
  /** Invalid input to an API or a function (bad config, unknown model...). */
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  /** A named entity does not exist. */
  NOT_FOUND: 'NOT_FOUND',
  /** The operation is not allowed in the current state (e.g. starting a finished run). */
  CONFLICT: 'CONFLICT',
  /** A requested backend, dataset or other resource is not available here. */
  UNAVAILABLE: 'UNAVAILABLE',
  /** REST: the caller is known but its role may not do this (a researcher changing state). */
  FORBIDDEN: 'FORBIDDEN',
  /** REST: too many attempts (console logins); retry after `data.retryAfterSeconds`. */
  RATE_LIMITED: 'RATE_LIMITED',
  /** REST: an upload of a type the route does not take (predict takes PNG, JPEG or JSON). */
  UNSUPPORTED_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  /** Secure aggregation: fewer than the threshold t of clients are left at a step of the round. */
  SECAGG_THRESHOLD_NOT_MET: 'SECAGG_THRESHOLD_NOT_MET',
  /** Secure aggregation: an encrypted share fails AES-GCM authentication (tampered or misrouted). */
  SECAGG_DECRYPTION_FAILED: 'SECAGG_DECRYPTION_FAILED',
  /** Secure aggregation: a public key, or a reconstructed key or seed, that does not verify. */
  SECAGG_KEY_INVALID: 'SECAGG_KEY_INVALID',
  /**
   * Local DP: an update whose change has a norm outside the range the run's clip norm and
   * noise give (no noise added, or not clipped): the client is out of the round.
   */
  LOCAL_DP_NORM_OUT_OF_RANGE: 'LOCAL_DP_NORM_OUT_OF_RANGE',
  /** Anything unexpected. */
  INTERNAL: 'INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface WireError {
  code: ErrorCode;
  message: string;
  data?: Record<string, unknown>;
}

export class TesseraError extends Error {
  override readonly name = 'TesseraError';
  readonly code: ErrorCode;
  readonly data: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    data?: Record<string, unknown>,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.code = code;
    this.data = data;
  }

  /** Any thrown value as a TesseraError: TesseraErrors pass through, the rest become INTERNAL. */
  static from(cause: unknown): TesseraError {
    if (cause instanceof TesseraError) return cause;
    const message = cause instanceof Error ? cause.message : String(cause);
    return new TesseraError(ErrorCode.INTERNAL, message, undefined, { cause });
  }

  toWire(): WireError {
    return this.data === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, data: this.data };
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ErrorCode, value);
}
