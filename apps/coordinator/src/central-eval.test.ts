import { createModel, getFlatWeights, loadNativeEvaluationAddon } from '@tessera/ml';
import { describe, expect, it } from 'vitest';
import { MnistCentralEvaluator } from './central-eval.js';

describe('MnistCentralEvaluator', () => {
  it('evaluates natively where the addon is built, with the figures of the tfjs engine', async () => {
    const chosen: unknown[] = [];
    const auto = new MnistCentralEvaluator({ onEngine: (engine) => chosen.push(engine) });
    const tfjs = new MnistCentralEvaluator({ engine: 'tfjs' });
    const weights = getFlatWeights(createModel('fedavg-2nn', { seed: 2 }));
    const a = await auto.evaluate('fedavg-2nn', weights);
    const b = await tfjs.evaluate('fedavg-2nn', weights);
    const expected = (await loadNativeEvaluationAddon()).ok ? 'native' : 'tfjs';
    expect([a.engine, b.engine]).toEqual([expected, 'tfjs']);
    expect(chosen).toEqual([expect.objectContaining({ model: 'fedavg-2nn', engine: expected })]);
    expect(a.numExamples).toBe(10_000);
    expect(Math.abs(a.loss - b.loss) / b.loss).toBeLessThan(1e-5);
    expect(Math.abs(a.accuracy - b.accuracy)).toBeLessThanOrEqual(1e-4);
    // The next round's weights reach the model: another figure.
    const next = getFlatWeights(createModel('fedavg-2nn', { seed: 3 }));
    expect((await auto.evaluate('fedavg-2nn', next)).loss).not.toBe(a.loss);
    expect(chosen).toHaveLength(1);
  });
});
