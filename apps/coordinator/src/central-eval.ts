import type { EvaluationResult } from '@tessera/aggregation';
import { type Examples, loadMnist, toExamples } from '@tessera/data';
import { createModel, evaluateModel, initBackend, setFlatWeights } from '@tessera/ml';
import type { CentralEvaluator } from './engine.js';

type LayersModel = ReturnType<typeof createModel>;

/**
 * Central evaluation on the MNIST test set (10,000 images), which every model of the zoo takes.
 * The test set and one model per architecture are loaded once and reused across rounds.
 */
export class MnistCentralEvaluator implements CentralEvaluator {
  private examples: Examples | null = null;
  private readonly models = new Map<string, LayersModel>();

  async evaluate(model: string, weights: Float32Array): Promise<EvaluationResult> {
    // The fastest backend present (WASM here); without this tfjs would run on its slow CPU backend.
    await initBackend();
    this.examples ??= toExamples(loadMnist('test'));
    let instance = this.models.get(model);
    if (!instance) {
      instance = createModel(model as Parameters<typeof createModel>[0], { seed: 0 });
      this.models.set(model, instance);
    }
    setFlatWeights(instance, weights);
    return evaluateModel(instance, this.examples);
  }
}
