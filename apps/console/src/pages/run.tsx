import { roundTotalMs } from '@tessera/protocol';
import { useCallback, useEffect, useState } from 'react';
import { api, type ClientCredential, type Round, type RoundDetail, type Run } from '../api.js';
import { BarChart, LineChart } from '../chart.js';
import { type RoundEvent, useLive, useLiveEvent } from '../live.js';
import { useIsAdmin } from '../session.js';
import {
  ErrorBanner,
  formatBytes,
  formatCountdown,
  formatLoss,
  formatMetric,
  formatMs,
  formatPercent,
  formatTime,
  Link,
  StatusBadge,
  useLoad,
  useNow,
} from '../ui.js';
import { describeState } from './clients.js';
import { ExportLinks } from './export-links.js';
import { RoundPhasesTable } from './round-phases.js';
import { TryModel } from './try-model.js';
import { VerifyCard } from './verify-card.js';

/** Client id -> organisation, from the federation's credentials. */
export function useOrganisations(federationId: string | undefined) {
  const clients = useLoad(
    () =>
      federationId
        ? api<ClientCredential[]>('GET', `/federations/${federationId}/clients`)
        : Promise.resolve([]),
    [federationId],
  );
  return new Map((clients.value ?? []).map((c) => [c.id, c.organisation]));
}

function upsert(rounds: Round[], record: Round): Round[] {
  const others = rounds.filter((r) => r.number !== record.number);
  return [...others, record].sort((a, b) => a.number - b.number);
}

export function RunPage({ id }: { id: string }) {
  const isAdmin = useIsAdmin();
  const live = useLive();
  const now = useNow(500);
  const run = useLoad(() => api<Run>('GET', `/runs/${id}`), [id]);
  const rounds = useLoad(() => api<Round[]>('GET', `/runs/${id}/rounds`), [id]);
  const organisations = useOrganisations(run.value?.federationId);
  const [actionError, setActionError] = useState<string | null>(null);
  const [latest, setLatest] = useState<RoundDetail | null>(null);

  // Live: rounds gain points as they commit and are evaluated; the run's status follows.
  const onRound = useCallback(
    (event: RoundEvent) => {
      if (event.runId !== id) return;
      rounds.set((current) => upsert(current ?? [], event.record));
      run.set((current) =>
        current
          ? { ...current, currentRound: Math.max(current.currentRound, event.round) }
          : current,
      );
    },
    [id, rounds.set, run.set],
  );
  useLiveEvent('round-committed', onRound);
  useLiveEvent('round-evaluated', onRound);
  useLiveEvent(
    'run-status',
    useCallback(
      (changed: Run) => {
        if (changed.id === id)
          run.set((current) => ({
            ...changed,
            pausing: changed.status === 'running' && current?.pausing === true,
          }));
      },
      [id, run.set],
    ),
  );

  const list = rounds.value ?? [];
  const lastNumber = list.at(-1)?.number;
  useEffect(() => {
    if (lastNumber === undefined) return;
    api<RoundDetail>('GET', `/runs/${id}/rounds/${lastNumber}`).then(setLatest, () => {});
  }, [id, lastNumber]);

  const control = async (action: 'start' | 'pause' | 'stop') => {
    // Stop is final: the open round is discarded and the run cannot be resumed.
    if (
      action === 'stop' &&
      !window.confirm(
        `Stop ${run.value?.name ?? 'this run'}? The open round is discarded and a stopped run cannot be resumed or undone. To continue later, use Pause instead.`,
      )
    )
      return;
    setActionError(null);
    try {
      const changed = await api<Run>('POST', `/runs/${id}/${action}`);
      run.set(changed);
    } catch (error) {
      setActionError((error as Error).message);
    }
  };

  const current = run.value;
  if (!current) return <ErrorBanner message={run.error} />;
  const open = live.openRounds[id];
  const working = live.clients.filter((c) => c.task?.runId === id);
  const connected = live.clients.filter((c) => c.federationId === current.federationId);
  const series = (pick: (r: Round) => number | null) =>
    list.flatMap((r) => {
      const value = pick(r);
      return value === null ? [] : [[r.number, value] as [number, number]];
    });

  // dp-fedavg: epsilon after each round, and the budget the run stops before exceeding.
  const epsilons = series((r) => {
    const value = r.privacy?.['epsilon'];
    return typeof value === 'number' ? value : null;
  });
  const budget = privacyBudgetOf(current);

  return (
    <section>
      <p>
        <Link href="/runs">Runs</Link> /
      </p>
      <h1>
        {current.name} <StatusBadge status={current.status} />
      </h1>
      <p className="muted">
        {current.config.model} · {current.config.strategy} ·{' '}
        <span data-testid="rounds-done">
          {current.currentRound} of {current.config.rounds} rounds done
        </span>{' '}
        · E={current.config.localEpochs} B={current.config.batchSize} η=
        {current.config.learningRate} · started {formatTime(current.startedAt)}
      </p>
      {current.error ? <ErrorBanner message={`failed: ${current.error}`} /> : null}
      {current.endReason ? (
        <p className="card" data-testid="end-reason">
          Ended after round {current.currentRound}: {current.endReason}
        </p>
      ) : null}
      {isAdmin ? (
        <div className="actions" data-testid="run-controls">
          {current.status === 'created' ? (
            <button type="button" onClick={() => control('start')}>
              Start
            </button>
          ) : null}
          {current.status === 'paused' ? (
            <button
              type="button"
              onClick={() => control('start')}
              title="continues after the last committed round"
            >
              Resume
            </button>
          ) : null}
          {current.status === 'running' ? (
            <>
              <button
                type="button"
                onClick={() => control('pause')}
                disabled={current.pausing === true}
                title="finishes the open round (training and evaluation), then stops; Resume continues"
              >
                {current.pausing ? `Pausing after round ${current.currentRound + 1}…` : 'Pause'}
              </button>
              <button
                type="button"
                className="danger"
                onClick={() => control('stop')}
                title="ends the run now and for good: the open round is discarded, and a stopped run cannot be resumed"
              >
                Stop
              </button>
            </>
          ) : null}
        </div>
      ) : null}
      <ErrorBanner message={actionError} />

      <div className="card" data-testid="round-progress">
        <h2>Current round</h2>
        {open ? (
          <>
            <p>
              Round <strong data-testid="open-round">{open.round}</strong> of{' '}
              {current.config.rounds}
              {open.attempt > 1 ? ` (attempt ${open.attempt})` : ''} · {open.selected.length}{' '}
              selected · <strong data-testid="replies">{open.replied}</strong> of{' '}
              {open.selected.length} replied · deadline in{' '}
              <strong data-testid="deadline">
                {formatCountdown(Date.parse(open.deadlineAt) - now)}
              </strong>
            </p>
            <progress max={open.selected.length} value={open.replied} />
            <table>
              <thead>
                <tr>
                  <th>Organisation</th>
                  <th>Backend</th>
                  <th>Progress</th>
                </tr>
              </thead>
              <tbody>
                {working.map((client) => (
                  <tr key={client.clientId}>
                    <td>{client.organisation}</td>
                    <td>
                      {client.info.runtime} {client.info.backend}
                    </td>
                    <td>{describeState(client)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </>
        ) : (
          <p className="muted" data-testid="waiting">
            {current.status === 'running'
              ? waitingLine(current, connected.length)
              : 'no round open'}
          </p>
        )}
      </div>

      <div className="charts">
        <LineChart
          title="Accuracy per round"
          testId="accuracy-chart"
          shares
          series={[
            {
              name: 'test (federated)',
              color: '#2563eb',
              points: series((r) => r.federatedAccuracy),
            },
            { name: 'test (central)', color: '#16a34a', points: series((r) => r.centralAccuracy) },
            { name: 'train', color: '#9ca3af', points: series((r) => r.trainAccuracy) },
          ]}
        />
        <LineChart
          title="Loss per round"
          testId="loss-chart"
          yMin={0}
          series={[
            { name: 'test (federated)', color: '#2563eb', points: series((r) => r.federatedLoss) },
            { name: 'test (central)', color: '#16a34a', points: series((r) => r.centralLoss) },
            { name: 'train', color: '#9ca3af', points: series((r) => r.trainLoss) },
          ]}
        />
        {budget !== null || epsilons.length > 0 ? (
          <LineChart
            title={
              budget === null
                ? 'Privacy spent (ε) per round'
                : `Privacy spent (ε at δ = ${budget.delta}) per round, budget ${budget.epsilon}`
            }
            testId="epsilon-chart"
            yMin={0}
            series={[
              { name: 'ε after the round', color: '#7c3aed', points: epsilons },
              ...(budget === null
                ? []
                : [
                    {
                      name: 'budget',
                      color: '#dc2626',
                      points: list.map((r) => [r.number, budget.epsilon] as [number, number]),
                    },
                  ]),
            ]}
          />
        ) : null}
        <BarChart
          title="Round durations"
          testId="duration-chart"
          unit="seconds"
          // The whole round where its phases are recorded (durationMs stops before the commit).
          bars={list.map((r) => [r.number, (roundTotalMs(r.phases) ?? r.durationMs) / 1000])}
        />
      </div>

      {latest ? (
        <div className="card">
          <h2>
            Clients in round {latest.round.number}{' '}
            <Link href={`/runs/${id}/rounds/${latest.round.number}`}>details</Link>
          </h2>
          <UpdatesTable detail={latest} organisations={organisations} />
        </div>
      ) : null}

      <RoundPhasesTable rounds={list} />

      <h2>Rounds</h2>
      <table data-testid="rounds">
        <thead>
          <tr>
            <th>Round</th>
            <th>Status</th>
            <th>Participants</th>
            <th>Examples</th>
            <th>Duration</th>
            <th>Train loss</th>
            <th>Test accuracy</th>
          </tr>
        </thead>
        <tbody>
          {list.map((r) => (
            <tr key={r.number}>
              <td>
                <Link href={`/runs/${id}/rounds/${r.number}`}>{r.number}</Link>
              </td>
              <td>{r.status}</td>
              <td>
                {r.participantClientIds.length} / {r.selectedClientIds.length}
              </td>
              <td>{r.numExamples.toLocaleString()}</td>
              <td>{formatMs(r.durationMs)}</td>
              <td>{formatLoss(r.trainLoss)}</td>
              <td>{formatPercent(r.federatedAccuracy ?? r.centralAccuracy)}</td>
            </tr>
          ))}
        </tbody>
      </table>

      {current.currentRound > 0 ? (
        <>
          <ExportLinks runId={id} modelRound={current.currentRound} />
          <VerifyCard runId={id} />
        </>
      ) : null}

      {current.status !== 'created' ? (
        <TryModel runId={id} latestRound={current.currentRound} />
      ) : null}
    </section>
  );
}

/**
 * What a running run without an open round waits for: a round starts once `minClients` of the
 * federation's clients are connected and idle (the engine's awaitClients).
 */
function waitingLine(run: Run, connected: number): string {
  const { minClients } = run.config;
  const next = run.currentRound + 1;
  if (connected < minClients) {
    return `waiting for clients: ${connected} of minimum ${minClients} connected`;
  }
  return `round ${next} starts when ${minClients === 1 ? 'a client is' : `${minClients} clients are`} free · ${connected} connected`;
}

export function UpdatesTable(props: { detail: RoundDetail; organisations: Map<string, string> }) {
  const metricNames = [...new Set(props.detail.updates.flatMap((u) => Object.keys(u.metrics)))];
  return (
    <table data-testid="updates">
      <thead>
        <tr>
          <th>#</th>
          <th>Organisation</th>
          <th>Examples</th>
          <th>Duration</th>
          <th>Update size</th>
          {metricNames.map((name) => (
            <th key={name}>{name}</th>
          ))}
          <th>sha256</th>
        </tr>
      </thead>
      <tbody>
        {props.detail.updates.map((update) => (
          <tr key={update.clientId}>
            <td>{update.arrivalIndex + 1}</td>
            <td>{props.organisations.get(update.clientId) ?? update.clientId}</td>
            <td>{update.numExamples.toLocaleString()}</td>
            <td>{formatMs(update.durationMs)}</td>
            <td>{formatBytes(update.sizeBytes)}</td>
            {metricNames.map((name) => (
              <td key={name}>{formatMetric(name, update.metrics[name])}</td>
            ))}
            <td>
              <code title={update.sha256}>{update.sha256.slice(0, 12)}…</code>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** A dp-fedavg run's (epsilon, delta) budget from its stored options; null otherwise. */
function privacyBudgetOf(run: Run): { epsilon: number; delta: number } | null {
  if (run.config.strategy !== 'dp-fedavg') return null;
  const budget = run.config.strategyOptions['budget'];
  if (typeof budget !== 'object' || budget === null || Array.isArray(budget)) return null;
  const { epsilon, delta } = budget as Record<string, unknown>;
  return typeof epsilon === 'number' && typeof delta === 'number' ? { epsilon, delta } : null;
}
