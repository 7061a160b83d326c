import { describe, expect, it } from 'vitest';
import { ErrorCode, TesseraError } from './errors.js';
import { helloSchema, parseFrame, trainReplySchema } from './messages.js';

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
  });

  it.each([
    ['weights as a JSON number array', { ...goodUpdate, weights: [0, 0] }, 'weights'],
    ['a fractional round', { ...goodUpdate, round: 1.5 }, 'round'],
    ['zero examples', { ...goodUpdate, numExamples: 0 }, 'numExamples'],
    ['a NaN metric', { ...goodUpdate, metrics: { loss: Number.NaN } }, 'metrics.loss'],
    ['no run id', { ...goodUpdate, runId: undefined }, 'runId'],
    ['an unknown status', { ...goodUpdate, status: 'maybe' }, 'status'],
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
});
