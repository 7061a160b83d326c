import { ErrorCode, TesseraError } from '@tessera/protocol';

/**
 * Example-weighted running sums in float64. Float32 accumulation over hundreds of clients loses
 * low bits and makes the result depend on arrival order more than it must; float64 sums of
 * float32 products are exact to well below float32 resolution, and the final division rounds
 * once. The summation order is the order of `add` calls (documented in docs/aggregation.md),
 * so a replay that feeds updates in their recorded arrival order is bit-identical.
 */
export class WeightedSum {
  private readonly sums: Float64Array;
  private totalWeight = 0;

  constructor(readonly length: number) {
    this.sums = new Float64Array(length);
  }

  get weight(): number {
    return this.totalWeight;
  }

  add(values: Float32Array, weight: number): void {
    if (values.length !== this.length) {
      throw new TesseraError(
        ErrorCode.WEIGHTS_LENGTH_MISMATCH,
        `update has ${values.length} parameters; the model has ${this.length}`,
      );
    }
    if (!(weight > 0) || !Number.isFinite(weight)) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `update weight must be a positive number, got ${weight}`,
      );
    }
    const sums = this.sums;
    for (let i = 0; i < values.length; i++)
      sums[i] = (sums[i] as number) + weight * (values[i] as number);
    this.totalWeight += weight;
  }

  /** sum_k w_k x_k / sum_k w_k, rounded to float32. */
  mean(): Float32Array {
    if (this.totalWeight === 0) {
      throw new TesseraError(ErrorCode.INVALID_ARGUMENT, 'cannot average zero updates');
    }
    const out = new Float32Array(this.length);
    const total = this.totalWeight;
    for (let i = 0; i < out.length; i++) out[i] = (this.sums[i] as number) / total;
    return out;
  }
}

/** Example-weighted means of named scalar metrics; a metric missing from a reply is skipped for it. */
export class WeightedMetrics {
  private readonly sums = new Map<string, { sum: number; weight: number }>();

  add(metrics: Readonly<Record<string, number>>, weight: number): void {
    for (const [name, value] of Object.entries(metrics)) {
      if (!Number.isFinite(value)) continue;
      const entry = this.sums.get(name) ?? { sum: 0, weight: 0 };
      entry.sum += value * weight;
      entry.weight += weight;
      this.sums.set(name, entry);
    }
  }

  means(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, { sum, weight }] of this.sums) out[name] = sum / weight;
    return out;
  }
}
