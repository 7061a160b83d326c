import { ErrorCode } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import { toExamples } from './examples.js';
import { loadMnist, parseMnistIdx } from './mnist.js';

function idxFiles(count: number): { images: Uint8Array; labels: Uint8Array } {
  const images = new Uint8Array(16 + count * 784);
  const imageHeader = new DataView(images.buffer);
  imageHeader.setUint32(0, 0x803);
  imageHeader.setUint32(4, count);
  imageHeader.setUint32(8, 28);
  imageHeader.setUint32(12, 28);
  const labels = new Uint8Array(8 + count);
  const labelHeader = new DataView(labels.buffer);
  labelHeader.setUint32(0, 0x801);
  labelHeader.setUint32(4, count);
  for (let i = 0; i < count; i++) labels[8 + i] = i % 10;
  return { images, labels };
}

const parse = (files: { images: Uint8Array; labels: Uint8Array }) =>
  parseMnistIdx(
    { bytes: files.images, source: 'images.idx' },
    { bytes: files.labels, source: 'labels.idx' },
  );

describe('loadMnist', () => {
  it('loads 60,000 training and 10,000 test examples with labels 0..9', () => {
    const train = loadMnist('train');
    const test = loadMnist('test');
    expect(train.count).toBe(60_000);
    expect(test.count).toBe(10_000);
    expect(train.images.length).toBe(60_000 * 784);
    expect(test.labels.length).toBe(10_000);
    const labelCounts = new Array<number>(10).fill(0);
    for (const label of train.labels) labelCounts[label] = (labelCounts[label] ?? 0) + 1;
    // Every digit has between 5,421 (5) and 6,742 (1) training examples.
    expect(Math.min(...labelCounts)).toBe(5421);
    expect(Math.max(...labelCounts)).toBe(6742);
    // The first training example is a 5, the first test example a 7.
    expect(train.labels[0]).toBe(5);
    expect(test.labels[0]).toBe(7);
  });

  it('has plausible pixel statistics (mean ~0.13, about 19% ink)', () => {
    const examples = toExamples(loadMnist('test'));
    let sum = 0;
    let ink = 0;
    for (const value of examples.x) {
      sum += value;
      if (value > 0) ink++;
    }
    expect(sum / examples.x.length).toBeCloseTo(0.1325, 2);
    expect(ink / examples.x.length).toBeGreaterThan(0.15);
    expect(ink / examples.x.length).toBeLessThan(0.25);
    expect(Math.max(...examples.x.subarray(0, 784))).toBe(1);
  });

  it('is cached per process', () => {
    expect(loadMnist('test')).toBe(loadMnist('test'));
  });

  it('rejects an unknown split', () => {
    expect(() => loadMnist('validation' as 'test')).toThrow(/unknown split 'validation'/);
  });
});

describe('parseMnistIdx', () => {
  it('parses a well-formed pair', () => {
    const split = parse(idxFiles(3));
    expect(split.count).toBe(3);
    expect([...split.labels]).toEqual([0, 1, 2]);
  });

  it('rejects a wrong magic number, naming the file', () => {
    const files = idxFiles(3);
    files.images[3] = 0x01;
    expect(() => parse(files)).toThrow(/images\.idx: magic number 0x801, expected 0x803/);
  });

  it('rejects a truncated image file', () => {
    const files = idxFiles(3);
    expect(() =>
      parse({ ...files, images: files.images.subarray(0, files.images.length - 1) }),
    ).toThrow(/images\.idx: 2367 bytes, expected 2368 for 3 images/);
  });

  it('rejects a label count that does not match the images', () => {
    const files = idxFiles(3);
    new DataView(files.labels.buffer).setUint32(4, 2);
    expect(() => parse(files)).toThrow(/2 labels for 3 images/);
  });

  it('rejects a label outside 0..9 and a short header', () => {
    const files = idxFiles(3);
    files.labels[9] = 12;
    expect(() => parse(files)).toThrow(
      expect.objectContaining({
        code: ErrorCode.INVALID_ARGUMENT,
        message: expect.stringMatching(/label 12 at index 1/),
      }),
    );
    expect(() => parse({ ...files, labels: new Uint8Array(4) })).toThrow(/shorter than the header/);
  });
});

describe('toExamples', () => {
  it('selects and scales the examples at the given indices', () => {
    const test = loadMnist('test');
    const examples = toExamples(test, [9999, 0]);
    expect(examples.count).toBe(2);
    expect(examples.featureSize).toBe(784);
    expect(examples.y[0]).toBe(test.labels[9999]);
    expect(examples.y[1]).toBe(7);
    const pixel = test.images[9999 * 784 + 400] ?? 0;
    expect(examples.x[400]).toBeCloseTo(pixel / 255, 6);
  });

  it('rejects an index out of range', () => {
    expect(() => toExamples(loadMnist('test'), [0, 10_000])).toThrow(/indices\[1\] = 10000/);
  });
});
