export {
  Accountant,
  type AccountantState,
  checkBudget,
  type GaussianStep,
  type NoiseMultiplierQuery,
  noiseMultiplierFor,
  type PrivacyBudget,
} from './accountant.js';
export {
  type Clipped,
  changeFrom,
  checkLocalDpUpdate,
  clipForSending,
  clipInPlace,
  LOCAL_DP_SETTING_KEYS,
  type LocalDpGuarantee,
  type LocalDpSettings,
  l2Norm,
  localDpGuarantee,
  localDpNormRange,
  localDpTrainSettings,
  type NormRange,
  type PrivatisedUpdate,
  privatiseUpdate,
  readLocalDpSettings,
} from './local.js';
export { logErfc } from './logmath.js';
export {
  CryptoGaussianNoise,
  type GaussianNoise,
  type NormalStream,
  SeededGaussianNoise,
} from './noise.js';
export {
  checkGaussianStep,
  DEFAULT_RDP_ORDERS,
  type EpsilonAtOrder,
  epsilonFromRdp,
  rdpSampledGaussian,
} from './rdp.js';
export {
  CENTRAL_CLIP_SETTING_KEY,
  type ClientPrivacySettings,
  PRIVACY_SETTING_NAMES,
  privacyTrainSettings,
  readPrivacySettings,
} from './train-settings.js';
