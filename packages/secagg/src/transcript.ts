/**
 * The round's transcript: a SHA-256 digest of every message the server accepted or sent, so a
 * run can record what the masking protocol exchanged (issue 14, item 5) without keeping any of
 * it, and each client can recompute the digests of its own messages and find them there.
 *
 * A digest covers the message's fields in a fixed order, each as `tag(1: 0 text, 1 bytes) ‖
 * uint32 big-endian length ‖ bytes`, after `tessera-secagg/v1 transcript`, the step, the sender
 * and the recipient ('*' for a broadcast); fields a message does not define are not covered.
 */
import { concatBytes, ownBytes, utf8Bytes } from './bytes.js';
import type {
  AdvertisedKeys,
  AdvertiseKeys,
  MaskedInput,
  ShareKeys,
  SharesBundle,
  UnmaskRequest,
  UnmaskResponse,
} from './messages.js';

export type TranscriptStep =
  | 'advertise'
  | 'advertised'
  | 'shareKeys'
  | 'sharesBundle'
  | 'maskedInput'
  | 'unmaskRequest'
  | 'unmaskResponse';

export interface TranscriptEntry {
  step: TranscriptStep;
  /** A client id, or 'server'. */
  from: string;
  /** A client id, 'server', or '*' (a broadcast). */
  to: string;
  /** SHA-256 of the entry's message, hex. */
  sha256: string;
}

type Field = string | Uint8Array;

function encode(fields: readonly Field[]): Uint8Array<ArrayBuffer> {
  const parts: Uint8Array[] = [];
  for (const field of fields) {
    const bytes = typeof field === 'string' ? utf8Bytes(field) : field;
    const head = new Uint8Array(5);
    head[0] = typeof field === 'string' ? 0 : 1;
    new DataView(head.buffer).setUint32(1, bytes.length, false);
    parts.push(head, bytes);
  }
  return ownBytes(concatBytes(...parts));
}

function hex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (byte) => byte.toString(16).padStart(2, '0')).join('');
}

interface MessageOf {
  advertise: AdvertiseKeys;
  advertised: AdvertisedKeys;
  shareKeys: ShareKeys;
  sharesBundle: SharesBundle;
  maskedInput: MaskedInput;
  unmaskRequest: UnmaskRequest;
  unmaskResponse: UnmaskResponse;
}

function fieldsOf<S extends TranscriptStep>(step: S, message: MessageOf[S]): Field[] {
  switch (step) {
    case 'advertise': {
      const m = message as AdvertiseKeys;
      return [m.roundId, m.encryptionPublicKey, m.maskingPublicKey];
    }
    case 'advertised': {
      const m = message as AdvertisedKeys;
      return [
        m.roundId,
        ...m.participants.flatMap((p) => [p.clientId, p.encryptionPublicKey, p.maskingPublicKey]),
      ];
    }
    case 'shareKeys': {
      const m = message as ShareKeys;
      return [
        m.roundId,
        m.selfMaskCommitment,
        ...m.encryptedShares.flatMap((s) => [s.to, s.ciphertext]),
      ];
    }
    case 'sharesBundle': {
      const m = message as SharesBundle;
      return [m.roundId, ...m.encryptedShares.flatMap((s) => [s.from, s.ciphertext])];
    }
    case 'maskedInput': {
      const m = message as MaskedInput;
      return [m.roundId, m.maskedVector];
    }
    case 'unmaskRequest': {
      const m = message as UnmaskRequest;
      return [m.roundId, 'survivors', ...m.survivors, 'dropped', ...m.dropped];
    }
    default: {
      const m = message as UnmaskResponse;
      return [
        m.roundId,
        'selfMaskShares',
        ...m.selfMaskShares.flatMap((s) => [s.of, s.share]),
        'keyShares',
        ...m.keyShares.flatMap((s) => [s.of, s.share]),
      ];
    }
  }
}

/** The transcript entry of one message (what a client computes to check its own). */
export async function transcriptEntry<S extends TranscriptStep>(
  step: S,
  from: string,
  to: string,
  message: MessageOf[S],
): Promise<TranscriptEntry> {
  const bytes = encode([
    'tessera-secagg/v1 transcript',
    step,
    from,
    to,
    ...fieldsOf(step, message),
  ]);
  return { step, from, to, sha256: hex(await globalThis.crypto.subtle.digest('SHA-256', bytes)) };
}

/** SHA-256 of the entries in their order: one hash that stands for the whole round. */
export async function transcriptHash(entries: readonly TranscriptEntry[]): Promise<string> {
  const bytes = encode(
    entries.flatMap((entry) => [entry.step, entry.from, entry.to, entry.sha256]),
  );
  return hex(await globalThis.crypto.subtle.digest('SHA-256', bytes));
}
