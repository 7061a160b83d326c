import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { createModel, modelSpec } from './models.js';
import { setFlatWeights } from './weights.js';

/** tfjs's `model.json`: the layers topology and where its weights are. */
export interface TfjsModelJson {
  format: 'layers-model';
  generatedBy: string;
  convertedBy: string;
  modelTopology: unknown;
  weightsManifest: Array<{ paths: string[]; weights: tf.io.WeightsManifestEntry[] }>;
}

export interface TfjsArtifacts {
  modelJson: TfjsModelJson;
  /** The weights file model.json points to: little-endian float32 in manifest order. */
  weightsBin: Uint8Array;
}

/**
 * A zoo model with a flat weight vector (a checkpoint) loaded: for serving predictions.
 * The caller owns the model and disposes it.
 */
export function modelWithWeights(modelName: string, weights: Float32Array): LayersModel {
  // The seed only fills the initial weights, which are overwritten at once.
  const model = createModel(modelName, { seed: 0 });
  try {
    setFlatWeights(model, weights);
    return model;
  } catch (error) {
    model.dispose();
    throw error;
  }
}

/**
 * The model in tfjs's own format, loadable elsewhere with `tf.loadLayersModel(url)`:
 * model.json (topology + weights manifest) and one weights file. `weightsPath` is the path
 * model.json gives for that file, relative to model.json's own URL.
 */
export async function toTfjsArtifacts(
  model: LayersModel,
  weightsPath = 'weights.bin',
): Promise<TfjsArtifacts> {
  let saved: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    }),
  );
  if (saved === undefined || saved.weightSpecs === undefined || saved.weightData === undefined) {
    throw new Error(`toTfjsArtifacts: model '${model.name}' saved no weights`);
  }
  // One buffer, or several (large models) that join() concatenates.
  const weightsBin = new Uint8Array(tf.io.CompositeArrayBuffer.join(saved.weightData));
  return {
    modelJson: {
      format: 'layers-model',
      generatedBy: `TensorFlow.js tfjs-layers v${tf.version_core}`,
      convertedBy: 'tessera',
      modelTopology: saved.modelTopology,
      weightsManifest: [{ paths: [weightsPath], weights: saved.weightSpecs }],
    },
    weightsBin,
  };
}

/**
 * Class probabilities for one example (a flat feature vector, e.g. 784 pixels in [0, 1]),
 * reshaped to the model's input shape. Every intermediate tensor is freed.
 */
export function predictProbabilities(
  model: LayersModel,
  modelName: string,
  features: Float32Array,
): number[] {
  const { inputShape } = modelSpec(modelName);
  return tf.tidy(() => {
    const input = tf.tensor(features, [1, ...inputShape], 'float32');
    const output = model.predict(input) as tf.Tensor;
    return Array.from(output.dataSync());
  });
}
