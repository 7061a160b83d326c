import type { Examples } from '@tessera/data';
import {
  createModel,
  evaluateModel,
  MODEL_NAMES,
  type ModelName,
  modelSpec,
  readFlatWeights,
  setFlatWeights,
  trainLocal,
} from '@tessera/ml';
import { ErrorCode, type ModelDescriptor, TesseraError } from '@tessera/protocol';
import { TFJS_TRAINER_SETTINGS } from './strategy-settings.js';
import {
  type EvaluateOutcome,
  type EvaluateRequest,
  type LocalTrainer,
  RoundFailure,
  type TrainerProgress,
  type TrainOutcome,
  type TrainRequest,
} from './trainer.js';

type LayersModel = ReturnType<typeof createModel>;

/**
 * Trains with @tessera/ml in this thread, on the tfjs backend the host selected. Models are built
 * once per name and reused across rounds (the global weights are loaded into them each time).
 */
export class TfjsTrainer implements LocalTrainer {
  readonly supportedSettings = TFJS_TRAINER_SETTINGS;
  private readonly models = new Map<string, LayersModel>();

  constructor(
    private readonly trainExamples: Examples,
    private readonly holdout: Examples | null,
    /** Data-parallel threads for local training (Node only; see @tessera/ml's trainLocal). */
    private readonly options: { workers?: number | 'auto' } = {},
  ) {}

  get numExamples(): number {
    return this.trainExamples.count;
  }

  get numHoldout(): number {
    return this.holdout?.count ?? 0;
  }

  async train(
    request: TrainRequest,
    onProgress: (progress: TrainerProgress) => void,
  ): Promise<TrainOutcome> {
    const model = this.modelFor(request.model, request.weights, this.trainExamples);
    const { config } = request;
    const mu = request.settings?.proximalMu ?? 0;
    const result = await trainLocal(model, this.trainExamples, {
      epochs: config.localEpochs,
      batchSize: config.batchSize,
      learningRate: config.learningRate,
      seed: config.seed,
      onProgress,
      // FedProx: pulled towards the global model the round started from.
      ...(mu > 0 ? { proximal: { mu, anchor: request.weights } } : {}),
      ...(this.options.workers !== undefined ? { workers: this.options.workers } : {}),
    });
    // Read asynchronously: on WebGL/WebGPU a synchronous read blocks until the GPU is done.
    return { ...result, weights: await readFlatWeights(model) };
  }

  async evaluate(request: EvaluateRequest): Promise<EvaluateOutcome> {
    const holdout = this.holdout;
    if (!holdout || holdout.count === 0) {
      throw new TesseraError(ErrorCode.UNAVAILABLE, 'this client keeps no held-out examples');
    }
    const model = this.modelFor(request.model, request.weights, holdout);
    // The fields of EvaluateOutcome only: the evaluation reply is built from this object, and
    // evaluateModel's task metrics (metrics, sums) are not in the wire frame (yet).
    const { loss, accuracy, numExamples } = await evaluateModel(model, holdout, request.batchSize);
    return { loss, accuracy, numExamples };
  }

  dispose(): void {
    for (const model of this.models.values()) model.dispose();
    this.models.clear();
  }

  private modelFor(
    descriptor: ModelDescriptor,
    weights: Float32Array,
    examples: Examples,
  ): LayersModel {
    if (!(MODEL_NAMES as readonly string[]).includes(descriptor.name)) {
      throw new RoundFailure(
        'TASK_NOT_SUPPORTED',
        `task '${descriptor.name}': this client trains the built-in MNIST tasks only (${MODEL_NAMES.join(', ')}) so far`,
      );
    }
    const spec = modelSpec(descriptor.name as ModelName);
    if (spec.paramCount !== descriptor.paramCount) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `coordinator's ${descriptor.name} has ${descriptor.paramCount} parameters; this client's has ${spec.paramCount}`,
      );
    }
    // The hosts check their data before joining; this says it plainly for a model they did not
    // foresee (rather than tfjs's count of values in a tensor).
    if (examples.featureSize !== spec.featureSize) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `this client's examples have ${examples.featureSize} features; ${spec.name} reads ${spec.featureSize}`,
      );
    }
    const label = examples.y.find((y) => y >= spec.numClasses);
    if (label !== undefined) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `this client's examples include label ${label}; ${spec.name} has classes 0..${spec.numClasses - 1}`,
      );
    }
    let model = this.models.get(spec.name);
    if (!model) {
      model = createModel(spec.name, { seed: 0 });
      this.models.set(spec.name, model);
    }
    setFlatWeights(model, weights);
    return model;
  }
}
