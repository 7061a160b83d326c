import { describe, expect, it } from 'vitest';
import { ErrorCode, TesseraError } from './errors.js';
import {
  evaluateReplySchema,
  helloSchema,
  parseFrame,
  progressSchema,
  trainReplySchema,
} from './messages.js';
import { isStorableText } from './text.js';

const goodUpdate = {
  status: 'ok',
  runId: 'run-1',
  round: 3,
  weights: new Uint8Array(8),
  numExamples: 600,
  durationMs: 1200,
  metrics: { loss: 0.3, accuracy: 0.9 },
};

function rejection(frame: unknown): TesseraError {
  try {
    parseFrame(trainReplySchema, frame, 'update');
  } catch (error) {
    if (error instanceof TesseraError) return error;
  }
  throw new Error('expected a rejection');
}

describe('frame validation', () => {
  it('accepts a well-formed update and a failure report', () => {
    expect(parseFrame(trainReplySchema, goodUpdate, 'update').round).toBe(3);
    const failed = {
      status: 'failed',
      runId: 'run-1',
      round: 3,
      error: { message: 'out of memory' },
    };
    expect(parseFrame(trainReplySchema, failed, 'update').status).toBe('failed');
    const coded = { ...failed, error: { message: 'wrong width', code: 'DATA_SHAPE_MISMATCH' } };
    expect(parseFrame(trainReplySchema, coded, 'update')).toMatchObject({
      error: { code: 'DATA_SHAPE_MISMATCH' },
    });
  });

  it.each([
    ['weights as a JSON number array', { ...goodUpdate, weights: [0, 0] }, 'weights'],
    ['a fractional round', { ...goodUpdate, round: 1.5 }, 'round'],
    ['zero examples', { ...goodUpdate, numExamples: 0 }, 'numExamples'],
    ['a NaN metric', { ...goodUpdate, metrics: { loss: Number.NaN } }, 'metrics.loss'],
    ['no run id', { ...goodUpdate, runId: undefined }, 'runId'],
    ['an unknown status', { ...goodUpdate, status: 'maybe' }, 'status'],
    // Values Postgres or the round's sums would refuse later (issue 12).
    ['numExamples = 2^31', { ...goodUpdate, numExamples: 2 ** 31 }, 'numExamples'],
    ['numExamples over 1e9', { ...goodUpdate, numExamples: 1e9 + 1 }, 'numExamples'],
    ['durationMs = 2^31', { ...goodUpdate, durationMs: 2 ** 31 }, 'durationMs'],
    ['round = 2^31', { ...goodUpdate, round: 2 ** 31 }, 'round'],
    ['metrics.loss = 1e308', { ...goodUpdate, metrics: { loss: 1e308 } }, 'metrics.loss'],
    ['a metric below -1e12', { ...goodUpdate, metrics: { x: -1.5e12 } }, 'metrics.x'],
    ['metrics.accuracy = 1.5', { ...goodUpdate, metrics: { accuracy: 1.5 } }, 'metrics.accuracy'],
    [
      'a NUL in a metrics key',
      { ...goodUpdate, metrics: { 'lo\u0000ss': 1 } },
      'metrics.lo\u0000ss',
    ],
    [
      'a lone surrogate in a metrics key',
      { ...goodUpdate, metrics: { '\uD800': 1 } },
      'metrics.\uD800',
    ],
    ['a NUL in the run id', { ...goodUpdate, runId: 'run\u0000' }, 'runId'],
    [
      'a NUL in an error message',
      { status: 'failed', runId: 'r', round: 1, error: { message: 'oops\u0000' } },
      'error.message',
    ],
    [
      'a NUL in an error code',
      { status: 'failed', runId: 'r', round: 1, error: { message: 'm', code: 'A\u0000' } },
      'error.code',
    ],
    [
      'an error code of 65 characters',
      { status: 'failed', runId: 'r', round: 1, error: { message: 'm', code: 'C'.repeat(65) } },
      'error.code',
    ],
    [
      'an empty error code',
      { status: 'failed', runId: 'r', round: 1, error: { message: 'm', code: '' } },
      'error.code',
    ],
  ])('refuses %s with MALFORMED_FRAME naming the field', (_name, frame, field) => {
    const error = rejection(frame);
    expect(error.code).toBe(ErrorCode.MALFORMED_FRAME);
    expect(error.data?.['field']).toBe(field);
  });

  it('refuses a handshake without a token', () => {
    const hello = {
      protocolVersion: 1,
      client: { name: 'x', version: '1', runtime: 'node', backend: 'wasm', numExamples: 1 },
    };
    expect(() => parseFrame(helloSchema, hello, 'handshake')).toThrow(/handshake: token/);
  });

  it.each([
    ['numExamples = 2^31', { numExamples: 2 ** 31 }, 'numExamples'],
    ['loss = 1e308', { loss: 1e308 }, 'loss'],
    ['accuracy = -0.1', { accuracy: -0.1 }, 'accuracy'],
  ])('refuses an evaluation with %s', (_name, change, field) => {
    const evaluation = {
      status: 'ok',
      runId: 'r',
      round: 1,
      numExamples: 10,
      loss: 0.5,
      accuracy: 0.5,
    };
    expect(parseFrame(evaluateReplySchema, evaluation, 'evaluation').status).toBe('ok');
    expect(() =>
      parseFrame(evaluateReplySchema, { ...evaluation, ...change }, 'evaluation'),
    ).toThrow(expect.objectContaining({ code: ErrorCode.MALFORMED_FRAME, data: { field } }));
  });

  it('refuses progress with an epoch over INTEGER or a huge loss', () => {
    const progress = { runId: 'r', round: 1, epoch: 1, epochs: 1, batch: 1, batches: 2, loss: 0.3 };
    expect(progressSchema.safeParse(progress).success).toBe(true);
    expect(progressSchema.safeParse({ ...progress, epoch: 2 ** 31 }).success).toBe(false);
    expect(progressSchema.safeParse({ ...progress, loss: -1e300 }).success).toBe(false);
  });

  it.each([
    ['client.backend', { backend: 'wasm\u0000' }],
    ['client.name', { name: '\uDC00x' }],
    ['client.version', { version: '1\u0000' }],
    ['client.numExamples', { numExamples: 2 ** 31 }],
  ])('refuses a handshake with a bad %s', (field, change) => {
    const client = { name: 'x', version: '1', runtime: 'node', backend: 'wasm', numExamples: 1 };
    const hello = { token: 'tsr_x', protocolVersion: 1, client };
    expect(parseFrame(helloSchema, hello, 'handshake').client.backend).toBe('wasm');
    expect(() =>
      parseFrame(helloSchema, { ...hello, client: { ...client, ...change } }, 'handshake'),
    ).toThrow(expect.objectContaining({ code: ErrorCode.MALFORMED_FRAME, data: { field } }));
  });

  it('tells storable text from text with NUL or unpaired surrogates', () => {
    expect(isStorableText('plain, ünïcode and an emoji \u{1F600}')).toBe(true);
    expect(isStorableText('a\u0000b')).toBe(false);
    expect(isStorableText('\uD83D')).toBe(false);
    expect(isStorableText('x\uDE00')).toBe(false);
    expect(isStorableText('\uDE00\uD83D')).toBe(false);
  });
});
