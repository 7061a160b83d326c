import type { LayersModel } from '@tensorflow/tfjs-layers';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import type { NativeTrainingAddon } from './native-addon.js';
import type { ForwardContext, NativeLayer } from './native-layers.js';
import { type NativePlan, planNativeTraining } from './native-training.js';
import {
  type BatchOutcome,
  type EvaluationResult,
  evaluateModel,
  type LabelArray,
  MetricAccumulator,
  MNIST_OBJECTIVE,
  type ModelGeometry,
  modelGeometry,
  type TrainingData,
  type TrainingObjective,
  validateData,
  yieldToEventLoop,
} from './train.js';

/**
 * Evaluation on the native training loop's forward pass (native-training.ts): the layers of
 * the plan, run in inference mode (Dropout is the identity, BatchNormalization uses its moving
 * statistics), batch after batch on buffers allocated once, with oneDNN convolutions and
 * OpenBLAS products on as many threads as asked. It returns what evaluateModel returns (the
 * loss with Keras' clip, accuracy, the task's metrics, an exact auc, the sums behind them),
 * up to float rounding: it adds each batch to the same MetricAccumulator. Where the addon is
 * not built or the plan refuses the model, createModelEvaluator evaluates with tfjs
 * (evaluateModel) and says so (`engine`, `reason`).
 */

/** The addon as the evaluator calls it: the layer kernels and the process-wide thread count. */
export interface NativeEvaluationAddon extends NativeTrainingAddon {
  /** Threads OpenBLAS and oneDNN may use (process-wide). */
  setThreads(threads: number): void;
  getThreads(): number;
}

export type EvaluationEngine = 'native' | 'tfjs';

/** evaluateModel's result, and which engine computed it. */
export interface EngineEvaluationResult extends EvaluationResult {
  engine: EvaluationEngine;
}

export interface NativeEvaluatorOptions {
  /** Examples per forward pass (buffers are sized for it once); default 1000. */
  batchSize?: number;
  /**
   * Threads for oneDNN's convolutions and OpenBLAS's products, set before every evaluation.
   * Process-wide: every thread of the process that calls the addon shares the count.
   * Default: os.availableParallelism().
   */
  threads?: number;
  /** 'im2col' forces the OpenBLAS convolution where oneDNN is built in (tests). */
  convolution?: 'auto' | 'im2col';
}

export const DEFAULT_EVALUATION_BATCH = 1000;

/** @tessera/ml-native in a variable, as backend.ts names it, so that bundlers leave it alone. */
const NATIVE_PACKAGE = '@tessera/ml-native';

let addonLoad: Promise<{ ok: true; addon: NativeEvaluationAddon } | { ok: false; reason: string }>;

/** The addon, loaded once (Node only); why not where it is not built or does not load. */
export function loadNativeEvaluationAddon(): typeof addonLoad {
  addonLoad ??= (async () => {
    if (typeof process === 'undefined' || typeof process.versions?.node !== 'string') {
      return { ok: false, reason: 'the native addon exists only in Node' } as const;
    }
    try {
      const specifier: string = NATIVE_PACKAGE;
      const native = (await import(specifier)) as {
        loadNativeKernels():
          | { ok: true; kernels: NativeEvaluationAddon }
          | { ok: false; reason: string };
      };
      const loaded = native.loadNativeKernels();
      return loaded.ok ? { ok: true, addon: loaded.kernels } : loaded;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      return { ok: false, reason: `${NATIVE_PACKAGE} failed to load: ${message.split('\n')[0]}` };
    }
  })();
  return addonLoad;
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `native evaluation: ${name} must be a positive integer, got ${String(value)}`,
    );
  }
  return value;
}

/**
 * One model evaluated natively. The plan (and so the model's variables) is fixed at
 * creation; each evaluate() reads the variables' current values (setFlatWeights them
 * first), so one evaluator serves every round of a run.
 */
export class NativeEvaluator {
  private readonly geometry: ModelGeometry;
  /** Per planned layer, its output for a batch: allocated once, reused by every batch and call. */
  private readonly outputs: Float32Array[];
  /** The loss kernels' gradient output, unused here: the kernels write it anyway. */
  private readonly outputGradient: Float32Array;
  private readonly probabilities: Float32Array;
  private readonly lossOut = new Float64Array(3);
  private readonly lossSizes = new Int32Array(2);
  private readonly context: ForwardContext = { seed: 0, step: 0, inference: true };
  readonly batchSize: number;
  readonly threads: number;

  private constructor(
    private readonly addon: NativeEvaluationAddon,
    model: LayersModel,
    private readonly plan: NativePlan,
    private readonly objective: TrainingObjective,
    batchSize: number,
    threads: number,
    private readonly convolution: 'auto' | 'im2col',
  ) {
    this.geometry = modelGeometry(model, objective, 'NativeEvaluator');
    this.batchSize = batchSize;
    this.threads = threads;
    this.outputs = plan.steps.map((step) => new Float32Array(batchSize * step.outSize));
    this.outputGradient = new Float32Array(batchSize * plan.numClasses);
    this.probabilities = new Float32Array(
      plan.loss === 'sigmoid-binary-cross-entropy' ? batchSize : 0,
    );
  }

  /** An evaluator for `model`, or why the native loop cannot run it. */
  static async create(
    addon: NativeEvaluationAddon,
    model: LayersModel,
    objective: TrainingObjective = MNIST_OBJECTIVE,
    options: NativeEvaluatorOptions = {},
  ): Promise<{ ok: true; evaluator: NativeEvaluator } | { ok: false; reason: string }> {
    const batchSize = positiveInteger(options.batchSize ?? DEFAULT_EVALUATION_BATCH, 'batchSize');
    const threads = positiveInteger(
      options.threads ?? (await import('node:os')).availableParallelism(),
      'threads',
    );
    const planned = planNativeTraining(model, objective.loss);
    if (!planned.ok) return planned;
    return {
      ok: true,
      evaluator: new NativeEvaluator(
        addon,
        model,
        planned.plan,
        objective,
        batchSize,
        threads,
        options.convolution ?? 'auto',
      ),
    };
  }

  /** evaluateModel(model, data, batchSize, objective), natively. */
  async evaluate(data: TrainingData<LabelArray>): Promise<EvaluationResult> {
    const { addon, plan, objective, outputs } = this;
    validateData(data, this.geometry, 'NativeEvaluator.evaluate');
    const metrics = new MetricAccumulator(objective, true);
    if (data.count === 0) {
      return metrics.evaluation(0);
    }
    addon.setThreads(this.threads);
    // Created per call: each layer copies the variables' current values (and, for
    // BatchNormalization, the moving statistics) in; its own buffers are sized for a batch.
    const layers: NativeLayer[] = plan.steps.map((step, index) =>
      step.create({ addon, maxBatch: this.batchSize, engine: this.convolution, index }),
    );
    // The loss kernels take class indices (softmax) or 0/1 and value targets as 32-bit arrays.
    const classes = plan.loss === 'softmax-cross-entropy';
    const labels = classes ? Int32Array.from(data.y) : Float32Array.from(data.y);
    const { featureSize } = plan;
    for (let start = 0; start < data.count; start += this.batchSize) {
      const size = Math.min(this.batchSize, data.count - start);
      let input = data.x.subarray(start * featureSize, (start + size) * featureSize);
      for (const [index, layer] of layers.entries()) {
        const output = (outputs[index] as Float32Array).subarray(
          0,
          size * (plan.steps[index]?.outSize ?? 0),
        );
        layer.forward(size, input, output, this.context);
        input = output;
      }
      metrics.add(this.batchOutcome(input, labels.subarray(start, start + size), size, metrics));
      await yieldToEventLoop();
    }
    return metrics.evaluation(data.count);
  }

  /** The batch's mean loss and statistics from the last layer's pre-activation outputs. */
  private batchOutcome(
    logits: Float32Array,
    labels: Int32Array | Float32Array,
    size: number,
    metrics: MetricAccumulator,
  ): BatchOutcome {
    const { addon, lossOut } = this;
    const gradient = this.outputGradient.subarray(0, size * this.plan.numClasses);
    switch (this.plan.loss) {
      case 'softmax-cross-entropy': {
        this.lossSizes.set([size, this.plan.numClasses]);
        addon.softmaxCrossEntropy(
          logits,
          labels as Int32Array,
          gradient,
          this.lossSizes,
          lossOut.subarray(0, 2),
        );
        // Summed over the batch in double; the tfjs loss is a float32 mean.
        return { size, loss: lossOut[0] as number, statistics: [lossOut[1] as number] };
      }
      case 'sigmoid-binary-cross-entropy': {
        const probabilities = this.probabilities.subarray(0, size);
        const targets = labels as Float32Array;
        addon.sigmoidCrossEntropy(logits, targets, probabilities, gradient, lossOut.subarray(0, 2));
        return {
          size,
          loss: lossOut[0] as number,
          statistics: [lossOut[1] as number],
          ...(metrics.needsScores ? { scores: { probabilities, targets } } : {}),
        };
      }
      case 'mean-squared-error': {
        addon.meanSquaredError(logits, labels as Float32Array, gradient, lossOut);
        return {
          size,
          loss: lossOut[0] as number,
          statistics: [lossOut[1] as number, lossOut[2] as number],
        };
      }
    }
  }
}

export interface ModelEvaluatorOptions extends NativeEvaluatorOptions {
  /** 'auto' (default): native where it can run, tfjs otherwise. 'tfjs': always evaluateModel. */
  engine?: EvaluationEngine | 'auto';
}

/** A model's evaluator for every round: the engine it runs on, and why tfjs where it is tfjs. */
export interface ModelEvaluator {
  readonly engine: EvaluationEngine;
  /** Why the native engine does not run this model (engine 'tfjs'). */
  readonly reason?: string;
  /** The loss and metrics of the model's current weights on `data`. */
  evaluate(data: TrainingData<LabelArray>): Promise<EngineEvaluationResult>;
}

/**
 * The evaluator for `model` and `objective`: native (NativeEvaluator) where the addon is built
 * and the native loop plans the model, else tfjs's evaluateModel with the same batch size.
 * engine 'native' throws UNAVAILABLE with the reason instead of falling back.
 */
export async function createModelEvaluator(
  model: LayersModel,
  objective: TrainingObjective = MNIST_OBJECTIVE,
  options: ModelEvaluatorOptions = {},
): Promise<ModelEvaluator> {
  const requested = options.engine ?? 'auto';
  const batchSize = positiveInteger(options.batchSize ?? DEFAULT_EVALUATION_BATCH, 'batchSize');
  let reason = 'engine tfjs was asked for';
  if (requested !== 'tfjs') {
    const loaded = await loadNativeEvaluationAddon();
    if (loaded.ok) {
      const created = await NativeEvaluator.create(loaded.addon, model, objective, options);
      if (created.ok) {
        const { evaluator } = created;
        return {
          engine: 'native',
          evaluate: async (data) => ({ ...(await evaluator.evaluate(data)), engine: 'native' }),
        };
      }
      reason = created.reason;
    } else {
      reason = loaded.reason;
    }
    if (requested === 'native') {
      throw new TesseraError(
        ErrorCode.UNAVAILABLE,
        `native evaluation cannot run '${model.name}': ${reason}`,
      );
    }
  }
  return {
    engine: 'tfjs',
    reason,
    evaluate: async (data) => ({
      ...(await evaluateModel(model, data, batchSize, objective)),
      engine: 'tfjs',
    }),
  };
}
