import { describe, expect, it } from 'vitest';
import { ParticipationLog, roundLine } from './participation.js';

describe('ParticipationLog', () => {
  it('sums up each run: outcomes, training time, last loss, accuracy and problem', () => {
    const log = new ParticipationLog();
    log.started('run-a', 1);
    log.finished('run-a', 1, { outcome: 'sent', numExamples: 360, durationMs: 1200, loss: 0.5 });
    log.evaluated('run-a', 1, 0.9);
    log.started('run-a', 2);
    log.finished('run-a', 2, { outcome: 'failed', reason: 'out of memory' });
    log.started('run-a', 3);
    log.finished('run-a', 3, { outcome: 'sent', numExamples: 360, durationMs: 800, loss: 0.25 });
    log.started('run-a', 4); // left while training
    log.started('run-b', 1);
    expect(log.summaries()).toEqual([
      'run run-a: took part in 4 rounds (2 sent, 1 failed, 1 unfinished), 2.0 s of training, ' +
        'last loss 0.2500 (round 3), held-out accuracy 90.00% (round 1), last problem (round 2): out of memory',
      'run run-b: took part in 1 round (1 unfinished)',
    ]);
  });

  it('counts a retried round once, by its latest attempt', () => {
    const log = new ParticipationLog();
    log.started('r', 1);
    log.started('r', 1);
    log.finished('r', 1, { outcome: 'refused', reason: 'WRONG_ROUND: closed', durationMs: 500 });
    expect(log.summary('r')).toBe(
      'run r: took part in 1 round (1 refused), 0.5 s of training, last problem (round 1): WRONG_ROUND: closed',
    );
  });
});

describe('roundLine', () => {
  it('says what the round did, and whether the coordinator took it', () => {
    const round = {
      round: 3,
      numExamples: 360,
      durationMs: 1234,
      samplesPerSecond: 291.7,
      loss: 0.34121,
    };
    expect(roundLine(round)).toBe(
      'round 3: trained on 360 examples in 1.2 s (292 samples/s), loss 0.3412, sent',
    );
    expect(roundLine({ ...round, refusal: 'WRONG_ROUND: round 3 is closed' })).toBe(
      'round 3: trained on 360 examples in 1.2 s (292 samples/s), loss 0.3412, refused: WRONG_ROUND: round 3 is closed',
    );
  });
});
