/**
 * @tessera/secagg: secure aggregation (Bonawitz et al. 2017, "Practical Secure Aggregation for
 * Privacy-Preserving Machine Learning", the semi-honest variant: full graph, no signatures)
 * as transport-free client and server state machines. Browser-safe: WebCrypto only.
 */

export { CIPHERTEXT_BYTES } from './channel.js';
export { type ClientStage, SecAggClient } from './client.js';
export {
  CURVES,
  type Curve,
  chooseCurve,
  PUBLIC_KEY_BYTES,
  supportedCurves,
} from './keys.js';
export type {
  AdvertisedKeys,
  AdvertiseKeys,
  EncryptedShareIn,
  EncryptedShareOut,
  MaskedInput,
  ParticipantKeys,
  ShareKeys,
  ShareOf,
  SharesBundle,
  UnmaskRequest,
  UnmaskResponse,
} from './messages.js';
export { expandSeed } from './prg.js';
export { type DequantisedSum, dequantiseSum, quantiseInput, type SecAggInput } from './quantise.js';
export { type SecAggResult, SecAggServer, type ServerStage } from './server.js';
export {
  checkSetup,
  MAX_CLIENTS,
  MAX_PARAMETERS,
  type Quantisation,
  SECAGG_PROTOCOL,
  type SecAggSetup,
  SUM_BOUND,
} from './setup.js';
export { SHARE_BYTES } from './shamir.js';
export {
  type DropoutSchedule,
  type ServerView,
  type SimulationContext,
  type SimulationOptions,
  type SimulationResult,
  type SimulationStep,
  simulateRound,
} from './simulate.js';
export {
  type TranscriptEntry,
  type TranscriptStep,
  transcriptEntry,
  transcriptHash,
} from './transcript.js';
