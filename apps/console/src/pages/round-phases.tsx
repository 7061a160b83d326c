import { ROUND_PHASES, roundTotalMs } from '@tessera/protocol';
import type { Round } from '../api.js';
import { formatMs } from '../ui.js';

/**
 * Where each round's time went (Round.phases): waiting for clients, distribution, training,
 * aggregation, commit and evaluation, and the whole round; then central evaluation, which
 * runs beside the next round's training and so is not part of the whole. Rounds recorded
 * before phases were, or still being evaluated, show "—" where a phase is not recorded.
 */
export function RoundPhasesTable({ rounds }: { rounds: Round[] }) {
  const timed = rounds.filter((round) => round.phases !== null);
  if (timed.length === 0) return null;
  return (
    <div className="card">
      <h2>Where the time went</h2>
      <table data-testid="round-phases">
        <thead>
          <tr>
            <th>Round</th>
            {ROUND_PHASES.map(({ key, label }) => (
              <th key={key}>{label[0]?.toUpperCase() + label.slice(1)}</th>
            ))}
            <th>Whole round</th>
            <th>Training share</th>
            <th title="Runs while the next round trains: not part of the whole round">
              Central evaluation (beside the next round)
            </th>
          </tr>
        </thead>
        <tbody>
          {timed.map(({ number, phases }) => {
            const total = roundTotalMs(phases);
            return (
              <tr key={number} data-round={number}>
                <td>{number}</td>
                {ROUND_PHASES.map(({ key }) => {
                  const ms = phases?.[key] ?? null;
                  return <td key={key}>{ms === null ? '—' : formatMs(ms)}</td>;
                })}
                <td>{total === null ? '—' : formatMs(total)}</td>
                <td>
                  {total === null || total === 0 || !phases
                    ? '—'
                    : `${Math.round((100 * phases.trainingMs) / total)}%`}
                </td>
                <td>
                  {phases?.centralEvaluationMs == null ? '—' : formatMs(phases.centralEvaluationMs)}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
