import { preprocessingConstants, type TabularStatistics, withPreprocessing } from '@tessera/data';
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { featureWidth, parseTaskDefinition, type TaskDefinition } from '@tessera/tasks';

/**
 * The task a run trains after its federated statistics round: the definition with the
 * round's constants filled in (means and standard deviations, category lists), so that every
 * client encodes its rows the same way. Pure: the same task and statistics give the same
 * definition, hence the same sha256.
 *
 * The model's input width follows the collected categories: an admin cannot know how many
 * categories the federation's data holds, so where the topology states its input width in the
 * one usual place (the first layer's, or the single InputLayer's, `batch_input_shape`,
 * `batch_shape` or `input_shape` of one dimension) and the task brings no initial weights
 * (which fix the width), that width becomes the resolved input's. Otherwise the topology is
 * kept as it is, and checkTaskModel on the result says whether it fits.
 */
export function resolveTaskDefinition(
  task: TaskDefinition,
  combined: TabularStatistics,
): TaskDefinition {
  if (task.input.kind !== 'tabular') {
    throw new TesseraError(
      ErrorCode.INVALID_ARGUMENT,
      `task ${task.name}: only a tabular task has a statistics round`,
      { field: 'task' },
    );
  }
  const input = withPreprocessing(task.input, preprocessingConstants(combined, task.input));
  const width = featureWidth(input) as number;
  const topology =
    task.model.weights === undefined
      ? withInputWidth(task.model.topology, width)
      : task.model.topology;
  return parseTaskDefinition({ ...task, input, model: { ...task.model, topology } });
}

type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** The shape keys a Keras or tfjs layer config states its input with; the first is `[null, n]`. */
const BATCH_SHAPE_KEYS = ['batch_input_shape', 'batch_shape'] as const;

/** A copy of `topology` whose declared one-dimensional input has `width` features. */
export function withInputWidth(topology: Json, width: number): Json {
  const copy = structuredClone(topology);
  const wrapped = copy['model_config'];
  const model = isObject(wrapped) ? wrapped : copy;
  const config = model['config'];
  // Keras 2 writes a Sequential's config as {layers: [...]}; old Keras as the list itself.
  const layers = Array.isArray(config) ? config : isObject(config) ? config['layers'] : undefined;
  if (!Array.isArray(layers)) return topology;
  const inputLayers = layers.filter(
    (layer): layer is Json => isObject(layer) && layer['class_name'] === 'InputLayer',
  );
  const first = model['class_name'] === 'Sequential' ? layers[0] : undefined;
  const target =
    inputLayers.length === 1 ? inputLayers[0] : inputLayers.length === 0 ? first : undefined;
  const layerConfig = isObject(target) ? target['config'] : undefined;
  if (!isObject(layerConfig)) return topology;
  for (const key of BATCH_SHAPE_KEYS) {
    const shape = layerConfig[key];
    if (Array.isArray(shape) && shape.length === 2 && typeof shape[1] === 'number') {
      layerConfig[key] = [shape[0] ?? null, width];
      return copy;
    }
  }
  const shape = layerConfig['input_shape'];
  if (Array.isArray(shape) && shape.length === 1 && typeof shape[0] === 'number') {
    layerConfig['input_shape'] = [width];
    return copy;
  }
  return topology;
}
