/**
 * Bundled by test/browser-ml.test.ts into a page: trains the zoo's fedavg-cnn with
 * @tessera/ml in Chromium on one tfjs backend (WebGPU, WebGL or WebAssembly with
 * @tessera/ml's extra kernels) and reports the losses and whether the weights stay finite.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-webgl';
import '@tensorflow/tfjs-backend-webgpu';
import {
  createModel,
  evaluateModel,
  getFlatWeights,
  initBackend,
  type TrainingData,
  trainLocal,
} from '@tessera/ml';

export interface BrowserTrainingReport {
  backend: string;
  lossBefore: number;
  lossAfter: number;
  trainingLoss: number;
  weightsFinite: boolean;
  weightsChanged: boolean;
  paramCount: number;
}

async function startBackend(name: string): Promise<void> {
  if (name === 'wasm') {
    // @tessera/ml's own selection: registers its WASM training kernels, .wasm files from this site.
    await initBackend('wasm', { wasmPath: '/wasm/' });
    return;
  }
  if (!(await tf.setBackend(name))) throw new Error(`tf.setBackend('${name}') failed`);
  await tf.ready();
}

async function train(
  backendName: string,
  pixels: number[],
  labels: number[],
): Promise<BrowserTrainingReport> {
  await startBackend(backendName);
  const data: TrainingData = {
    x: Float32Array.from(pixels),
    y: Uint8Array.from(labels),
    count: labels.length,
  };
  const model = createModel('fedavg-cnn', { seed: 1 });
  const initial = getFlatWeights(model);
  const before = await evaluateModel(model, data, data.count);
  const result = await trainLocal(model, data, {
    epochs: 3,
    batchSize: 10,
    learningRate: 0.1,
    seed: 1,
  });
  const after = await evaluateModel(model, data, data.count);
  const weights = getFlatWeights(model);
  model.dispose();
  return {
    backend: tf.getBackend(),
    lossBefore: before.loss,
    lossAfter: after.loss,
    trainingLoss: result.loss,
    weightsFinite: weights.every(Number.isFinite),
    weightsChanged: weights.some((value, i) => value !== initial[i]),
    paramCount: weights.length,
  };
}

(globalThis as unknown as { tesseraTrain: typeof train }).tesseraTrain = train;
