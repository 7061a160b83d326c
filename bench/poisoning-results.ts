/**
 * The poisoning bench's results (bench/poisoning.ts) and their Markdown tables, apart from the
 * training so that the tables can be checked on their own. Each result carries the settings it
 * was trained at: a model's settings can change between invocations (the CNN did), and a table
 * holds only results of one setting, so that its header says what every cell measured.
 */
import { ErrorCode, TesseraError } from '@tessera/protocol';
import { ATTACK_NAMES, type AttackName } from './poisoning-attacks.js';

/** Per model: training settings, and the clipping radii, set near an honest change's norm. */
export interface ModelSettings {
  rounds: number;
  examplesPerClient: number;
  epochs: number;
  batchSize: number;
  learningRate: number;
  /** sigma of the noise attack, per coordinate. */
  noiseSigma: number;
  /** Centered clipping's tau and norm-bounded FedAvg's M (see RULES in poisoning.ts). */
  clipRadius: number;
  /** Scored on the first this many of the 10,000 MNIST test images. */
  testImages: number;
}

/** The fields of ModelSettings, in the order a table's header names them. */
const SETTING_FIELDS = [
  'rounds',
  'examplesPerClient',
  'epochs',
  'batchSize',
  'learningRate',
  'noiseSigma',
  'clipRadius',
  'testImages',
] as const satisfies readonly (keyof ModelSettings)[];

export interface RunResult {
  model: string;
  partition: string;
  attack: AttackName;
  rule: string;
  strategy: string;
  options: Record<string, unknown>;
  /** What the run was trained and scored at. */
  settings: ModelSettings;
  rounds: number;
  testImages: number;
  accuracy: number;
  loss: number;
  /** The round whose honest training went non-finite (the model diverged), if any. */
  divergedAtRound: number | null;
  /** Median L2 norm of the honest changes in the last round trained. */
  honestChangeNorm: number;
  wallSeconds: number;
}

export const resultKey = (r: Pick<RunResult, 'model' | 'partition' | 'attack' | 'rule'>): string =>
  `${r.model}|${r.partition}|${r.attack}|${r.rule}`;

/** One key per setting: two results share a table exactly when their keys are equal. */
function settingsKey(settings: ModelSettings): string {
  return SETTING_FIELDS.map((field) => {
    const value = settings[field];
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      throw new TesseraError(
        ErrorCode.INVALID_ARGUMENT,
        `poisoning results: setting ${field} must be a finite number, got ${String(value)}`,
        { field },
      );
    }
    return `${field}=${value}`;
  }).join(',');
}

export function sameSettings(a: ModelSettings, b: ModelSettings): boolean {
  return settingsKey(a) === settingsKey(b);
}

export interface TableOptions {
  /** Models in the order their tables come. */
  models: readonly string[];
  /** Rule labels in row order; a label ending in '=r' shows the table's clip radius. */
  ruleLabels: readonly string[];
  clients: number;
}

/**
 * Markdown: per model and setting, a row per rule, a column per partition x attack (IID
 * first, then the other partitions in name order; attacks in ATTACK_NAMES order). A rule or
 * column with no result is left out; a cell missing from a row shows '—', a diverged run '†'.
 */
export function poisoningTables(results: Iterable<RunResult>, options: TableOptions): string {
  const all = [...results];
  const out: string[] = [];
  for (const modelName of options.models) {
    const groups = new Map<string, RunResult[]>();
    for (const result of all.filter((r) => r.model === modelName)) {
      const key = settingsKey(result.settings);
      groups.set(key, [...(groups.get(key) ?? []), result]);
    }
    for (const rows of groups.values()) {
      const s = (rows[0] as RunResult).settings;
      const byKey = new Map(rows.map((r) => [resultKey(r), r]));
      const parts = [...new Set(rows.map((r) => r.partition))].sort((a, b) =>
        a === 'iid' ? -1 : b === 'iid' ? 1 : a.localeCompare(b),
      );
      const columns = parts.flatMap((p) =>
        ATTACK_NAMES.filter((a) => rows.some((r) => r.partition === p && r.attack === a)).map(
          (a) => [p, a] as const,
        ),
      );
      out.push(
        `**${modelName}**: accuracy (%) on the first ${s.testImages} MNIST test images after ${s.rounds} rounds; ${options.clients} clients x ${s.examplesPerClient} examples, E=${s.epochs}, B=${s.batchSize}, lr ${s.learningRate}; noise σ=${s.noiseSigma}, r=${s.clipRadius}`,
        '',
        `| rule | ${columns.map(([p, a]) => `${a} ${p === 'iid' ? 'IID' : `non-IID (${p})`}`).join(' | ')} |`,
        `|---|${columns.map(() => '---:').join('|')}|`,
      );
      for (const label of options.ruleLabels) {
        const cells = columns.map(([p, a]) => {
          const r = byKey.get(
            resultKey({ model: modelName, partition: p, attack: a, rule: label }),
          );
          if (!r) return '—';
          return `${(r.accuracy * 100).toFixed(1)}${r.divergedAtRound ? '†' : ''}`;
        });
        if (cells.every((c) => c === '—')) continue;
        // The clipping rules' radius is per setting: show its value.
        out.push(`| ${label.replace(/=r$/, `=${s.clipRadius}`)} | ${cells.join(' | ')} |`);
      }
      out.push('');
    }
  }
  return out.join('\n');
}
