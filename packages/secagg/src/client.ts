/**
 * A client's side of a SecAgg round as a state machine: each method takes the server's
 * message, checks all of it, and only then changes state and returns the client's reply.
 * A refused message (a TesseraError with its code) leaves the client as it was, so the
 * right message can still follow.
 */
import { ErrorCode } from '@tessera/protocol';
import { bytesEqual, randomBytes, wordsToBytes } from './bytes.js';
import {
  CIPHERTEXT_BYTES,
  channelKey,
  decryptSharePair,
  encryptSharePair,
  type SharePair,
  selfMaskCommitment,
} from './channel.js';
import { refuse } from './errors.js';
import {
  agree,
  exportPrivateScalar,
  generateKeyPair,
  importPublicKey,
  type KeyPair,
} from './keys.js';
import { addInto, applyPairwiseMask } from './masking.js';
import {
  type AdvertisedKeys,
  type AdvertiseKeys,
  expectArray,
  expectBytes,
  expectLength,
  expectRecord,
  expectRound,
  expectString,
  type MaskedInput,
  type ShareKeys,
  type ShareOf,
  type SharesBundle,
  type UnmaskRequest,
  type UnmaskResponse,
} from './messages.js';
import { expandSeed, SEED_BYTES } from './prg.js';
import { quantiseInput, type SecAggInput } from './quantise.js';
import { checkSetup, MAX_CLIENTS, type Quantisation, type SecAggSetup } from './setup.js';
import { splitSecret } from './shamir.js';

export type ClientStage = 'advertise' | 'share' | 'mask' | 'unmask' | 'done';

interface Peer {
  /** AES-GCM key of the channel with this peer (both directions; the AAD tells them apart). */
  channelKey: CryptoKey;
  maskingPublicKey: CryptoKey;
}

function wrongStage(stage: ClientStage, expected: ClientStage): never {
  return refuse(ErrorCode.CONFLICT, `this client is at step '${stage}', not '${expected}'`, {
    stage,
    expected,
  });
}

function thresholdNotMet(step: string, count: number, threshold: number): never {
  return refuse(
    ErrorCode.SECAGG_THRESHOLD_NOT_MET,
    `${count} clients at ${step}, fewer than the threshold ${threshold}`,
    { step, count, threshold },
  );
}

export class SecAggClient {
  readonly setup: SecAggSetup;
  readonly clientId: string;
  private readonly quantisation: Quantisation;
  private readonly encryptionKeys: KeyPair;
  private readonly maskingKeys: KeyPair;
  private stageNow: ClientStage = 'advertise';
  private busy = false;
  /** U1 without this client, after the keys are advertised. */
  private peers = new Map<string, Peer>();
  private selfMaskSeed: Uint8Array | undefined;
  /** This client's own shares of its own secrets (the holder of share number "self"). */
  private ownShares: SharePair | undefined;
  /** U2: the clients whose shares this client holds, itself included. */
  private sharers: string[] = [];
  private heldShares = new Map<string, SharePair>();

  private constructor(
    setup: SecAggSetup,
    clientId: string,
    quantisation: Quantisation,
    encryptionKeys: KeyPair,
    maskingKeys: KeyPair,
  ) {
    this.setup = setup;
    this.clientId = clientId;
    this.quantisation = quantisation;
    this.encryptionKeys = encryptionKeys;
    this.maskingKeys = maskingKeys;
  }

  /** Checks the announced setup and makes this round's two key pairs (fresh for every round). */
  static async create(setup: SecAggSetup, clientId: string): Promise<SecAggClient> {
    const quantisation = checkSetup(setup);
    if (!setup.clientIds.includes(clientId)) {
      refuse(ErrorCode.NOT_SELECTED, 'this client is not in the round', { field: 'clientIds' });
    }
    const frozen: SecAggSetup = { ...setup, clientIds: [...setup.clientIds] };
    let encryptionKeys: KeyPair;
    let maskingKeys: KeyPair;
    try {
      encryptionKeys = await generateKeyPair(setup.curve, false);
      // The masking key's scalar is Shamir-shared, so it must be exportable once.
      maskingKeys = await generateKeyPair(setup.curve, true);
    } catch (cause) {
      // The server chose a curve this runtime lacks: it should have asked (supportedCurves).
      return refuse(ErrorCode.UNAVAILABLE, `this runtime cannot use ${setup.curve}`, {
        field: 'curve',
        reason: cause instanceof Error ? cause.message : String(cause),
      });
    }
    return new SecAggClient(frozen, clientId, quantisation, encryptionKeys, maskingKeys);
  }

  get stage(): ClientStage {
    return this.stageNow;
  }

  /** Round 0: the public keys. */
  advertise(): AdvertiseKeys {
    if (this.busy)
      refuse(ErrorCode.CONFLICT, 'this client is still working on the previous message');
    if (this.stageNow !== 'advertise') wrongStage(this.stageNow, 'advertise');
    this.stageNow = 'share';
    return {
      roundId: this.setup.roundId,
      encryptionPublicKey: this.encryptionKeys.publicKey.slice(),
      maskingPublicKey: this.maskingKeys.publicKey.slice(),
    };
  }

  /**
   * Runs one asynchronous step at a time: a second message while one is being worked on (a
   * server repeating itself) is refused, so one step can never produce two sets of secrets.
   */
  private async exclusive<T>(expected: ClientStage, work: () => Promise<T>): Promise<T> {
    if (this.busy) {
      refuse(ErrorCode.CONFLICT, 'this client is still working on the previous message', {
        stage: this.stageNow,
      });
    }
    if (this.stageNow !== expected) wrongStage(this.stageNow, expected);
    this.busy = true;
    try {
      return await work();
    } finally {
      this.busy = false;
    }
  }

  /** Round 1: U1's keys in; this client's secrets, Shamir-shared and encrypted per peer, out. */
  shareKeys(message: AdvertisedKeys): Promise<ShareKeys> {
    return this.exclusive('share', () => this.shareKeysNow(message));
  }

  private async shareKeysNow(message: AdvertisedKeys): Promise<ShareKeys> {
    const record = expectRecord(message, 'message');
    expectRound(record, this.setup.roundId);
    const list = expectArray(record['participants'], 'participants', MAX_CLIENTS);
    const { curve, roundId, threshold } = this.setup;
    const listed = new Set<string>();
    const seenKeys: Uint8Array[] = [];
    const others: {
      clientId: string;
      field: string;
      encryption: Uint8Array;
      masking: Uint8Array;
    }[] = [];
    for (const [index, item] of list.entries()) {
      const field = `participants[${index}]`;
      const entry = expectRecord(item, field);
      const clientId = expectString(entry['clientId'], `${field}.clientId`);
      const encryption = expectBytes(entry['encryptionPublicKey'], `${field}.encryptionPublicKey`);
      const masking = expectBytes(entry['maskingPublicKey'], `${field}.maskingPublicKey`);
      if (!this.setup.clientIds.includes(clientId)) {
        refuse(ErrorCode.NOT_SELECTED, `${clientId} is not in the round`, {
          field: `${field}.clientId`,
        });
      }
      if (listed.has(clientId)) {
        refuse(ErrorCode.DUPLICATE_UPDATE, `${clientId} is listed twice`, {
          field: `${field}.clientId`,
        });
      }
      listed.add(clientId);
      // Every key of the round is distinct (Bonawitz et al.: abort otherwise): a repeated key
      // would be a client replaying another's, and would make pairwise masks cancel wrongly.
      for (const key of [encryption, masking]) {
        if (seenKeys.some((seen) => bytesEqual(seen, key))) {
          refuse(ErrorCode.SECAGG_KEY_INVALID, 'a public key appears twice in the round', {
            field,
          });
        }
        seenKeys.push(key);
      }
      if (clientId === this.clientId) {
        if (
          !bytesEqual(encryption, this.encryptionKeys.publicKey) ||
          !bytesEqual(masking, this.maskingKeys.publicKey)
        ) {
          refuse(ErrorCode.SECAGG_KEY_INVALID, 'the server lists other keys for this client', {
            field,
          });
        }
      } else {
        others.push({ clientId, field, encryption, masking });
      }
    }
    if (!listed.has(this.clientId)) {
      refuse(ErrorCode.NOT_SELECTED, 'the server did not list this client', {
        field: 'participants',
      });
    }
    const holders = others.length + 1;
    if (holders < threshold) thresholdNotMet('shareKeys', holders, threshold);

    // The per-peer public-key work is independent: WebCrypto runs it side by side.
    const peerList = await Promise.all(
      others.map(async ({ clientId, field, encryption, masking }) => {
        const encryptionPublicKey = await importPublicKey(
          curve,
          encryption,
          `${field}.encryptionPublicKey`,
        );
        const maskingPublicKey = await importPublicKey(curve, masking, `${field}.maskingPublicKey`);
        const shared = await agree(
          curve,
          this.encryptionKeys.privateKey,
          encryptionPublicKey,
          'share-encryption',
          roundId,
          this.clientId,
          clientId,
        );
        const peer: Peer = { channelKey: await channelKey(shared), maskingPublicKey };
        return [clientId, peer] as const;
      }),
    );
    const peers = new Map<string, Peer>(peerList);

    const selfMaskSeed = randomBytes(SEED_BYTES);
    const scalar = await exportPrivateScalar(this.maskingKeys.privateKey);
    const keyShares = await splitSecret(scalar, holders, threshold);
    const selfMaskShares = await splitSecret(selfMaskSeed, holders, threshold);
    scalar.fill(0);
    // Share number i goes to the i-th peer; the last one is this client's own.
    const encryptedShares: ShareKeys['encryptedShares'] = await Promise.all(
      peerList.map(async ([peerId, peer], holder) => ({
        to: peerId,
        ciphertext: await encryptSharePair(peer.channelKey, roundId, this.clientId, peerId, {
          keyShare: keyShares[holder] as Uint8Array,
          selfMaskShare: selfMaskShares[holder] as Uint8Array,
        }),
      })),
    );
    const commitment = await selfMaskCommitment(roundId, this.clientId, selfMaskSeed);
    // All checks passed and all work done: commit the new state at once.
    this.peers = peers;
    this.selfMaskSeed = selfMaskSeed;
    this.ownShares = {
      keyShare: keyShares[holders - 1] as Uint8Array,
      selfMaskShare: selfMaskShares[holders - 1] as Uint8Array,
    };
    this.stageNow = 'mask';
    return { roundId, selfMaskCommitment: commitment, encryptedShares };
  }

  /**
   * Round 2: the shares of U2 in (decrypted and kept for unmasking); the masked input out.
   * `input` is this round's update (FedAvg weight = its numExamples).
   */
  maskInput(message: SharesBundle, input: SecAggInput): Promise<MaskedInput> {
    return this.exclusive('mask', () => this.maskInputNow(message, input));
  }

  private async maskInputNow(message: SharesBundle, input: SecAggInput): Promise<MaskedInput> {
    const record = expectRecord(message, 'message');
    const { curve, roundId, threshold } = this.setup;
    expectRound(record, roundId);
    const list = expectArray(record['encryptedShares'], 'encryptedShares', MAX_CLIENTS);
    const words = quantiseInput(this.setup, this.quantisation, input);
    const received: { from: string; field: string; ciphertext: Uint8Array }[] = [];
    for (const [index, item] of list.entries()) {
      const field = `encryptedShares[${index}]`;
      const entry = expectRecord(item, field);
      const from = expectString(entry['from'], `${field}.from`);
      const ciphertext = expectBytes(entry['ciphertext'], `${field}.ciphertext`);
      if (!this.peers.has(from)) {
        refuse(ErrorCode.NOT_SELECTED, `${from} did not advertise keys in this round`, {
          field: `${field}.from`,
        });
      }
      if (received.some((other) => other.from === from)) {
        refuse(ErrorCode.DUPLICATE_UPDATE, `two share messages from ${from}`, {
          field: `${field}.from`,
        });
      }
      expectLength(ciphertext, CIPHERTEXT_BYTES, `${field}.ciphertext`);
      received.push({ from, field: `${field}.ciphertext`, ciphertext });
    }
    const sharers = [this.clientId, ...received.map((entry) => entry.from)];
    if (sharers.length < threshold) thresholdNotMet('maskInput', sharers.length, threshold);
    const opened = await Promise.all(
      received.map(async ({ from, field, ciphertext }) => {
        const peer = this.peers.get(from) as Peer;
        const pair = await decryptSharePair(
          peer.channelKey,
          roundId,
          from,
          this.clientId,
          ciphertext,
          field,
        );
        const maskSeed = await agree(
          curve,
          this.maskingKeys.privateKey,
          peer.maskingPublicKey,
          'pairwise-mask',
          roundId,
          this.clientId,
          from,
        );
        return { from, pair, maskSeed };
      }),
    );

    // y = x + PRG(b) + Σ_{v in U2, v ≠ self} ±PRG(s_{self,v})  (mod 2^32). The masks are
    // expanded one at a time, so memory stays at two vectors whatever the number of peers.
    addInto(words, await expandSeed(this.selfMaskSeed as Uint8Array, words.length));
    for (const { from, maskSeed } of opened) {
      await applyPairwiseMask(words, maskSeed, this.clientId, from);
    }
    this.heldShares = new Map(opened.map(({ from, pair }) => [from, pair]));
    this.sharers = sharers;
    this.stageNow = 'unmask';
    return { roundId, maskedVector: wordsToBytes(words) };
  }

  /**
   * Round 3: for each survivor a share of its self-mask seed, for each dropped client a share
   * of its masking key; never both for one client, and only once per round.
   */
  unmask(message: UnmaskRequest): UnmaskResponse {
    if (this.busy)
      refuse(ErrorCode.CONFLICT, 'this client is still working on the previous message');
    if (this.stageNow !== 'unmask') wrongStage(this.stageNow, 'unmask');
    const record = expectRecord(message, 'message');
    const { roundId, threshold } = this.setup;
    expectRound(record, roundId);
    const survivors = this.expectSharers(record['survivors'], 'survivors');
    const dropped = this.expectSharers(record['dropped'], 'dropped');
    for (const [index, id] of dropped.entries()) {
      if (survivors.includes(id)) {
        // Both shares of one client would let the server unmask that client's input alone.
        refuse(ErrorCode.CONFLICT, `${id} is listed as both surviving and dropped`, {
          field: `dropped[${index}]`,
        });
      }
    }
    if (!survivors.includes(this.clientId)) {
      refuse(ErrorCode.NOT_SELECTED, 'this client is not listed among the survivors', {
        field: 'survivors',
      });
    }
    const unlisted = this.sharers.filter((id) => !survivors.includes(id) && !dropped.includes(id));
    if (unlisted.length > 0) {
      refuse(
        ErrorCode.MALFORMED_FRAME,
        'every client of U2 must be listed as surviving or dropped',
        {
          field: 'dropped',
          unlisted,
        },
      );
    }
    if (survivors.length < threshold) thresholdNotMet('unmask', survivors.length, threshold);
    const shareOf = (id: string) =>
      id === this.clientId ? (this.ownShares as SharePair) : (this.heldShares.get(id) as SharePair);
    const selfMaskShares: ShareOf[] = survivors.map((id) => ({
      of: id,
      share: shareOf(id).selfMaskShare.slice(),
    }));
    const keyShares: ShareOf[] = dropped.map((id) => ({
      of: id,
      share: shareOf(id).keyShare.slice(),
    }));
    this.stageNow = 'done';
    // Nothing of this round's secrets is needed any more: drop it rather than keep it around.
    this.heldShares = new Map();
    this.ownShares = undefined;
    this.selfMaskSeed?.fill(0);
    this.selfMaskSeed = undefined;
    return { roundId, selfMaskShares, keyShares };
  }

  private expectSharers(value: unknown, field: string): string[] {
    const list = expectArray(value, field, MAX_CLIENTS);
    const ids: string[] = [];
    for (const [index, item] of list.entries()) {
      const id = expectString(item, `${field}[${index}]`);
      if (!this.sharers.includes(id)) {
        refuse(ErrorCode.NOT_SELECTED, `${id} did not share keys with this client`, {
          field: `${field}[${index}]`,
        });
      }
      if (ids.includes(id)) {
        refuse(ErrorCode.DUPLICATE_UPDATE, `${id} is listed twice`, {
          field: `${field}[${index}]`,
        });
      }
      ids.push(id);
    }
    return ids;
  }
}
