import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import { createRng } from '@tessera/data';
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

/** Ward risk: 3 numeric columns with constants, 1 categorical of 3 categories, 3 classes. */
export function wardRiskTask() {
  return {
    schemaVersion: 1,
    name: 'ward-risk',
    input: {
      kind: 'tabular',
      label: 'risk',
      columns: [
        { name: 'age', type: 'numeric', standardize: { mean: 50, std: 15 } },
        { name: 'pulse', type: 'numeric', standardize: { mean: 80, std: 12 } },
        { name: 'temperature', type: 'numeric', standardize: { mean: 37, std: 0.8 } },
        { name: 'ward', type: 'categorical', categories: ['a', 'b', 'c'] },
      ],
    },
    output: { kind: 'multiclass', classes: ['low', 'mid', 'high'] },
    loss: 'softmax-cross-entropy',
    metrics: ['accuracy'],
    // Dense(16, relu) -> Dense(3, softmax) on 3 + 3 features, written by tfjs here.
    model: { topology: tabularTopology(6, 3, 16) },
  };
}

/**
 * A hospital's ward-risk rows as a CSV file in `folder`: by default the task's columns in
 * another order than the task's and an extra column the task does not name (ignored); risk
 * from a rule the model can learn. Returns the file's path.
 */
export function writeWardCsv(
  folder: string,
  name: string,
  rows: number,
  seed: number,
  columns = ['ward', 'note', 'risk', 'temperature', 'age', 'pulse'],
): string {
  const rng = createRng(seed);
  const lines = [columns.join(',')];
  for (let row = 0; row < rows; row++) {
    const age = 20 + Math.floor(rng.next() * 70);
    const pulse = 55 + Math.floor(rng.next() * 60);
    const score = (age - 50) / 15 + (pulse - 80) / 12;
    const values: Record<string, string> = {
      ward: ['a', 'b', 'c'][row % 3] as string,
      note: `visit ${row}`,
      risk: score < -0.5 ? 'low' : score < 0.8 ? 'mid' : 'high',
      temperature: (36 + rng.next() * 3).toFixed(1),
      age: String(age),
      pulse: String(pulse),
    };
    lines.push(columns.map((column) => values[column]).join(','));
  }
  const path = join(folder, name);
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}
