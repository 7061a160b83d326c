/**
 * The model-poisoning attacks of the poisoning bench (bench/poisoning.ts), as pure functions
 * over flat weight vectors, so what each attacker sends can be checked apart from training.
 * Every attack returns a full model (the wire carries models, not deltas), computed in
 * float64 and rounded once to float32.
 */
import { ErrorCode, TesseraError } from '@tessera/protocol';

/** What the two malicious clients do each round; 'none' is the no-attack baseline. */
export const ATTACK_NAMES = ['none', 'sign-flip', 'scaled', 'label-flip', 'noise'] as const;
export type AttackName = (typeof ATTACK_NAMES)[number];

/** A source of standard normal draws (createRng(seed) of @tessera/data is one). */
export interface NormalSource {
  normal(): number;
}

function invalid(message: string, field: string): TesseraError {
  return new TesseraError(ErrorCode.INVALID_ARGUMENT, message, { field });
}

function checkFactor(factor: number, where: string): void {
  if (!Number.isFinite(factor)) {
    throw invalid(`${where}: factor must be a finite number, got ${String(factor)}`, 'factor');
  }
}

function checkSameLength(global: Float32Array, model: Float32Array, where: string): void {
  if (model.length !== global.length) {
    throw invalid(
      `${where}: the model has ${model.length} parameters, the global model ${global.length}`,
      'model',
    );
  }
}

/** g + factor (w - g): the change w - g, multiplied by `factor`, added back onto g. */
function alongChange(
  global: Float32Array,
  model: Float32Array,
  factor: number,
  where: string,
): Float32Array {
  checkFactor(factor, where);
  checkSameLength(global, model, where);
  const out = new Float32Array(global.length);
  for (let i = 0; i < out.length; i++) {
    const g = global[i] as number;
    out[i] = g + factor * ((model[i] as number) - g);
  }
  return out;
}

/**
 * Sign-flip: w_global - factor (w - w_global), the honest change reversed and boosted
 * (factor 10 in the bench), so that an average steps away from where training leads.
 */
export function signFlipped(global: Float32Array, model: Float32Array, factor: number) {
  return alongChange(global, model, -factor, 'signFlipped');
}

/**
 * Scaled (boosted) update: w_global + factor (w - w_global), the honest change made
 * `factor` times longer, after Bhagoji et al. 2019's explicit boosting; a plain average over
 * n clients then moves factor / n of a client's step per attacker.
 */
export function scaledChange(global: Float32Array, model: Float32Array, factor: number) {
  return alongChange(global, model, factor, 'scaledChange');
}

/** w_global + N(0, sigma^2) per coordinate: an update that is noise and nothing else. */
export function gaussianAround(
  global: Float32Array,
  sigma: number,
  source: NormalSource,
): Float32Array {
  if (!(Number.isFinite(sigma) && sigma >= 0)) {
    throw invalid(`gaussianAround: sigma must be a finite number >= 0, got ${sigma}`, 'sigma');
  }
  const out = new Float32Array(global.length);
  for (let i = 0; i < out.length; i++) out[i] = (global[i] as number) + sigma * source.normal();
  return out;
}

/** Label-flip: class y becomes classes - 1 - y (MNIST: 9 - y); a new array. */
export function flippedLabels(labels: Uint8Array, classes: number): Uint8Array {
  if (!(Number.isInteger(classes) && classes >= 2 && classes <= 256)) {
    throw invalid(`flippedLabels: classes must be an integer in 2..256, got ${classes}`, 'classes');
  }
  const out = new Uint8Array(labels.length);
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i] as number;
    if (label >= classes) {
      throw invalid(
        `flippedLabels: labels[${i}] = ${label} is not a class of ${classes}`,
        `labels.${i}`,
      );
    }
    out[i] = classes - 1 - label;
  }
  return out;
}

/**
 * The unweighted mean of `models`: what an attacker that sees the round's honest updates
 * (the usual omniscient threat model) starts from, instead of training for itself.
 */
export function meanModel(models: readonly Float32Array[]): Float32Array {
  const first = models[0];
  if (first === undefined) throw invalid('meanModel: no models to average', 'models');
  const sums = new Float64Array(first.length);
  models.forEach((model, k) => {
    if (model.length !== first.length) {
      throw invalid(
        `meanModel: models[${k}] has ${model.length} parameters, models[0] ${first.length}`,
        `models.${k}`,
      );
    }
    for (let i = 0; i < sums.length; i++) sums[i] = (sums[i] as number) + (model[i] as number);
  });
  const out = new Float32Array(first.length);
  for (let i = 0; i < out.length; i++) out[i] = (sums[i] as number) / models.length;
  return out;
}

/** ||a - b||_2, in float64. */
export function distance(a: Float32Array, b: Float32Array): number {
  let squared = 0;
  for (let i = 0; i < a.length; i++) {
    const d = (a[i] as number) - (b[i] as number);
    squared += d * d;
  }
  return Math.sqrt(squared);
}
