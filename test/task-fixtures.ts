import * as tfl from '@tensorflow/tfjs-layers';
import type { JsonValue } from '@tessera/protocol';

type JsonObject = { [key: string]: JsonValue };

/**
 * Task definitions for the task API, CLI and console tests: a small tabular classifier whose
 * topology tfjs writes here (`model.toJSON()`), as a user's script would.
 */

/** Dense(hidden, relu) - Dense(units, softmax) on `width` features. */
export function tabularTopology(
  width = 6,
  units = 3,
  hidden = 16,
  layerClass = 'Dense',
): JsonObject {
  const model = tfl.sequential({
    layers: [
      tfl.layers.dense({ inputShape: [width], units: hidden, activation: 'relu' }),
      tfl.layers.dense({ units, activation: 'softmax' }),
    ],
  });
  const topology = model.toJSON(null, false) as JsonObject;
  model.dispose();
  if (layerClass !== 'Dense') {
    const layers = (topology['config'] as { layers: { class_name: string }[] }).layers;
    (layers[1] as { class_name: string }).class_name = layerClass;
  }
  return topology;
}

/** The parameters of tabularTopology(width, units, hidden). */
export function tabularParams(width = 6, units = 3, hidden = 16): number {
  return width * hidden + hidden + hidden * units + units;
}

/**
 * Flowers: 3 numeric columns and a categorical one of 3 categories (6 features), 3 species.
 * `categories: false` leaves the categories to the statistics round.
 */
export function flowersTask(
  options: {
    name?: string;
    topology?: JsonObject;
    categories?: boolean;
    description?: string;
  } = {},
) {
  return {
    schemaVersion: 1,
    name: options.name ?? 'flowers',
    ...(options.description === undefined ? {} : { description: options.description }),
    input: {
      kind: 'tabular',
      label: 'species',
      columns: [
        { name: 'length', type: 'numeric', standardize: 'federated' },
        { name: 'width', type: 'numeric' },
        { name: 'height', type: 'numeric', standardize: { mean: 1, std: 2 } },
        options.categories === false
          ? { name: 'soil', type: 'categorical' }
          : { name: 'soil', type: 'categorical', categories: ['clay', 'sand', 'loam'] },
      ],
    },
    output: { kind: 'multiclass', classes: ['setosa', 'versicolor', 'virginica'] },
    loss: 'softmax-cross-entropy',
    metrics: ['accuracy'],
    model: { topology: options.topology ?? tabularTopology() },
  } as Record<string, unknown> & { model: Record<string, unknown> };
}

/** Initial weights for `params` parameters: float32 little-endian, as a tfjs weights.bin. */
export function weightsBin(params: number): Uint8Array {
  const values = new Float32Array(params);
  for (let i = 0; i < params; i++) values[i] = ((i % 17) - 8) / 100;
  return new Uint8Array(values.buffer);
}
