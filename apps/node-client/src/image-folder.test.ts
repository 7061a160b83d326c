import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import { TfjsTrainer } from '@tessera/client';
import { buildTaskModel, getFlatWeights, initBackend } from '@tessera/ml';
import type { JsonValue, TrainConfig } from '@tessera/protocol';
import { parseTaskDefinition, type TaskDefinition } from '@tessera/tasks';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openImageFolder } from './image-folder.js';

const root = mkdtempSync(join(tmpdir(), 'tessera-images-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
beforeAll(async () => {
  await initBackend('cpu');
});

/** A width x height image of one RGB colour, as PNG or JPEG bytes. */
function solid(format: 'png' | 'jpeg', width: number, height: number, rgb: number[]): Buffer {
  const data = Buffer.alloc(width * height * 4);
  for (let p = 0; p < width * height; p++) data.set([...rgb, 255], p * 4);
  if (format === 'jpeg') return jpeg.encode({ data, width, height }, 95).data;
  const png = new PNG({ width, height });
  data.copy(png.data);
  return PNG.sync.write(png);
}

/** Class folders cat (red PNGs, 8x8) and dog (blue JPEGs, 6x5), and a stray text file. */
function petFolder(name: string, extra: (folder: string) => void = () => {}): string {
  const folder = join(root, name);
  for (const pet of ['cat', 'dog']) mkdirSync(join(folder, pet), { recursive: true });
  for (let i = 0; i < 3; i++) {
    writeFileSync(join(folder, 'cat', `c${i}.png`), solid('png', 8, 8, [255, 0, 0]));
    writeFileSync(join(folder, 'dog', `d${i}.JPG`), solid('jpeg', 6, 5, [0, 0, 255]));
  }
  writeFileSync(join(folder, 'dog', 'notes.txt'), 'not an image, ignored');
  extra(folder);
  return folder;
}

function topologyOf(layers: tfl.layers.Layer[]): { [key: string]: JsonValue } {
  const model = tfl.sequential({ layers });
  const topology = model.toJSON(null, false) as { [key: string]: JsonValue };
  model.dispose();
  return topology;
}

/** Pets: 4x4 gray images of 0..255 pixels, classes cat and dog. */
const pets: TaskDefinition = parseTaskDefinition({
  schemaVersion: 1,
  name: 'pets',
  input: { kind: 'image', height: 4, width: 4, channels: 1, valueRange: { min: 0, max: 255 } },
  output: { kind: 'multiclass', classes: ['cat', 'dog'] },
  loss: 'softmax-cross-entropy',
  metrics: ['accuracy'],
  model: {
    topology: topologyOf([
      tfl.layers.flatten({ inputShape: [4, 4, 1] }),
      tfl.layers.dense({ units: 2, activation: 'softmax' }),
    ]),
  },
});
const split = { holdoutFraction: 0.2, partitionSeed: 42 };

describe('--data DIR: a folder of class sub-folders for image tasks', () => {
  it("decodes PNG and JPEG, converts to the task's channels and size, scales by valueRange, labels by folder", async () => {
    const data = await openImageFolder(petFolder('pets'), split);
    // 6 images (the .txt is ignored), 20% held out.
    expect([data.numExamples, data.numHoldout]).toEqual([5, 1]);
    const { train, holdout } = await data.examples(pets);
    expect(train.featureSize).toBe(16);
    const all = [...Array.from(train.y), ...Array.from(holdout?.y ?? [])].sort();
    expect(all).toEqual([0, 0, 0, 1, 1, 1]);
    for (let row = 0; row < train.count; row++) {
      // Red's luma is 0.299 of full scale, blue's 0.114 (JPEG is lossy: within 2%).
      const expected = train.y[row] === 0 ? 0.299 : 0.114;
      for (const value of train.x.subarray(row * 16, (row + 1) * 16)) {
        expect(value).toBeCloseTo(expected, train.y[row] === 0 ? 5 : 1);
      }
    }
  });

  it('trains the task with TfjsTrainer: loss and accuracy, the training images counted', async () => {
    const taskData = await openImageFolder(petFolder('pets-train'), split);
    const trainer = new TfjsTrainer(null, null, { taskData });
    const model = await buildTaskModel(pets, { seed: 1 });
    const weights = getFlatWeights(model);
    model.dispose();
    const config = { localEpochs: 3, batchSize: 2, learningRate: 0.5, seed: 1 } as TrainConfig;
    const request = {
      model: { name: 'pets', paramCount: weights.length },
      task: pets,
      weights,
      config,
    };
    const first = await trainer.train(request, () => {});
    const second = await trainer.train({ ...request, weights: first.weights }, () => {});
    expect(Object.keys(second.metrics ?? {}).sort()).toEqual(['accuracy', 'loss']);
    expect(second.numExamples).toBe(5);
    expect(second.loss).toBeLessThan(first.loss);
    trainer.dispose();
  });

  it('refuses a folder that is not a class, and a file it cannot decode, naming them (DATA_SCHEMA_MISMATCH)', async () => {
    const withBird = await openImageFolder(
      petFolder('pets-bird', (folder) => {
        mkdirSync(join(folder, 'bird'));
        writeFileSync(join(folder, 'bird', 'b.png'), solid('png', 2, 2, [0, 255, 0]));
      }),
      split,
    );
    await expect(withBird.examples(pets)).rejects.toMatchObject({
      code: 'DATA_SCHEMA_MISMATCH',
      message: `${join(root, 'pets-bird')}: folder 'bird' is not a class of task 'pets' ('cat', 'dog')`,
    });
    const corrupt = join(root, 'pets-corrupt', 'cat', 'c1.png');
    const withCorrupt = await openImageFolder(
      petFolder('pets-corrupt', () => writeFileSync(corrupt, 'not really a png')),
      split,
    );
    await expect(withCorrupt.examples(pets)).rejects.toMatchObject({
      code: 'DATA_SCHEMA_MISMATCH',
      message: `${corrupt}: not an image this client can decode (neither PNG nor JPEG)`,
    });
  });

  it('refuses a folder for a task that does not read images, and a folder without images', async () => {
    const data = await openImageFolder(petFolder('pets-tabular'), split);
    const tabular = parseTaskDefinition({
      ...pets,
      input: { kind: 'tabular', label: 'y', columns: [{ name: 'x', type: 'numeric' }] },
    });
    await expect(data.examples(tabular)).rejects.toMatchObject({
      code: 'DATA_SCHEMA_MISMATCH',
      message: expect.stringContaining("task 'pets' reads tabular data"),
    });
    mkdirSync(join(root, 'empty', 'cat'), { recursive: true });
    await expect(openImageFolder(join(root, 'empty'), split)).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('no images'),
    });
  });
});
