/**
 * The messages of a SecAgg round, as plain objects with binary fields as Uint8Array: what the
 * engine puts on the wire (msgpackr carries them as they are). The sender of a client message
 * is whoever the transport authenticated, never a field of the message.
 *
 * Rounds of Bonawitz et al. 2017 (semi-honest server: no signatures, no consistency round):
 *   0. C→S AdvertiseKeys           S→C AdvertisedKeys (broadcast: U1)
 *   1. C→S ShareKeys               S→C SharesBundle (one per client of U2)
 *   2. C→S MaskedInput             S→C UnmaskRequest (broadcast to U3)
 *   3. C→S UnmaskResponse          the server reconstructs and unmasks the sum.
 */
import { ErrorCode } from '@tessera/protocol';
import { refuse } from './errors.js';

export interface AdvertiseKeys {
  roundId: string;
  /** c_u^PK: agrees the keys that encrypt shares between clients. */
  encryptionPublicKey: Uint8Array;
  /** s_u^PK: agrees the pairwise mask seeds. */
  maskingPublicKey: Uint8Array;
}

export interface ParticipantKeys {
  clientId: string;
  encryptionPublicKey: Uint8Array;
  maskingPublicKey: Uint8Array;
}

export interface AdvertisedKeys {
  roundId: string;
  /** U1: the clients whose keys the server accepted, in the setup's order. */
  participants: ParticipantKeys[];
}

export interface EncryptedShareOut {
  /** The client of U1 that can decrypt it. */
  to: string;
  /** nonce(12) ‖ AES-256-GCM(keyShare(33) ‖ selfMaskShare(33)) ‖ tag(16): 94 bytes. */
  ciphertext: Uint8Array;
}

export interface ShareKeys {
  roundId: string;
  /** SHA-256 commitment to the self-mask seed b_u, to verify its reconstruction. */
  selfMaskCommitment: Uint8Array;
  /** One for each other client of U1. */
  encryptedShares: EncryptedShareOut[];
}

export interface EncryptedShareIn {
  from: string;
  ciphertext: Uint8Array;
}

export interface SharesBundle {
  roundId: string;
  /** One from each other client of U2 (U2 = these senders and the recipient). */
  encryptedShares: EncryptedShareIn[];
}

export interface MaskedInput {
  roundId: string;
  /** (parameterCount + 1) little-endian uint32 words: y_u = x_u + PRG(b_u) ± PRG(s_uv) mod 2^32. */
  maskedVector: Uint8Array;
}

export interface UnmaskRequest {
  roundId: string;
  /** U3: the clients whose masked input is in the sum. */
  survivors: string[];
  /** U2 \ U3: shared keys, then sent no masked input. */
  dropped: string[];
}

export interface ShareOf {
  /** Whose secret this is a share of. */
  of: string;
  /** 33 bytes: y ‖ x. */
  share: Uint8Array;
}

export interface UnmaskResponse {
  roundId: string;
  /** A share of b_u for each u in U3 (the sender's own included). */
  selfMaskShares: ShareOf[];
  /** A share of s_u^SK for each u in U2 \ U3. */
  keyShares: ShareOf[];
}

// Guards for untrusted input: each names the field at fault (MALFORMED_FRAME, data.field).

function malformed(field: string, message: string): never {
  return refuse(ErrorCode.MALFORMED_FRAME, message, { field });
}

export function expectRecord(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    malformed(field, `${field} must be an object`);
  }
  return value as Record<string, unknown>;
}

export function expectString(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 256) {
    malformed(field, `${field} must be a string of 1 to 256 characters`);
  }
  return value;
}

export function expectBytes(value: unknown, field: string): Uint8Array {
  if (!(value instanceof Uint8Array)) malformed(field, `${field} must be bytes`);
  return value;
}

export function expectArray(value: unknown, field: string, maxLength: number): unknown[] {
  if (!Array.isArray(value) || value.length > maxLength) {
    malformed(field, `${field} must be an array of at most ${maxLength} items`);
  }
  return value;
}

/** Refuses a message of another round (a replay from an earlier one, or a misroute). */
export function expectRound(message: Record<string, unknown>, roundId: string): void {
  const received = expectString(message['roundId'], 'roundId');
  if (received !== roundId) {
    refuse(ErrorCode.WRONG_ROUND, 'the message belongs to another SecAgg round', {
      field: 'roundId',
      expected: roundId,
      received,
    });
  }
}

export function expectLength(bytes: Uint8Array, expected: number, field: string): void {
  if (bytes.length !== expected) {
    refuse(ErrorCode.MALFORMED_FRAME, `${field} must be ${expected} bytes`, {
      field,
      expectedBytes: expected,
      receivedBytes: bytes.length,
    });
  }
}
