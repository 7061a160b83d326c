/**
 * Shamir t-of-n secret sharing through `shamir-secret-sharing` (Privy; independently audited,
 * no dependencies, WebCrypto's CSPRNG in browsers): each byte of the secret is shared over
 * GF(2^8), and a share is `y-bytes ‖ x` (secret length + 1 bytes, x in 1..255, distinct).
 */
import { combine, split } from 'shamir-secret-sharing';
import { ownBytes } from './bytes.js';

/** A share of a 32-byte secret: 32 bytes of y, then its x-coordinate. */
export const SHARE_BYTES = 33;

export function splitSecret(secret: Uint8Array, holders: number, threshold: number) {
  return split(ownBytes(secret), holders, threshold);
}

/** The x-coordinate of a share (its last byte). */
export function shareX(share: Uint8Array): number {
  return share[share.length - 1] as number;
}

/**
 * The secret from `threshold` of the shares (more would add work, not correctness: any t of
 * them interpolate the same polynomial). The caller has checked x-coordinates are distinct.
 */
export function combineShares(shares: readonly Uint8Array[], threshold: number) {
  return combine(shares.slice(0, threshold).map(ownBytes));
}
