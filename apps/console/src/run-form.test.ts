import { describe, expect, it } from 'vitest';
import {
  deadlineMs,
  describeBounds,
  inPeoplesWords,
  optionFields,
  optionValue,
} from './run-form.js';

describe("the run form's own rules", () => {
  it('says a message with the labels the form shows', () => {
    expect(inPeoplesWords('rounds', 'a whole number from 1 to 100,000')).toBe(
      'Rounds: a whole number from 1 to 100,000',
    );
    expect(inPeoplesWords('clientsPerRound', 'must be at least minClients (3)')).toBe(
      'Clients per round: must be at least minimum clients (3)',
    );
    expect(inPeoplesWords('strategyOptions.beta', 'a number from 0 to below 0.5')).toBe(
      'beta: a number from 0 to below 0.5',
    );
  });

  it('takes the deadline in seconds or minutes, at least 5 s and at most 24 h', () => {
    expect(deadlineMs('10', 'min')).toBe(600_000);
    expect(deadlineMs('5', 's')).toBe(5000);
    expect(deadlineMs('4.9', 's')).toEqual({ error: expect.stringMatching(/^at least 5 seconds/) });
    expect(deadlineMs('1441', 'min')).toHaveProperty('error');
    expect(deadlineMs('', 's')).toEqual({ error: expect.stringMatching(/^a number of seconds/) });
  });

  it("reads a strategy's options from the JSON Schema /api/meta publishes", () => {
    const [beta] = optionFields({
      type: 'object',
      properties: {
        beta: { default: 0.1, type: 'number', minimum: 0, exclusiveMaximum: 0.5 },
        name: { type: 'string' },
      },
    });
    expect(beta).toEqual({
      name: 'beta',
      integer: false,
      minimum: 0,
      exclusiveMaximum: 0.5,
      default: 0.1,
    });
    if (!beta) throw new Error('no field');
    expect(describeBounds(beta)).toBe('a number from 0 to below 0.5');
    expect(optionValue(beta, '0.2')).toBe(0.2);
    expect(optionValue(beta, '')).toBeUndefined();
    expect(optionValue(beta, '0.5')).toEqual({ error: 'a number from 0 to below 0.5' });
    const f = { name: 'f', integer: true, minimum: 0, maximum: 10_000 };
    expect(optionValue(f, '1.5')).toEqual({ error: 'a whole number from 0 to 10,000' });
  });
});
