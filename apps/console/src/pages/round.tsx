import { api, type ClientOutcome, type RoundDetail, type Run } from '../api.js';
import {
  ErrorBanner,
  formatLoss,
  formatMs,
  formatPercent,
  formatTime,
  Link,
  useLoad,
} from '../ui.js';
import { ExportLinks } from './export-links.js';
import { UpdatesTable, useOrganisations } from './run.js';

export function RoundPage({ runId, round }: { runId: string; round: number }) {
  const run = useLoad(() => api<Run>('GET', `/runs/${runId}`), [runId]);
  const detail = useLoad(
    () => api<RoundDetail>('GET', `/runs/${runId}/rounds/${round}`),
    [runId, round],
  );
  const organisations = useOrganisations(run.value?.federationId);
  const name = (id: string) => organisations.get(id) ?? id;
  const value = detail.value;
  return (
    <section>
      <p>
        <Link href="/runs">Runs</Link> /{' '}
        <Link href={`/runs/${runId}`}>{run.value?.name ?? '…'}</Link> /
      </p>
      <h1>Round {round}</h1>
      <ErrorBanner message={detail.error ?? run.error} />
      {value ? (
        <>
          <dl className="facts">
            <dt>Status</dt>
            <dd>{value.round.status}</dd>
            <dt>Started</dt>
            <dd>{formatTime(value.round.startedAt)}</dd>
            <dt>Duration</dt>
            <dd>{formatMs(value.round.durationMs)}</dd>
            <dt>Examples</dt>
            <dd>{value.round.numExamples.toLocaleString()}</dd>
            <dt>Train loss / accuracy</dt>
            <dd>
              {formatLoss(value.round.trainLoss)} / {formatPercent(value.round.trainAccuracy)}
            </dd>
            <dt>Test loss / accuracy (federated)</dt>
            <dd>
              {formatLoss(value.round.federatedLoss)} /{' '}
              {formatPercent(value.round.federatedAccuracy)}
            </dd>
            <dt>Test loss / accuracy (central)</dt>
            <dd>
              {formatLoss(value.round.centralLoss)} / {formatPercent(value.round.centralAccuracy)}
            </dd>
            <dt>Selected</dt>
            <dd>{value.round.selectedClientIds.map(name).join(', ') || '—'}</dd>
            <dt>Participants</dt>
            <dd>{value.round.participantClientIds.map(name).join(', ') || '—'}</dd>
            <dt>Dropped</dt>
            <dd>{value.round.droppedClientIds.map(name).join(', ') || '—'}</dd>
            <dt>Checkpoint sha256</dt>
            <dd>
              <code data-testid="checkpoint-sha256">{value.checkpoint.sha256}</code> (
              {value.checkpoint.paramCount.toLocaleString()} parameters)
            </dd>
            <dt>Model (tfjs)</dt>
            <dd>
              <a href={`/api/runs/${runId}/model/model.json?round=${round}`} download="model.json">
                model.json
              </a>{' '}
              ·{' '}
              <a
                href={`/api/runs/${runId}/model/weights.bin?round=${round}`}
                download="weights.bin"
              >
                weights.bin
              </a>{' '}
              <span className="muted">(keep both in one folder, then tf.loadLayersModel)</span>
            </dd>
          </dl>
          {value.round.outcomes.length > 0 ? (
            <>
              <h2>Clients</h2>
              <OutcomesTable outcomes={value.round.outcomes} name={name} />
            </>
          ) : null}
          <h2>Updates</h2>
          <UpdatesTable detail={value} organisations={organisations} />
          <ExportLinks runId={runId} round={round} modelRound={null} />
        </>
      ) : null}
    </section>
  );
}

const OUTCOME_LABELS: Record<ClientOutcome['outcome'], string> = {
  updated: 'Update aggregated',
  failed: 'Failed',
  rejected: 'Update rejected',
  dropped: 'Dropped',
  'timed-out': 'Timed out',
};

/** Each selected client's outcome with the reason: what an admin needs to help it. */
function OutcomesTable(props: { outcomes: ClientOutcome[]; name: (id: string) => string }) {
  return (
    <table data-testid="outcomes">
      <thead>
        <tr>
          <th>Organisation</th>
          <th>Outcome</th>
          <th>Reason</th>
        </tr>
      </thead>
      <tbody>
        {props.outcomes.map((entry) => (
          <tr key={entry.clientId} data-outcome={entry.outcome}>
            <td>{props.name(entry.clientId)}</td>
            <td>
              <span
                className={`badge ${entry.outcome === 'updated' ? 'status-completed' : 'status-failed'}`}
              >
                {OUTCOME_LABELS[entry.outcome]}
              </span>
            </td>
            <td>
              {entry.code ? <code>{entry.code}</code> : null}
              {entry.code && entry.reason ? ' ' : null}
              {entry.reason ?? (entry.code ? null : '—')}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
