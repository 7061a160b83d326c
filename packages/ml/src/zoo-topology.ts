import type { LayersModel } from '@tensorflow/tfjs-layers';
import type { JsonValue } from '@tessera/protocol';
import { createModel } from './models.js';

type JsonObject = { [key: string]: JsonValue };

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * A model's layers topology as a built-in task stores it: what `model.toJSON()` writes, made
 * independent of when and with what seed it was built, so that the stored form
 * (packages/tasks/src/builtin-topologies.ts and builtin-dataset-tasks.ts) is a fixed text with
 * a fixed sha256:
 * - initialiser seeds are null (buildTaskModel sets them from the run's seed, as createModel);
 * - layer names are numbered per model (`dense_1`), not by tfjs's process-wide counter
 *   (`dense_Dense7` for the seventh Dense layer the process made);
 * - `keras_version` and `backend` are left out: they name the tfjs version that wrote it.
 */
export function stableTopology(model: LayersModel): JsonObject {
  const {
    keras_version: _version,
    backend: _backend,
    ...topology
  } = model.toJSON(null, false) as JsonObject;
  const perClass = new Map<string, number>();
  const layers = (topology['config'] as JsonObject)['layers'] as JsonObject[];
  for (const layer of layers) {
    const className = layer['class_name'] as string;
    const config = layer['config'] as JsonObject;
    const prefix = (config['name'] as string).replace(new RegExp(`_${className}\\d+$`), '');
    const index = (perClass.get(className) ?? 0) + 1;
    perClass.set(className, index);
    config['name'] = `${prefix}_${index}`;
    for (const value of Object.values(config)) {
      if (isObject(value) && isObject(value['config']) && 'seed' in value['config']) {
        value['config']['seed'] = null;
      }
    }
  }
  return topology;
}

/** A zoo model's topology as its built-in MNIST task stores it (see stableTopology). */
export function zooTopology(modelName: string): JsonObject {
  const model = createModel(modelName, { seed: 0 });
  try {
    return stableTopology(model);
  } finally {
    model.dispose();
  }
}
