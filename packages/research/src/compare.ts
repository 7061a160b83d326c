import type { RoundRecord } from '@tessera/db';

/** One run's per-round test metrics, as a comparison shows them. */
export interface Series {
  label: string;
  points: { round: number; accuracy: number | null; loss: number | null }[];
}

/** A run's central (test-set) evaluation per round, falling back to federated evaluation. */
export function testSeries(label: string, rounds: readonly RoundRecord[]): Series {
  return {
    label,
    points: rounds.map((round) => ({
      round: round.number,
      accuracy: round.centralAccuracy ?? round.federatedAccuracy,
      loss: round.centralLoss ?? round.federatedLoss,
    })),
  };
}

const format = (value: number | null | undefined, digits: number) =>
  value === null || value === undefined ? '—' : value.toFixed(digits);

/** A Markdown table: round, then accuracy and loss of each series side by side. */
export function comparisonTable(series: readonly Series[]): string {
  const rounds = [...new Set(series.flatMap((s) => s.points.map((p) => p.round)))].sort(
    (a, b) => a - b,
  );
  const header = [
    'round',
    ...series.map((s) => `${s.label} accuracy`),
    ...series.map((s) => `${s.label} loss`),
  ];
  const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  for (const round of rounds) {
    const at = (s: Series) => s.points.find((p) => p.round === round);
    lines.push(
      `| ${[
        String(round),
        ...series.map((s) => format(at(s)?.accuracy, 4)),
        ...series.map((s) => format(at(s)?.loss, 4)),
      ].join(' | ')} |`,
    );
  }
  return `${lines.join('\n')}\n`;
}
