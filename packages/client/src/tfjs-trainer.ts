import type { Examples, TabularStatistics, TaskExamples } from '@tessera/data';
import {
  buildTaskModel,
  createModel,
  evaluateModel,
  MODEL_NAMES,
  type ModelName,
  modelSpec,
  readFlatWeights,
  setFlatWeights,
  type TrainingObjective,
  type TrainResult,
  taskObjective,
  trainLocal,
} from '@tessera/ml';
import { ErrorCode, type ModelDescriptor, TesseraError } from '@tessera/protocol';
import { type TaskDefinition, taskSha256 } from '@tessera/tasks';
import { TFJS_TRAINER_SETTINGS } from './strategy-settings.js';
import { assertResolved, type TaskData } from './task-data.js';
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

export interface TfjsTrainerOptions {
  /** Data-parallel threads for local training (Node only; see @tessera/ml's trainLocal). */
  workers?: number | 'auto';
  /**
   * The local data of tasks other than the built-in MNIST ones (a CSV/TSV or JSON Lines file
   * read per task); absent: this client trains the built-in tasks only.
   */
  taskData?: TaskData;
}

/** The examples a round trains or evaluates on, and the model they go through. */
interface Prepared {
  model: LayersModel;
  train: Examples | TaskExamples;
  holdout: Examples | TaskExamples | null;
  objective: TrainingObjective | undefined;
  /** Classification reports accuracy; a regression has none (its accuracy field is 0). */
  classification: boolean;
  /** The task's metrics besides loss and accuracy (auc, mae, rmse). */
  extraMetrics: readonly string[];
}

/** Weights in the model, trainable or not: the length of its flat weight vector. */
function paramCountOf(model: LayersModel): number {
  let count = 0;
  for (const weight of model.weights) {
    count += weight.shape.reduce<number>((product, dimension) => product * (dimension ?? 1), 1);
  }
  return count;
}

/**
 * Trains with @tessera/ml in this thread, on the tfjs backend the host selected. The built-in
 * MNIST tasks use the zoo's models and the examples given to the constructor; any other task
 * its own model (built from the task's topology) and the examples `taskData` reads for it.
 * Models are built once and reused across rounds (the global weights are loaded into them each
 * time): the zoo's per name, a task's per sha256, the previous task's disposed.
 */
export class TfjsTrainer implements LocalTrainer {
  readonly supportedSettings = TFJS_TRAINER_SETTINGS;
  private readonly models = new Map<string, LayersModel>();
  private taskModel: { sha256: string; model: Promise<LayersModel> } | undefined;

  constructor(
    private readonly trainExamples: Examples | null,
    private readonly holdout: Examples | null,
    private readonly options: TfjsTrainerOptions = {},
  ) {}

  get numExamples(): number {
    return this.trainExamples?.count ?? this.options.taskData?.numExamples ?? 0;
  }

  get numHoldout(): number | undefined {
    if (this.trainExamples !== null || this.options.taskData === undefined) {
      return this.holdout?.count ?? 0;
    }
    return this.options.taskData.numHoldout;
  }

  async train(
    request: TrainRequest,
    onProgress: (progress: TrainerProgress) => void,
  ): Promise<TrainOutcome> {
    const prepared = await this.prepare(request.model, request.task, request.weights);
    const { config } = request;
    const mu = request.settings?.proximalMu ?? 0;
    const result = await trainLocal(prepared.model, prepared.train, {
      epochs: config.localEpochs,
      batchSize: config.batchSize,
      learningRate: config.learningRate,
      seed: config.seed,
      onProgress,
      ...(prepared.objective === undefined ? {} : { objective: prepared.objective }),
      // FedProx: pulled towards the global model the round started from.
      ...(mu > 0 ? { proximal: { mu, anchor: request.weights } } : {}),
      // SCAFFOLD: every gradient corrected by c − c_i.
      ...(request.gradientCorrection === undefined
        ? {}
        : { gradientCorrection: request.gradientCorrection }),
      ...(this.options.workers !== undefined ? { workers: this.options.workers } : {}),
    });
    return {
      loss: result.loss,
      accuracy: result.accuracy,
      numExamples: result.numExamples,
      durationMs: result.durationMs,
      samplesPerSecond: result.samplesPerSecond,
      steps: result.steps,
      metrics: updateMetrics(result, prepared),
      // Read asynchronously: on WebGL/WebGPU a synchronous read blocks until the GPU is done.
      weights: await readFlatWeights(prepared.model),
    };
  }

  async evaluate(request: EvaluateRequest): Promise<EvaluateOutcome> {
    const prepared = await this.prepare(request.model, request.task, request.weights);
    const holdout = prepared.holdout;
    if (!holdout || holdout.count === 0) {
      throw new TesseraError(ErrorCode.UNAVAILABLE, 'this client keeps no held-out examples');
    }
    // The fields of the evaluation frame only (docs/protocol.md §5.7): loss and accuracy, which
    // is required there, so a regression sends 0 (evaluateModel's accuracy for it).
    const { loss, accuracy, numExamples } = await evaluateModel(
      prepared.model,
      holdout,
      request.batchSize,
      prepared.objective,
    );
    return { loss, accuracy: prepared.classification ? accuracy : 0, numExamples };
  }

  /**
   * This client's summary of its rows for the federated statistics round (see
   * FileTaskData.statistics: the training rows). RoundFailure TASK_NOT_SUPPORTED without task
   * data (an MNIST-only client).
   */
  async statistics(task: TaskDefinition): Promise<TabularStatistics> {
    const taskData = this.options.taskData;
    if (taskData === undefined) {
      throw new RoundFailure(
        'TASK_NOT_SUPPORTED',
        `task '${task.name}': this client holds MNIST examples only (start it with --data FILE for this task)`,
      );
    }
    return taskData.statistics(task);
  }

  dispose(): void {
    for (const model of this.models.values()) model.dispose();
    this.models.clear();
    const taskModel = this.taskModel;
    this.taskModel = undefined;
    void taskModel?.model.then((model) => model.dispose()).catch(() => {});
  }

  private prepare(descriptor: ModelDescriptor, task: TaskDefinition, weights: Float32Array) {
    return (MODEL_NAMES as readonly string[]).includes(descriptor.name)
      ? this.prepareZoo(descriptor, weights)
      : this.prepareTask(descriptor, task, weights);
  }

  /** A built-in MNIST task: the zoo's model and the constructor's examples. */
  private prepareZoo(descriptor: ModelDescriptor, weights: Float32Array): Prepared {
    const examples = this.trainExamples;
    if (examples === null) {
      throw new RoundFailure(
        'TASK_NOT_SUPPORTED',
        `model '${descriptor.name}' (a built-in MNIST task): this client holds no MNIST examples (start it with --mnist K/N or --csv FILE)`,
      );
    }
    const spec = modelSpec(descriptor.name as ModelName);
    if (spec.paramCount !== descriptor.paramCount) {
      throw new RoundFailure(
        'TASK_MODEL_MISMATCH',
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
    return {
      model,
      train: examples,
      holdout: this.holdout,
      objective: undefined,
      classification: true,
      extraMetrics: [],
    };
  }

  /**
   * Any other task: checked resolvable first (nothing to build for a task the statistics round
   * has yet to complete), then its model, whose size must be the coordinator's, then its data.
   */
  private async prepareTask(
    descriptor: ModelDescriptor,
    task: TaskDefinition,
    weights: Float32Array,
  ): Promise<Prepared> {
    assertResolved(task);
    const taskData = this.options.taskData;
    if (taskData === undefined) {
      throw new RoundFailure(
        'TASK_NOT_SUPPORTED',
        `task '${task.name}': this client holds MNIST examples only (start it with --data FILE for this task)`,
      );
    }
    const model = await this.taskModelFor(task);
    const paramCount = paramCountOf(model);
    if (paramCount !== descriptor.paramCount) {
      throw new RoundFailure(
        'TASK_MODEL_MISMATCH',
        `task '${task.name}': the coordinator's model has ${descriptor.paramCount} parameters; the one this client builds from the task has ${paramCount}`,
      );
    }
    const { train, holdout } = await taskData.examples(task);
    setFlatWeights(model, weights);
    const classification = task.output.kind !== 'regression';
    return {
      model,
      train,
      holdout,
      objective: taskObjective(task),
      classification,
      extraMetrics: task.metrics.filter((metric) => metric !== 'accuracy'),
    };
  }

  /** The task's model, built once per sha256 (seed 0: the coordinator's weights replace them). */
  private taskModelFor(task: TaskDefinition): Promise<LayersModel> {
    const sha256 = taskSha256(task);
    if (this.taskModel?.sha256 === sha256) return this.taskModel.model;
    const previous = this.taskModel;
    const model = buildTaskModel(task, { seed: 0 });
    this.taskModel = { sha256, model };
    // One task model at a time: a run's next task (or the statistics round's resolved one)
    // replaces it, and tfjs keeps a model's weights until it is disposed.
    void previous?.model.then((old) => old.dispose()).catch(() => {});
    model.catch(() => {
      if (this.taskModel?.model === model) this.taskModel = undefined;
    });
    return model;
  }
}

/**
 * The update's metrics (docs/protocol.md §5.6): loss; accuracy for classification only (a
 * regression has none, and a 0 would pull the round's mean down); the task's other metrics
 * where defined (auc is not, on a batch of one class) and finite.
 */
function updateMetrics(result: TrainResult, prepared: Prepared): Record<string, number> {
  const metrics: Record<string, number> = { loss: result.loss };
  if (prepared.classification) metrics['accuracy'] = result.accuracy;
  const values = result.metrics as Readonly<Record<string, number | undefined>>;
  for (const name of prepared.extraMetrics) {
    const value = values[name];
    if (value !== undefined && Number.isFinite(value)) metrics[name] = value;
  }
  return metrics;
}
