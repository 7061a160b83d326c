import { ErrorCode, TesseraError } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import { failureReason, MAX_FAILURE_REASON_LENGTH } from './client.js';

describe('failureReason (what a failed reply tells the coordinator)', () => {
  it("is the error's own message, first line only", () => {
    expect(failureReason(new TesseraError(ErrorCode.INVALID_ARGUMENT, 'model reads 784'))).toBe(
      'model reads 784',
    );
    const tfjs = new Error('Cannot allocate 512 MB\n    at Engine.makeTensor (engine.js:1)\n');
    expect(failureReason(tfjs)).toBe('Cannot allocate 512 MB');
    expect(failureReason('thrown text')).toBe('thrown text');
    expect(failureReason(new RangeError(''))).toBe('RangeError');
  });

  it('is cut to a sentence, never a dump', () => {
    const reason = failureReason(new Error('x'.repeat(5000)));
    expect(reason).toHaveLength(MAX_FAILURE_REASON_LENGTH);
    expect(reason.endsWith('…')).toBe(true);
  });
});
