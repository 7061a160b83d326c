/**
 * The client-to-client channel through the server: a pair's shares travel under AES-256-GCM
 * with a key both ends agree (ECDH on the encryption keys, then HKDF), a random 96-bit nonce,
 * and additional data naming the round, the sender and the recipient, so the server can
 * neither read a share nor pass one on as from another client, to another client, or in
 * another round: any of those fails authentication.
 */
import { ErrorCode } from '@tessera/protocol';
import { concatBytes, encodeFields, ownBytes, randomBytes } from './bytes.js';
import { refuse } from './errors.js';
import { SHARE_BYTES } from './shamir.js';

const NONCE_BYTES = 12;
const TAG_BYTES = 16;
export const SHARE_PAIR_BYTES = 2 * SHARE_BYTES;
export const CIPHERTEXT_BYTES = NONCE_BYTES + SHARE_PAIR_BYTES + TAG_BYTES;

export function channelKey(secret: Uint8Array): Promise<CryptoKey> {
  return globalThis.crypto.subtle.importKey('raw', ownBytes(secret), 'AES-GCM', false, [
    'encrypt',
    'decrypt',
  ]);
}

function additionalData(roundId: string, from: string, to: string) {
  return encodeFields('tessera-secagg/v1 shares', roundId, from, to);
}

export interface SharePair {
  keyShare: Uint8Array;
  selfMaskShare: Uint8Array;
}

export async function encryptSharePair(
  key: CryptoKey,
  roundId: string,
  from: string,
  to: string,
  pair: SharePair,
): Promise<Uint8Array> {
  const nonce = randomBytes(NONCE_BYTES);
  const sealed = await globalThis.crypto.subtle.encrypt(
    { name: 'AES-GCM', iv: nonce, additionalData: additionalData(roundId, from, to) },
    key,
    ownBytes(concatBytes(pair.keyShare, pair.selfMaskShare)),
  );
  return concatBytes(nonce, new Uint8Array(sealed));
}

/** The shares in a ciphertext, or SECAGG_DECRYPTION_FAILED naming `field`. */
export async function decryptSharePair(
  key: CryptoKey,
  roundId: string,
  from: string,
  to: string,
  ciphertext: Uint8Array,
  field: string,
): Promise<SharePair> {
  let plain: Uint8Array;
  try {
    plain = new Uint8Array(
      await globalThis.crypto.subtle.decrypt(
        {
          name: 'AES-GCM',
          iv: ownBytes(ciphertext.subarray(0, NONCE_BYTES)),
          additionalData: additionalData(roundId, from, to),
        },
        key,
        ownBytes(ciphertext.subarray(NONCE_BYTES)),
      ),
    );
  } catch {
    return refuse(
      ErrorCode.SECAGG_DECRYPTION_FAILED,
      `the shares from ${from} do not authenticate (tampered, misrouted or replayed)`,
      { field, from },
    );
  }
  return {
    keyShare: plain.slice(0, SHARE_BYTES),
    selfMaskShare: plain.slice(SHARE_BYTES, SHARE_PAIR_BYTES),
  };
}

/**
 * SHA-256(fields ‖ b_u): binds the self-mask seed before any share of it is revealed, so the
 * server can tell a wrong reconstruction from a right one. b_u is 256 random bits, so the hash
 * reveals nothing about it that could be searched.
 */
export async function selfMaskCommitment(
  roundId: string,
  clientId: string,
  seed: Uint8Array,
): Promise<Uint8Array> {
  const digest = await globalThis.crypto.subtle.digest(
    'SHA-256',
    ownBytes(concatBytes(encodeFields('tessera-secagg/v1 self-mask', roundId, clientId), seed)),
  );
  return new Uint8Array(digest);
}
