/**
 * Key agreement through WebCrypto: X25519 where the runtime has it (Node 20, current
 * Chromium, Firefox, Safari), P-256 ECDH otherwise. The server announces one curve per round
 * (see `chooseCurve`); every party of that round uses it.
 */
import { ErrorCode } from '@tessera/protocol';
import {
  bytesEqual,
  concatBytes,
  encodeFields,
  fromBase64Url,
  ownBytes,
  utf8Bytes,
} from './bytes.js';
import { refuse } from './errors.js';

export const CURVES = ['X25519', 'P-256'] as const;
export type Curve = (typeof CURVES)[number];

/** Public keys travel raw: 32 bytes (X25519 u-coordinate), 65 bytes (P-256 uncompressed point). */
export const PUBLIC_KEY_BYTES: Readonly<Record<Curve, number>> = { X25519: 32, 'P-256': 65 };
/** A private scalar as it is Shamir-shared: 32 bytes on both curves. */
export const PRIVATE_KEY_BYTES = 32;

/**
 * PKCS#8 DER prefixes that, followed by the 32-byte private scalar, make a complete PKCS#8
 * document: RFC 8410 for X25519, RFC 5915 (ECPrivateKey without the optional public key) for
 * P-256. Importing that way makes the runtime compute the public key, which is then compared
 * with the one the client advertised: the check that a reconstructed key verifies.
 */
const PKCS8_PREFIX: Readonly<Record<Curve, Uint8Array>> = {
  X25519: hex('302e020100300506032b656e04220420'),
  'P-256': hex('3041020100301306072a8648ce3d020106082a8648ce3d030107042730250201010420'),
};

function hex(text: string): Uint8Array {
  return Uint8Array.from(text.match(/../g) ?? [], (pair) => Number.parseInt(pair, 16));
}

function algorithm(curve: Curve): AlgorithmIdentifier | EcKeyImportParams {
  return curve === 'X25519' ? { name: 'X25519' } : { name: 'ECDH', namedCurve: 'P-256' };
}

const subtle = () => globalThis.crypto.subtle;

/** The curves this runtime can use, preferred first (found by trying, since no API lists them). */
export async function supportedCurves(): Promise<Curve[]> {
  const found: Curve[] = [];
  for (const curve of CURVES) {
    try {
      const pair = (await subtle().generateKey(algorithm(curve), false, [
        'deriveBits',
      ])) as CryptoKeyPair;
      await subtle().deriveBits(
        { name: curve === 'X25519' ? 'X25519' : 'ECDH', public: pair.publicKey },
        pair.privateKey,
        256,
      );
      found.push(curve);
    } catch {
      // Not available here: the next curve is the fallback.
    }
  }
  return found;
}

/**
 * The curve for a round: X25519 when the server and every client support it, else P-256 when
 * all do; refused when no curve is common to everyone.
 */
export function chooseCurve(server: readonly Curve[], clients: readonly (readonly Curve[])[]) {
  for (const curve of CURVES) {
    if (server.includes(curve) && clients.every((supported) => supported.includes(curve))) {
      return curve;
    }
  }
  return refuse(ErrorCode.UNAVAILABLE, 'no key-agreement curve is supported by every party', {
    field: 'curve',
  });
}

export interface KeyPair {
  curve: Curve;
  privateKey: CryptoKey;
  /** Raw public key bytes, as advertised. */
  publicKey: Uint8Array;
}

/** A fresh key pair; `extractable` only for the masking key, whose scalar is Shamir-shared. */
export async function generateKeyPair(curve: Curve, extractable: boolean): Promise<KeyPair> {
  const pair = (await subtle().generateKey(algorithm(curve), extractable, [
    'deriveBits',
  ])) as CryptoKeyPair;
  const publicKey = new Uint8Array(await subtle().exportKey('raw', pair.publicKey));
  return { curve, privateKey: pair.privateKey, publicKey };
}

/** The 32-byte private scalar of an extractable key (JWK `d`). */
export async function exportPrivateScalar(key: CryptoKey): Promise<Uint8Array> {
  const jwk = await subtle().exportKey('jwk', key);
  if (typeof jwk.d !== 'string') throw new Error('the key has no private part');
  const scalar = fromBase64Url(jwk.d);
  if (scalar.length !== PRIVATE_KEY_BYTES) throw new Error('unexpected private scalar length');
  return scalar;
}

function rawPublicFromJwk(curve: Curve, jwk: JsonWebKey): Uint8Array {
  if (curve === 'X25519') return fromBase64Url(jwk.x ?? '');
  return concatBytes(Uint8Array.of(4), fromBase64Url(jwk.x ?? ''), fromBase64Url(jwk.y ?? ''));
}

/**
 * A private key from its reconstructed scalar, accepted only if its public key is the one
 * advertised: a wrong share gives a different scalar, refused with SECAGG_KEY_INVALID.
 */
export async function importVerifiedPrivateKey(
  curve: Curve,
  scalar: Uint8Array,
  advertisedPublicKey: Uint8Array,
  clientId: string,
): Promise<CryptoKey> {
  let key: CryptoKey;
  let derivedPublic: Uint8Array;
  try {
    key = await subtle().importKey(
      'pkcs8',
      ownBytes(concatBytes(PKCS8_PREFIX[curve], scalar)),
      algorithm(curve),
      true,
      ['deriveBits'],
    );
    derivedPublic = rawPublicFromJwk(curve, await subtle().exportKey('jwk', key));
  } catch (cause) {
    return refuse(ErrorCode.SECAGG_KEY_INVALID, `the reconstructed key of ${clientId} is invalid`, {
      clientId,
      reason: cause instanceof Error ? cause.message : String(cause),
    });
  }
  if (!bytesEqual(derivedPublic, advertisedPublicKey)) {
    return refuse(
      ErrorCode.SECAGG_KEY_INVALID,
      `the reconstructed key of ${clientId} does not match its advertised public key`,
      { clientId },
    );
  }
  return key;
}

/**
 * Imports an advertised public key, refusing one of the wrong length, one that is not a point
 * of the curve, and (X25519) a small-order point, whose shared secret would be all zeros and
 * known to everyone: found by an agreement with a throw-away key.
 */
export async function importPublicKey(
  curve: Curve,
  bytes: Uint8Array,
  field: string,
): Promise<CryptoKey> {
  if (bytes.length !== PUBLIC_KEY_BYTES[curve]) {
    return refuse(
      ErrorCode.SECAGG_KEY_INVALID,
      `a ${curve} public key is ${PUBLIC_KEY_BYTES[curve]} bytes`,
      {
        field,
        expectedBytes: PUBLIC_KEY_BYTES[curve],
        receivedBytes: bytes.length,
      },
    );
  }
  try {
    const key = await subtle().importKey('raw', ownBytes(bytes), algorithm(curve), true, []);
    const probe = await probeKey(curve);
    const secret = new Uint8Array(await agreeBits(curve, probe, key));
    if (secret.every((byte) => byte === 0)) throw new Error('small-order point');
    return key;
  } catch (cause) {
    return refuse(ErrorCode.SECAGG_KEY_INVALID, `not a valid ${curve} public key`, {
      field,
      reason: cause instanceof Error ? cause.message : String(cause),
    });
  }
}

const probeKeys = new Map<Curve, Promise<CryptoKey>>();

/** One throw-away private key per curve, only ever used to probe advertised public keys. */
function probeKey(curve: Curve): Promise<CryptoKey> {
  let key = probeKeys.get(curve);
  if (key === undefined) {
    key = generateKeyPair(curve, false).then((pair) => pair.privateKey);
    probeKeys.set(curve, key);
  }
  return key;
}

function agreeBits(curve: Curve, privateKey: CryptoKey, publicKey: CryptoKey) {
  return subtle().deriveBits(
    { name: curve === 'X25519' ? 'X25519' : 'ECDH', public: publicKey },
    privateKey,
    256,
  );
}

const HKDF_SALT = utf8Bytes('tessera-secagg/v1');

/**
 * 32 bytes from ECDH(privateKey, publicKey) through HKDF-SHA-256, bound to what they are for
 * (`purpose`), the round and the unordered pair of client ids: both ends of a pair derive the
 * same bytes, and no two rounds, pairs or purposes share any.
 */
export async function agree(
  curve: Curve,
  privateKey: CryptoKey,
  publicKey: CryptoKey,
  purpose: 'share-encryption' | 'pairwise-mask',
  roundId: string,
  clientA: string,
  clientB: string,
): Promise<Uint8Array<ArrayBuffer>> {
  const shared = await agreeBits(curve, privateKey, publicKey);
  const ikm = await subtle().importKey('raw', shared, 'HKDF', false, ['deriveBits']);
  const [low, high] = clientA < clientB ? [clientA, clientB] : [clientB, clientA];
  const bits = await subtle().deriveBits(
    {
      name: 'HKDF',
      hash: 'SHA-256',
      salt: HKDF_SALT,
      info: encodeFields(purpose, roundId, low, high),
    },
    ikm,
    256,
  );
  return new Uint8Array(bits);
}
