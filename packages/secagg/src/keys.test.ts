import { ErrorCode } from '@tessera/protocol';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { SecAggClient } from './client.js';
import {
  agree,
  CURVES,
  chooseCurve,
  exportPrivateScalar,
  generateKeyPair,
  importPublicKey,
  importVerifiedPrivateKey,
  PUBLIC_KEY_BYTES,
  supportedCurves,
} from './keys.js';
import { expectRefusal, makeSetup } from './round.fixtures.js';

describe('key agreement through WebCrypto', () => {
  it('Node has both curves, X25519 first', async () => {
    expect(await supportedCurves()).toEqual(['X25519', 'P-256']);
  });

  it('chooses X25519 when everyone has it, P-256 when a party lacks it, and refuses when none is common', async () => {
    expect(chooseCurve(['X25519', 'P-256'], [['X25519', 'P-256'], ['X25519']])).toBe('X25519');
    expect(chooseCurve(['X25519', 'P-256'], [['X25519', 'P-256'], ['P-256']])).toBe('P-256');
    await expectRefusal(() => chooseCurve(['X25519'], [['P-256']]), ErrorCode.UNAVAILABLE, 'curve');
  });

  it.each(CURVES)(
    '%s: both ends agree the same bytes, bound to purpose, round and pair',
    async (curve) => {
      const a = await generateKeyPair(curve, false);
      const b = await generateKeyPair(curve, false);
      expect(a.publicKey).toHaveLength(PUBLIC_KEY_BYTES[curve]);
      const aPublic = await importPublicKey(curve, a.publicKey, 'a');
      const bPublic = await importPublicKey(curve, b.publicKey, 'b');
      const ab = await agree(curve, a.privateKey, bPublic, 'pairwise-mask', 'r1', 'alice', 'bob');
      const ba = await agree(curve, b.privateKey, aPublic, 'pairwise-mask', 'r1', 'bob', 'alice');
      expect(ab).toEqual(ba);
      expect(ab).toHaveLength(32);
      for (const other of [
        await agree(curve, a.privateKey, bPublic, 'share-encryption', 'r1', 'alice', 'bob'),
        await agree(curve, a.privateKey, bPublic, 'pairwise-mask', 'r2', 'alice', 'bob'),
        await agree(curve, a.privateKey, bPublic, 'pairwise-mask', 'r1', 'alice', 'carol'),
      ]) {
        expect(other).not.toEqual(ab);
      }
    },
  );

  it.each(CURVES)(
    '%s: a reconstructed scalar verifies against its public key, a wrong one does not',
    async (curve) => {
      const pair = await generateKeyPair(curve, true);
      const other = await generateKeyPair(curve, true);
      const scalar = await exportPrivateScalar(pair.privateKey);
      expect(scalar).toHaveLength(32);
      const imported = await importVerifiedPrivateKey(curve, scalar, pair.publicKey, 'alice');
      // The imported key agrees the same secret as the original.
      const peer = await importPublicKey(curve, other.publicKey, 'peer');
      expect(await agree(curve, imported, peer, 'pairwise-mask', 'r', 'alice', 'bob')).toEqual(
        await agree(curve, pair.privateKey, peer, 'pairwise-mask', 'r', 'alice', 'bob'),
      );
      const wrong = await exportPrivateScalar(other.privateKey);
      const error = await expectRefusal(
        () => importVerifiedPrivateKey(curve, wrong, pair.publicKey, 'alice'),
        ErrorCode.SECAGG_KEY_INVALID,
      );
      expect(error.data?.['clientId']).toBe('alice');
    },
  );

  it('refuses public keys that do not verify: wrong length, not a point, small order', async () => {
    await expectRefusal(
      () => importPublicKey('X25519', new Uint8Array(31).fill(1), 'maskingPublicKey'),
      ErrorCode.SECAGG_KEY_INVALID,
      'maskingPublicKey',
    );
    // The all-zero u-coordinate is a point of order 1 or 2: its shared secret would be zero.
    await expectRefusal(
      () => importPublicKey('X25519', new Uint8Array(32), 'maskingPublicKey'),
      ErrorCode.SECAGG_KEY_INVALID,
      'maskingPublicKey',
    );
    // (1, 1) is not on P-256.
    const offCurve = new Uint8Array(65);
    offCurve[0] = 4;
    offCurve[32] = 1;
    offCurve[64] = 1;
    await expectRefusal(
      () => importPublicKey('P-256', offCurve, 'encryptionPublicKey'),
      ErrorCode.SECAGG_KEY_INVALID,
      'encryptionPublicKey',
    );
    const x25519 = await generateKeyPair('X25519', false);
    await expectRefusal(
      () => importPublicKey('P-256', x25519.publicKey, 'encryptionPublicKey'),
      ErrorCode.SECAGG_KEY_INVALID,
      'encryptionPublicKey',
    );
  });
});

describe('a runtime without X25519 (older browsers)', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('is found by supportedCurves, and a client refuses an X25519 round with UNAVAILABLE', async () => {
    const subtle = globalThis.crypto.subtle;
    const generateKey = subtle.generateKey.bind(subtle);
    // What such a runtime's WebCrypto does: NotSupportedError for the algorithm name.
    vi.spyOn(subtle, 'generateKey').mockImplementation(((algorithm, extractable, usages) => {
      const name = typeof algorithm === 'string' ? algorithm : algorithm.name;
      if (name === 'X25519') {
        return Promise.reject(new DOMException('Unrecognized name.', 'NotSupportedError'));
      }
      return generateKey(algorithm as EcKeyGenParams, extractable, usages as KeyUsage[]);
    }) as typeof subtle.generateKey);
    expect(await supportedCurves()).toEqual(['P-256']);
    const setup = makeSetup(3);
    await expectRefusal(
      () => SecAggClient.create(setup, 'client-000'),
      ErrorCode.UNAVAILABLE,
      'curve',
    );
    // The same client joins a P-256 round.
    const client = await SecAggClient.create({ ...setup, curve: 'P-256' }, 'client-000');
    expect(client.advertise().maskingPublicKey).toHaveLength(65);
  });
});
