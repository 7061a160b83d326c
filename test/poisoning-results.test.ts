// The poisoning bench's results tables (bench/poisoning-results.ts): one table per model and
// setting, so that a header never describes a cell measured at another setting.
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import type { AttackName } from '../bench/poisoning-attacks.js';
import {
  type ModelSettings,
  poisoningTables,
  type RunResult,
  sameSettings,
} from '../bench/poisoning-results.js';

const short: ModelSettings = {
  rounds: 2,
  examplesPerClient: 100,
  epochs: 1,
  batchSize: 10,
  learningRate: 0.1,
  noiseSigma: 1,
  clipRadius: 0.5,
  testImages: 2000,
};
const long: ModelSettings = { ...short, rounds: 5, examplesPerClient: 600, clipRadius: 3 };

function result(
  settings: ModelSettings,
  partition: string,
  attack: AttackName,
  rule: string,
  accuracy: number,
  divergedAtRound: number | null = null,
): RunResult {
  return {
    model: 'fedavg-cnn',
    partition,
    attack,
    rule,
    strategy: rule.split(' ')[0] as string,
    options: {},
    settings,
    rounds: settings.rounds,
    testImages: settings.testImages,
    accuracy,
    loss: 1,
    divergedAtRound,
    honestChangeNorm: 1,
    wallSeconds: 1,
  };
}

const options = {
  models: ['fedavg-2nn', 'fedavg-cnn'],
  ruleLabels: ['fedavg', 'krum f=2', 'norm-bounded M=r'],
  clients: 10,
};

describe('sameSettings', () => {
  it('is true for equal settings and false when any one field differs', () => {
    expect(sameSettings(short, { ...short })).toBe(true);
    for (const field of Object.keys(short) as (keyof ModelSettings)[]) {
      expect(sameSettings(short, { ...short, [field]: short[field] + 1 })).toBe(false);
    }
  });

  it('refuses a setting that is missing or not a finite number, naming it', () => {
    for (const bad of [
      { ...short, rounds: Number.NaN },
      { ...short, clipRadius: undefined },
    ]) {
      let caught: unknown;
      try {
        sameSettings(short, bad as unknown as ModelSettings);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(TesseraError);
      expect((caught as TesseraError).code).toBe(ErrorCode.INVALID_ARGUMENT);
      expect((caught as TesseraError).data?.['field']).toBe(
        Number.isNaN(bad.rounds) ? 'rounds' : 'clipRadius',
      );
    }
  });
});

describe('poisoningTables', () => {
  it('gives each setting of a model its own table, header and clip radius', () => {
    const table = poisoningTables(
      [
        result(short, 'iid', 'none', 'fedavg', 0.598),
        result(short, 'iid', 'sign-flip', 'fedavg', 0.033),
        result(long, 'shards:2', 'none', 'fedavg', 0.854),
        result(long, 'shards:2', 'none', 'norm-bounded M=r', 0.85, 4),
        result(long, 'iid', 'noise', 'fedavg', 0.1234),
      ],
      options,
    );
    expect(table).toBe(
      [
        '**fedavg-cnn**: accuracy (%) on the first 2000 MNIST test images after 2 rounds; 10 clients x 100 examples, E=1, B=10, lr 0.1; noise σ=1, r=0.5',
        '',
        '| rule | none IID | sign-flip IID |',
        '|---|---:|---:|',
        '| fedavg | 59.8 | 3.3 |',
        '',
        '**fedavg-cnn**: accuracy (%) on the first 2000 MNIST test images after 5 rounds; 10 clients x 600 examples, E=1, B=10, lr 0.1; noise σ=1, r=3',
        '',
        '| rule | noise IID | none non-IID (shards:2) |',
        '|---|---:|---:|',
        '| fedavg | 12.3 | 85.4 |',
        '| norm-bounded M=3 | — | 85.0† |',
        '',
      ].join('\n'),
    );
  });

  it('leaves out a model with no results, and is empty for none', () => {
    expect(poisoningTables([], options)).toBe('');
    expect(poisoningTables([result(short, 'iid', 'none', 'fedavg', 0.5)], options)).not.toContain(
      'fedavg-2nn',
    );
  });

  it('refuses a result whose settings are incomplete, naming the field', () => {
    const broken = { ...result(short, 'iid', 'none', 'fedavg', 0.5), settings: { rounds: 2 } };
    expect(() => poisoningTables([broken as unknown as RunResult], options)).toThrow(
      /setting examplesPerClient must be a finite number, got undefined/,
    );
  });
});
