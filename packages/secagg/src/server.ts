/**
 * The server's side of a SecAgg round as a state machine, transport-free: `receive*` take one
 * client's message (the sender as the transport authenticated it) and either accept it or
 * refuse it with a coded TesseraError, changing nothing; `close*` end a step (at the engine's
 * deadline, or when everyone has answered) and return the messages to send out.
 *
 * The server keeps the masked inputs only as their running sum (O(parameters) memory), and
 * learns only that sum, less the masks it removes: never one client's input.
 */
import { ErrorCode } from '@tessera/protocol';
import { bytesEqual, bytesToWords, wordsToBytes } from './bytes.js';
import { CIPHERTEXT_BYTES, selfMaskCommitment } from './channel.js';
import { refuse } from './errors.js';
import { agree, importPublicKey, importVerifiedPrivateKey } from './keys.js';
import { addInto, applyPairwiseMask, subtractInto } from './masking.js';
import {
  type AdvertisedKeys,
  expectArray,
  expectBytes,
  expectLength,
  expectRecord,
  expectRound,
  expectString,
  type MaskedInput,
  type ParticipantKeys,
  type ShareKeys,
  type SharesBundle,
  type UnmaskRequest,
  type UnmaskResponse,
} from './messages.js';
import { expandSeed } from './prg.js';
import { dequantiseSum } from './quantise.js';
import { checkSetup, MAX_CLIENTS, type Quantisation, type SecAggSetup } from './setup.js';
import { combineShares, SHARE_BYTES, shareX } from './shamir.js';
import {
  type TranscriptEntry,
  type TranscriptStep,
  transcriptEntry,
  transcriptHash,
} from './transcript.js';

export type ServerStage = 'advertise' | 'share' | 'mask' | 'unmask' | 'done';

export interface SecAggResult {
  roundId: string;
  /** FedAvg of the survivors, Σ n_k·w_k / Σ n_k of the clipped updates, to within maxAbsError. */
  weights: Float32Array;
  totalExamples: number;
  maxAbsError: number;
  /** U3: whose inputs are in the sum. */
  survivors: string[];
  /** Selected, never advertised keys. */
  neverAdvertised: string[];
  /** In U1, not U2. */
  droppedAfterAdvertising: string[];
  /** In U2, not U3: their masks were removed with their reconstructed keys. */
  droppedAfterSharing: string[];
  /** In U3 (their input counts), sent no unmasking shares. */
  droppedAfterMasking: string[];
  /** Clients whose unmasking share did not verify and was passed over. */
  faultyShareHolders: string[];
  /** A digest of every message accepted or sent, by step, then sender, then recipient. */
  transcript: TranscriptEntry[];
  /** SHA-256 of the transcript: one hash to record for the round. */
  transcriptHash: string;
}

interface Advertised {
  raw: ParticipantKeys;
  maskingPublicKey: CryptoKey;
}

type SentMessage =
  | { step: 'advertised'; to: '*'; message: AdvertisedKeys }
  | { step: 'sharesBundle'; to: string; message: SharesBundle }
  | { step: 'unmaskRequest'; to: '*'; message: UnmaskRequest };

const TRANSCRIPT_ORDER: readonly TranscriptStep[] = [
  'advertise',
  'advertised',
  'shareKeys',
  'sharesBundle',
  'maskedInput',
  'unmaskRequest',
  'unmaskResponse',
];

interface HeldShare {
  holder: string;
  share: Uint8Array;
}

interface SharedKeys {
  commitment: Uint8Array;
  ciphertexts: Map<string, Uint8Array>;
}

function thresholdNotMet(step: string, count: number, threshold: number): never {
  return refuse(
    ErrorCode.SECAGG_THRESHOLD_NOT_MET,
    `${count} clients at ${step}, fewer than the threshold ${threshold}: the round cannot go on`,
    { step, count, threshold },
  );
}

export class SecAggServer {
  readonly setup: SecAggSetup;
  private readonly quantisation: Quantisation;
  private stageNow: ServerStage = 'advertise';
  private readonly advertised = new Map<string, Advertised>();
  /** `step/sender` of messages being checked (key imports and digests are asynchronous). */
  private readonly pending = new Set<string>();
  /** Digests of the client messages accepted, in order of acceptance. */
  private readonly transcript: TranscriptEntry[] = [];
  /** What the server sent, hashed into the transcript when the round ends. */
  private readonly sent: SentMessage[] = [];
  private participants: string[] = [];
  private readonly shared = new Map<string, SharedKeys>();
  private sharers: string[] = [];
  private readonly maskedSum: Uint32Array;
  private readonly masked = new Set<string>();
  private survivors: string[] = [];
  private dropped: string[] = [];
  /** Shares for unmasking, per client whose secret they reconstruct. */
  private readonly selfMaskShares = new Map<string, HeldShare[]>();
  private readonly keyShares = new Map<string, HeldShare[]>();
  private readonly unmasked = new Set<string>();

  constructor(setup: SecAggSetup) {
    this.quantisation = checkSetup(setup);
    this.setup = { ...setup, clientIds: [...setup.clientIds] };
    this.maskedSum = new Uint32Array(this.quantisation.vectorWords);
  }

  get stage(): ServerStage {
    return this.stageNow;
  }

  /** Checks common to every client message: the round, the sender, a repeat, the step. */
  private admit(
    sender: string,
    message: unknown,
    stage: ServerStage,
    members: readonly string[],
    answered: (id: string) => boolean,
  ): Record<string, unknown> {
    const record = expectRecord(message, 'message');
    expectRound(record, this.setup.roundId);
    if (!this.setup.clientIds.includes(sender)) {
      refuse(ErrorCode.NOT_SELECTED, `${sender} is not in this round`);
    }
    if (answered(sender)) {
      refuse(ErrorCode.DUPLICATE_UPDATE, `${sender} already sent this step's message`, { stage });
    }
    if (this.stageNow !== stage) {
      refuse(ErrorCode.CONFLICT, `the round is at step '${this.stageNow}', not '${stage}'`, {
        stage: this.stageNow,
        expected: stage,
      });
    }
    if (!members.includes(sender)) {
      refuse(ErrorCode.NOT_SELECTED, `${sender} is out of the round (it missed an earlier step)`);
    }
    return record;
  }

  /**
   * Accepts a checked message once its transcript digest is computed (asynchronous): the
   * sender is marked pending meanwhile, so a repeat is refused, and the checks run again
   * after the wait, since the step may have closed or another message arrived.
   */
  private async accept(
    step: TranscriptStep,
    sender: string,
    normalised: ShareKeys | MaskedInput | UnmaskResponse,
    recheck: () => void,
    commit: () => void,
  ): Promise<void> {
    const key = `${step}/${sender}`;
    this.pending.add(key);
    let entry: TranscriptEntry;
    try {
      entry = await transcriptEntry(step, sender, 'server', normalised as never);
    } finally {
      this.pending.delete(key);
    }
    recheck();
    commit();
    this.transcript.push(entry);
  }

  private isPending(step: TranscriptStep, sender: string): boolean {
    return this.pending.has(`${step}/${sender}`);
  }

  /** Round 0: a client's public keys (checked: lengths, points on the curve, all distinct). */
  async receiveAdvertise(sender: string, message: unknown): Promise<void> {
    const answered = (id: string) => this.advertised.has(id) || this.isPending('advertise', id);
    const admit = () => this.admit(sender, message, 'advertise', this.setup.clientIds, answered);
    const record = admit();
    const encryption = expectBytes(record['encryptionPublicKey'], 'encryptionPublicKey').slice();
    const masking = expectBytes(record['maskingPublicKey'], 'maskingPublicKey').slice();
    if (bytesEqual(encryption, masking)) {
      refuse(ErrorCode.SECAGG_KEY_INVALID, 'the two public keys are the same', {
        field: 'maskingPublicKey',
      });
    }
    const key = `advertise/${sender}`;
    this.pending.add(key);
    let maskingPublicKey: CryptoKey;
    let entry: TranscriptEntry;
    try {
      await importPublicKey(this.setup.curve, encryption, 'encryptionPublicKey');
      maskingPublicKey = await importPublicKey(this.setup.curve, masking, 'maskingPublicKey');
      entry = await transcriptEntry('advertise', sender, 'server', {
        roundId: this.setup.roundId,
        encryptionPublicKey: encryption,
        maskingPublicKey: masking,
      });
    } finally {
      this.pending.delete(key);
    }
    admit();
    // Distinct from every key accepted so far, those accepted while this one was checked included.
    for (const other of this.advertised.values()) {
      for (const [field, candidate] of [
        ['encryptionPublicKey', encryption],
        ['maskingPublicKey', masking],
      ] as const) {
        if (
          bytesEqual(candidate, other.raw.encryptionPublicKey) ||
          bytesEqual(candidate, other.raw.maskingPublicKey)
        ) {
          refuse(
            ErrorCode.SECAGG_KEY_INVALID,
            'a public key already advertised by another client',
            {
              field,
            },
          );
        }
      }
    }
    this.advertised.set(sender, {
      raw: { clientId: sender, encryptionPublicKey: encryption, maskingPublicKey: masking },
      maskingPublicKey,
    });
    this.transcript.push(entry);
  }

  /** Ends round 0: U1 = the clients whose keys were accepted; at least t of them. */
  closeAdvertising(): AdvertisedKeys {
    if (this.stageNow !== 'advertise') {
      refuse(ErrorCode.CONFLICT, `the round is at step '${this.stageNow}'`);
    }
    const participants = this.setup.clientIds.filter((id) => this.advertised.has(id));
    if (participants.length < this.setup.threshold) {
      thresholdNotMet('advertise', participants.length, this.setup.threshold);
    }
    this.participants = participants;
    this.stageNow = 'share';
    const advertised: AdvertisedKeys = {
      roundId: this.setup.roundId,
      participants: participants.map((id) => ({ ...(this.advertised.get(id) as Advertised).raw })),
    };
    this.sent.push({ step: 'advertised', to: '*', message: advertised });
    return {
      roundId: advertised.roundId,
      participants: advertised.participants.map((p) => ({
        clientId: p.clientId,
        encryptionPublicKey: p.encryptionPublicKey.slice(),
        maskingPublicKey: p.maskingPublicKey.slice(),
      })),
    };
  }

  /** Round 1: a client's encrypted shares, exactly one of the right size for each other client of U1. */
  async receiveShareKeys(sender: string, message: unknown): Promise<void> {
    const answered = (id: string) => this.shared.has(id) || this.isPending('shareKeys', id);
    const admit = () => this.admit(sender, message, 'share', this.participants, answered);
    const record = admit();
    const commitment = expectBytes(record['selfMaskCommitment'], 'selfMaskCommitment').slice();
    expectLength(commitment, 32, 'selfMaskCommitment');
    const list = expectArray(record['encryptedShares'], 'encryptedShares', MAX_CLIENTS);
    const ciphertexts = new Map<string, Uint8Array>();
    for (const [index, item] of list.entries()) {
      const field = `encryptedShares[${index}]`;
      const entry = expectRecord(item, field);
      const to = expectString(entry['to'], `${field}.to`);
      const ciphertext = expectBytes(entry['ciphertext'], `${field}.ciphertext`);
      if (!this.participants.includes(to) || to === sender) {
        refuse(ErrorCode.NOT_SELECTED, `a share for ${to}, who is not another client of U1`, {
          field: `${field}.to`,
        });
      }
      if (ciphertexts.has(to)) {
        refuse(ErrorCode.DUPLICATE_UPDATE, `two shares for ${to}`, { field: `${field}.to` });
      }
      expectLength(ciphertext, CIPHERTEXT_BYTES, `${field}.ciphertext`);
      ciphertexts.set(to, ciphertext.slice());
    }
    const missing = this.participants.filter((id) => id !== sender && !ciphertexts.has(id));
    if (missing.length > 0) {
      refuse(ErrorCode.MALFORMED_FRAME, 'shares are missing for some clients of U1', {
        field: 'encryptedShares',
        missing,
      });
    }
    const normalised: ShareKeys = {
      roundId: this.setup.roundId,
      selfMaskCommitment: commitment,
      encryptedShares: [...ciphertexts].map(([to, ciphertext]) => ({ to, ciphertext })),
    };
    await this.accept('shareKeys', sender, normalised, admit, () => {
      this.shared.set(sender, { commitment, ciphertexts });
    });
  }

  /** Ends round 1: U2 = the clients whose shares were accepted; each gets the shares meant for it. */
  closeSharing(): Map<string, SharesBundle> {
    if (this.stageNow !== 'share') {
      refuse(ErrorCode.CONFLICT, `the round is at step '${this.stageNow}'`);
    }
    const sharers = this.participants.filter((id) => this.shared.has(id));
    if (sharers.length < this.setup.threshold) {
      thresholdNotMet('share', sharers.length, this.setup.threshold);
    }
    this.sharers = sharers;
    this.stageNow = 'mask';
    const bundles = new Map<string, SharesBundle>();
    for (const recipient of sharers) {
      const bundle: SharesBundle = {
        roundId: this.setup.roundId,
        encryptedShares: sharers
          .filter((from) => from !== recipient)
          .map((from) => ({
            from,
            ciphertext: (this.shared.get(from) as SharedKeys).ciphertexts.get(
              recipient,
            ) as Uint8Array,
          })),
      };
      this.sent.push({ step: 'sharesBundle', to: recipient, message: bundle });
      bundles.set(recipient, {
        roundId: bundle.roundId,
        encryptedShares: bundle.encryptedShares.map((share) => ({
          from: share.from,
          ciphertext: share.ciphertext.slice(),
        })),
      });
    }
    return bundles;
  }

  /** Round 2: a client's masked input, (parameterCount + 1) words, added into the running sum. */
  async receiveMaskedInput(sender: string, message: unknown): Promise<void> {
    const answered = (id: string) => this.masked.has(id) || this.isPending('maskedInput', id);
    const admit = () => this.admit(sender, message, 'mask', this.sharers, answered);
    const record = admit();
    const vector = expectBytes(record['maskedVector'], 'maskedVector');
    const expectedBytes = this.quantisation.vectorWords * 4;
    if (vector.length !== expectedBytes) {
      refuse(ErrorCode.WEIGHTS_LENGTH_MISMATCH, 'the masked vector has the wrong length', {
        field: 'maskedVector',
        expectedBytes,
        receivedBytes: vector.length,
      });
    }
    const words = bytesToWords(vector);
    const normalised: MaskedInput = {
      roundId: this.setup.roundId,
      maskedVector: wordsToBytes(words),
    };
    await this.accept('maskedInput', sender, normalised, admit, () => {
      addInto(this.maskedSum, words);
      this.masked.add(sender);
    });
  }

  /**
   * Ends round 2: U3 = the clients whose masked input is in the sum. Refused, and nothing
   * asked of anyone, when fewer than t: no share is revealed for a sum of too few clients.
   */
  closeMasking(): UnmaskRequest {
    if (this.stageNow !== 'mask') {
      refuse(ErrorCode.CONFLICT, `the round is at step '${this.stageNow}'`);
    }
    const survivors = this.sharers.filter((id) => this.masked.has(id));
    if (survivors.length < this.setup.threshold) {
      thresholdNotMet('mask', survivors.length, this.setup.threshold);
    }
    this.survivors = survivors;
    this.dropped = this.sharers.filter((id) => !this.masked.has(id));
    this.stageNow = 'unmask';
    const request: UnmaskRequest = {
      roundId: this.setup.roundId,
      survivors: [...survivors],
      dropped: [...this.dropped],
    };
    this.sent.push({ step: 'unmaskRequest', to: '*', message: request });
    return { roundId: request.roundId, survivors: [...survivors], dropped: [...this.dropped] };
  }

  /** Round 3: a survivor's shares: of b_u for every u in U3, of s_u^SK for every u in U2 \ U3. */
  async receiveUnmaskResponse(sender: string, message: unknown): Promise<void> {
    const answered = (id: string) => this.unmasked.has(id) || this.isPending('unmaskResponse', id);
    const admit = () => this.admit(sender, message, 'unmask', this.survivors, answered);
    const record = admit();
    const parse = () => ({
      selfMask: this.expectShares(
        record['selfMaskShares'],
        'selfMaskShares',
        this.survivors,
        this.selfMaskShares,
      ),
      key: this.expectShares(record['keyShares'], 'keyShares', this.dropped, this.keyShares),
    });
    const { selfMask, key } = parse();
    const normalised: UnmaskResponse = {
      roundId: this.setup.roundId,
      selfMaskShares: [...selfMask].map(([of, share]) => ({ of, share })),
      keyShares: [...key].map(([of, share]) => ({ of, share })),
    };
    const recheck = () => {
      admit();
      // Shares that arrived meanwhile may repeat an x of these: check against them too.
      for (const [field, shares, store] of [
        ['selfMaskShares', selfMask, this.selfMaskShares],
        ['keyShares', key, this.keyShares],
      ] as const) {
        for (const [of, share] of shares) {
          if ((store.get(of) ?? []).some((held) => shareX(held.share) === shareX(share))) {
            refuse(ErrorCode.DUPLICATE_UPDATE, `a share of ${of} repeats one already received`, {
              field,
            });
          }
        }
      }
    };
    await this.accept('unmaskResponse', sender, normalised, recheck, () => {
      for (const [of, share] of selfMask) this.holdShare(this.selfMaskShares, of, sender, share);
      for (const [of, share] of key) this.holdShare(this.keyShares, of, sender, share);
      this.unmasked.add(sender);
    });
  }

  private holdShare(
    store: Map<string, HeldShare[]>,
    of: string,
    holder: string,
    share: Uint8Array,
  ) {
    const list = store.get(of);
    if (list === undefined) store.set(of, [{ holder, share }]);
    else list.push({ holder, share });
  }

  /** One share of the right size for exactly each client of `expected`, none repeating an x. */
  private expectShares(
    value: unknown,
    field: string,
    expected: readonly string[],
    store: ReadonlyMap<string, readonly HeldShare[]>,
  ): Map<string, Uint8Array> {
    const list = expectArray(value, field, MAX_CLIENTS);
    const shares = new Map<string, Uint8Array>();
    for (const [index, item] of list.entries()) {
      const entryField = `${field}[${index}]`;
      const entry = expectRecord(item, entryField);
      const of = expectString(entry['of'], `${entryField}.of`);
      const share = expectBytes(entry['share'], `${entryField}.share`);
      if (!expected.includes(of)) {
        refuse(ErrorCode.NOT_SELECTED, `a share of ${of}, for whom none is asked in ${field}`, {
          field: `${entryField}.of`,
        });
      }
      if (shares.has(of)) {
        refuse(ErrorCode.DUPLICATE_UPDATE, `two shares of ${of}`, { field: `${entryField}.of` });
      }
      expectLength(share, SHARE_BYTES, `${entryField}.share`);
      const x = shareX(share);
      if (x === 0 || (store.get(of) ?? []).some((held) => shareX(held.share) === x)) {
        // x = 0 would be the secret itself; a repeated x is a share already given (a replay).
        refuse(ErrorCode.DUPLICATE_UPDATE, `a share of ${of} repeats one already received`, {
          field: `${entryField}.share`,
        });
      }
      shares.set(of, share.slice());
    }
    const missing = expected.filter((id) => !shares.has(id));
    if (missing.length > 0) {
      refuse(ErrorCode.MALFORMED_FRAME, `${field} lacks shares`, { field, missing });
    }
    return shares;
  }

  /**
   * The secret of `of` from t of its shares, checked by `verify`. Shamir shares cannot be
   * checked one by one, but the secret can: when the first t do not verify and more shares
   * are held, each holder is left out in turn, so one wrong share (a faulty or lying client)
   * is found and passed over instead of stopping the round or corrupting its sum.
   */
  private async reconstruct<T>(
    of: string,
    held: readonly HeldShare[],
    open: (secret: Uint8Array) => Promise<T | undefined>,
    faulty: Set<string>,
  ): Promise<T> {
    const { threshold, clientIds } = this.setup;
    // Holders in the setup's order, not arrival order: which t shares are tried first is then
    // the same whatever the network did.
    const rank = (share: HeldShare) => clientIds.indexOf(share.holder);
    const shares = [...held].sort((a, b) => rank(a) - rank(b));
    const attempt = async (subset: readonly HeldShare[]) =>
      open(
        await combineShares(
          subset.map((held) => held.share),
          threshold,
        ),
      );
    const opened = await attempt(shares);
    if (opened !== undefined) return opened;
    if (shares.length > threshold) {
      for (const suspect of shares) {
        const retried = await attempt(shares.filter((share) => share !== suspect));
        if (retried !== undefined) {
          faulty.add(suspect.holder);
          return retried;
        }
      }
    }
    return refuse(
      ErrorCode.SECAGG_KEY_INVALID,
      `the secret of ${of} does not verify from its shares`,
      {
        clientId: of,
      },
    );
  }

  /**
   * Ends the round once at least t survivors answered: reconstructs each survivor's self-mask
   * seed (checked against its commitment) and each dropped client's masking key (checked
   * against its advertised public key), removes their masks from the sum, and dequantises.
   * A refusal leaves the round as it was.
   */
  async finish(): Promise<SecAggResult> {
    if (this.stageNow !== 'unmask') {
      refuse(ErrorCode.CONFLICT, `the round is at step '${this.stageNow}'`);
    }
    const { threshold, roundId, curve } = this.setup;
    if (this.unmasked.size < threshold) thresholdNotMet('unmask', this.unmasked.size, threshold);
    const sum = this.maskedSum.slice();
    const faulty = new Set<string>();
    for (const id of this.survivors) {
      const commitment = (this.shared.get(id) as SharedKeys).commitment;
      const seed = await this.reconstruct(
        id,
        this.selfMaskShares.get(id) ?? [],
        async (secret) =>
          bytesEqual(await selfMaskCommitment(roundId, id, secret), commitment)
            ? secret
            : undefined,
        faulty,
      );
      subtractInto(sum, await expandSeed(seed, sum.length));
    }
    for (const id of this.dropped) {
      const advertised = (this.advertised.get(id) as Advertised).raw.maskingPublicKey;
      const privateKey = await this.reconstruct(
        id,
        this.keyShares.get(id) ?? [],
        (scalar) => importVerifiedPrivateKey(curve, scalar, advertised, id).catch(() => undefined),
        faulty,
      );
      // Each survivor v added ±PRG(s_{v,id}) for the dropped client id; take it back out.
      for (const survivor of this.survivors) {
        const peer = this.advertised.get(survivor) as Advertised;
        const seed = await agree(
          curve,
          privateKey,
          peer.maskingPublicKey,
          'pairwise-mask',
          roundId,
          id,
          survivor,
        );
        // The survivor's sign towards id is + when survivor < id; id's own sign is the opposite.
        await applyPairwiseMask(sum, seed, id, survivor);
      }
    }
    const decoded = dequantiseSum(this.setup, this.quantisation, sum, this.survivors.length);
    const transcript = await this.orderedTranscript();
    this.stageNow = 'done';
    return {
      roundId,
      weights: decoded.weights,
      totalExamples: decoded.totalExamples,
      maxAbsError: decoded.maxAbsError,
      survivors: [...this.survivors],
      neverAdvertised: this.setup.clientIds.filter((id) => !this.advertised.has(id)),
      droppedAfterAdvertising: this.participants.filter((id) => !this.shared.has(id)),
      droppedAfterSharing: [...this.dropped],
      droppedAfterMasking: this.survivors.filter((id) => !this.unmasked.has(id)),
      faultyShareHolders: this.setup.clientIds.filter((id) => faulty.has(id)),
      transcript,
      transcriptHash: await transcriptHash(transcript),
    };
  }

  /** Every entry, the server's own messages included, in an order the network cannot change. */
  private async orderedTranscript(): Promise<TranscriptEntry[]> {
    const sent = await Promise.all(
      this.sent.map((item) => transcriptEntry(item.step, 'server', item.to, item.message as never)),
    );
    const rank = (party: string) =>
      party === '*' ? -2 : party === 'server' ? -1 : this.setup.clientIds.indexOf(party);
    return [...this.transcript, ...sent].sort(
      (a, b) =>
        TRANSCRIPT_ORDER.indexOf(a.step) - TRANSCRIPT_ORDER.indexOf(b.step) ||
        rank(a.from) - rank(b.from) ||
        rank(a.to) - rank(b.to),
    );
  }
}
