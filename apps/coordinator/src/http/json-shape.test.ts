import { describe, expect, it } from 'vitest';
import { checkJsonShape, MAX_JSON_DEPTH } from './json-shape.js';

const check = (text: string) => () => checkJsonShape(new TextEncoder().encode(text));

describe('checkJsonShape', () => {
  it('passes ordinary bodies, numbers inside strings included', () => {
    expect(
      check('{"seed":-0,"lr":1e-300,"n":123456789012345678901234567890,"s":"1e400"}'),
    ).not.toThrow();
    expect(
      check(`{"a":${'['.repeat(MAX_JSON_DEPTH - 1)}${']'.repeat(MAX_JSON_DEPTH - 1)}}`),
    ).not.toThrow();
    expect(check('[0, 0.0, -0e5, 5e-324]')).not.toThrow();
  });

  it('refuses nesting past the bound', () => {
    expect(check('['.repeat(MAX_JSON_DEPTH + 1))).toThrow(/nests deeper/);
  });

  it('refuses numbers that overflow to Infinity or underflow to zero', () => {
    for (const literal of ['1e400', '-1e400', '-0.5e-400', '1e-400', '0.000001e-330']) {
      expect(check(`{"seed":${literal}}`), literal).toThrow(/outside the float64 range/);
    }
  });
});
