import { z } from 'zod';
import { WIRE_LIMITS } from './limits.js';
import { isStorableText, UNSTORABLE_TEXT_MESSAGE } from './text.js';

/**
 * The secure-aggregation messages on the wire (docs/protocol.md §5.11): the envelope that
 * carries @tessera/secagg's messages between a client and the coordinator, one `secagg` event
 * each way. These schemas bound sizes and shapes before anything is decoded further; the exact
 * checks (lengths, members of the round, repeats, keys on the curve) are the SecAgg server's
 * and client's own, with their codes (docs/secure-aggregation.md).
 */

/** The most clients in a SecAgg round (Shamir over GF(2^8)): bounds every list below. */
const MAX_ROUND_CLIENTS = 255;
/** A raw public key: 32 B (X25519) or 65 B (P-256, uncompressed). */
const MAX_PUBLIC_KEY_BYTES = 65;
/** nonce(12) ‖ AES-GCM(66 B) ‖ tag(16). */
const MAX_CIPHERTEXT_BYTES = 94;
/** y(32) ‖ x(1). */
const MAX_SHARE_BYTES = 33;

const id = z
  .string()
  .min(1)
  .max(WIRE_LIMITS.maxIdLength)
  .refine(isStorableText, UNSTORABLE_TEXT_MESSAGE);
/** The SecAgg round's id: `${runId}/${round}/${attempt}`. */
const roundId = z.string().min(1).max(256);
const count = z.number().int().nonnegative().max(WIRE_LIMITS.maxInteger);
/** MessagePack bin (Buffer in Node is a Uint8Array too). */
const bytes = z.custom<Uint8Array>((value) => value instanceof Uint8Array, 'must be bytes');
const bytesAtMost = (max: number) => bytes.refine((b) => b.length <= max, `at most ${max} bytes`);
const shares = z
  .array(z.object({ of: id, share: bytesAtMost(MAX_SHARE_BYTES) }))
  .max(MAX_ROUND_CLIENTS);

const envelope = { runId: id, round: count };

/** `secagg` (C→S, acked): one step's message of the client's part of a SecAgg round. */
export const secAggClientFrameSchema = z.discriminatedUnion('step', [
  z.object({
    ...envelope,
    step: z.literal('advertise'),
    message: z.object({
      roundId,
      encryptionPublicKey: bytesAtMost(MAX_PUBLIC_KEY_BYTES),
      maskingPublicKey: bytesAtMost(MAX_PUBLIC_KEY_BYTES),
    }),
  }),
  z.object({
    ...envelope,
    step: z.literal('share'),
    message: z.object({
      roundId,
      selfMaskCommitment: bytesAtMost(32),
      encryptedShares: z
        .array(z.object({ to: id, ciphertext: bytesAtMost(MAX_CIPHERTEXT_BYTES) }))
        .max(MAX_ROUND_CLIENTS),
    }),
  }),
  z.object({
    ...envelope,
    step: z.literal('mask'),
    // Its exact length, 4·(parameterCount + 1), is the SecAgg server's check; the frame
    // limit bounds it like an update's weights.
    message: z.object({ roundId, maskedVector: bytes }),
  }),
  z.object({
    ...envelope,
    step: z.literal('unmask'),
    message: z.object({ roundId, selfMaskShares: shares, keyShares: shares }),
  }),
]);
export type SecAggClientFrame = z.infer<typeof secAggClientFrameSchema>;
export type SecAggClientStep = SecAggClientFrame['step'];

/**
 * What a train instruction of a SecAgg run carries (@tessera/secagg's SecAggSetup): every
 * client checks it (checkSetup) before taking part.
 */
export interface SecAggSetupMessage {
  protocol: string;
  roundId: string;
  curve: string;
  clientIds: string[];
  threshold: number;
  parameterCount: number;
  clipRange: number;
  maxExamplesPerClient: number;
}

/**
 * `secagg` (S→C): the coordinator's messages of a SecAgg round. `advertised` (AdvertisedKeys)
 * to every client of U1, `shares` (SharesBundle) to each client of U2, `unmask`
 * (UnmaskRequest) to every client of U3. The client checks each with @tessera/secagg.
 */
export interface SecAggServerFrame {
  runId: string;
  round: number;
  step: 'advertised' | 'shares' | 'unmask';
  message: Record<string, unknown>;
}
