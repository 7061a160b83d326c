import { type ExportFormat, type ExportTable, exportUrl, modelUrl } from '../api.js';

const FORMATS: Array<[ExportFormat, string]> = [
  ['csv', 'CSV'],
  ['jsonl', 'JSON Lines'],
];

/**
 * Downloads of a run's record, for everyone who may read it (researchers too): the rounds and
 * client-update tables as CSV or JSON Lines (a round page: that round's rows), and a round's
 * model in the tfjs format. Plain links: the browser sends the session cookie itself.
 */
export function ExportLinks(props: { runId: string; round?: number; modelRound: number | null }) {
  const { runId, round, modelRound } = props;
  const suffix = round === undefined ? '' : `round-${round}-`;
  const table = (name: ExportTable, label: string) => (
    <li>
      {label}:{' '}
      {FORMATS.map(([format, formatLabel], index) => (
        <span key={format}>
          {index > 0 ? ' · ' : null}
          <a
            href={exportUrl(runId, name, format, round)}
            download={`${runId}-${suffix}${name}.${format}`}
            data-testid={`export-${name}-${format}`}
          >
            {formatLabel}
          </a>
        </span>
      ))}
    </li>
  );
  return (
    <div className="card" data-testid="export">
      <h2>Export</h2>
      <ul>
        {table('rounds', round === undefined ? 'Rounds, one row each' : 'This round')}
        {table(
          'updates',
          round === undefined ? 'Client updates, one row each' : "This round's client updates",
        )}
        {modelRound === null ? null : (
          <li>
            Model of round {modelRound} (tfjs):{' '}
            <a href={modelUrl(runId, 'model.json', modelRound)} download="model.json">
              model.json
            </a>{' '}
            ·{' '}
            <a href={modelUrl(runId, 'weights.bin', modelRound)} download="weights.bin">
              weights.bin
            </a>{' '}
            <span className="muted">(keep both in one folder, then tf.loadLayersModel)</span>
          </li>
        )}
      </ul>
      <p className="muted">
        Columns as in docs/export.md; the same files as <code>tessera export</code>.
      </p>
    </div>
  );
}
