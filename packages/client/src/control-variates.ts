import { ErrorCode, TesseraError } from '@tessera/protocol';

/**
 * Where a client keeps SCAFFOLD's control variate c_i between rounds (Karimireddy et al. 2020):
 * one vector per run, as long as the model. The Node client keeps it in memory and, given a
 * state directory, in a file there (so a restarted process continues with it); the browser
 * client in IndexedDB, its staged c_i⁺ too (apps/web-client/src/control-variate-store.ts), and
 * in memory where the browser gives it no IndexedDB.
 */
export interface ControlVariateStore {
  /** c_i of `runId`, or null before this client's first SCAFFOLD round of that run. */
  load(runId: string, paramCount: number): Promise<Float32Array | null>;
  /**
   * Adopts c_i⁺ once the round whose update carried its Δc_i has committed (the client learns
   * it from the run's next round).
   */
  save(runId: string, values: Float32Array): Promise<void>;
  /** Where it keeps them, for the person running the client (e.g. "memory only"). */
  readonly where: string;
  /**
   * Optional: keeps c_i⁺ of `round`, not yet adopted, where a restarted client finds it again
   * (null: forgets it), so that a client restarted between rounds (a reloaded page) still
   * adopts it when the run's next round arrives. A store without it: the client holds c_i⁺ in
   * memory only, and a restart between rounds loses it.
   */
  stage?(runId: string, staged: StagedControl | null): Promise<void>;
  /** The c_i⁺ that `stage` kept for `runId`, or null (none, or another model's length). */
  staged?(runId: string, paramCount: number): Promise<StagedControl | null>;
}

/** A c_i⁺ waiting to be adopted: from the update of `round`, adopted once a later round starts. */
export interface StagedControl {
  round: number;
  values: Float32Array;
}

/** In this process only: a restarted client starts every run's c_i from zero again. */
export class MemoryControlVariates implements ControlVariateStore {
  readonly where = 'in memory only (a restarted client starts its control variates from zero)';
  private readonly byRun = new Map<string, Float32Array>();

  async load(runId: string, paramCount: number): Promise<Float32Array | null> {
    const values = this.byRun.get(runId);
    return values?.length === paramCount ? values : null;
  }

  async save(runId: string, values: Float32Array): Promise<void> {
    this.byRun.set(runId, values.slice());
  }
}

/** What a SCAFFOLD round gives the client: c_i⁺ to keep and Δc_i = c_i⁺ − c_i to send. */
export interface ControlVariateStep {
  next: Float32Array;
  delta: Float32Array;
}

/**
 * Option II of SCAFFOLD: c_i⁺ = c_i − c + (x − y) / (K η), from the global model x the round
 * started from, the trained model y, K local steps of learning rate η. Computed in float64 and
 * rounded once, as the coordinator folds it.
 */
export function scaffoldControlStep(
  clientControl: Float32Array,
  serverControl: Float32Array,
  global: Float32Array,
  trained: Float32Array,
  steps: number,
  learningRate: number,
): ControlVariateStep {
  const n = global.length;
  if (
    clientControl.length !== n ||
    serverControl.length !== n ||
    trained.length !== n ||
    !(steps >= 1) ||
    !(learningRate > 0)
  ) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `scaffold: control step needs vectors of ${n} values, K >= 1 and eta > 0 (got K = ${steps}, eta = ${learningRate})`,
    );
  }
  const scale = 1 / (steps * learningRate);
  const next = new Float32Array(n);
  const delta = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const ci = clientControl[i] as number;
    const value =
      ci - (serverControl[i] as number) + ((global[i] as number) - (trained[i] as number)) * scale;
    next[i] = value;
    delta[i] = value - ci;
  }
  return { next, delta };
}

/** SCAFFOLD's gradient correction c − c_i, what the local loop adds to every gradient. */
export function controlCorrection(
  serverControl: Float32Array,
  clientControl: Float32Array,
): Float32Array {
  return Float32Array.from(serverControl, (c, i) => c - (clientControl[i] as number));
}
