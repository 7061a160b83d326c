import { type LiveClient, useLive } from '../live.js';
import { formatTime, Link } from '../ui.js';

function describeBackend(client: LiveClient): string {
  const { runtime, backend } = client.info;
  const where = runtime === 'node' ? 'Node' : runtime === 'browser' ? 'Browser' : runtime;
  const engine =
    backend === 'tensorflow-gpu'
      ? 'GPU'
      : backend === 'tensorflow'
        ? 'native'
        : backend.toUpperCase();
  return `${where} ${engine}`;
}

export function describeState(client: LiveClient): string {
  if (!client.task) return 'idle';
  const { phase, round } = client.task;
  if (phase === 'statistics') return 'summarising its data (statistics round)';
  const doing = phase === 'train' ? 'training' : 'evaluating';
  const progress = client.progress;
  if (!progress) return `${doing} round ${round}`;
  const loss = progress.loss === null ? '' : `, loss ${progress.loss.toFixed(3)}`;
  return `${doing} round ${round}: epoch ${progress.epoch}/${progress.epochs}, batch ${progress.batch}/${progress.batches}${loss}`;
}

/** Connected clients, live from the `/admin` socket. */
export function ClientsPage() {
  const live = useLive();
  return (
    <section>
      <h1>Connected clients</h1>
      <p className="muted">
        {live.connected ? 'live' : 'reconnecting…'} · {live.clients.length} connected
      </p>
      <table data-testid="connected-clients">
        <thead>
          <tr>
            <th>Organisation</th>
            <th>Runtime / backend</th>
            <th>Client</th>
            <th>Samples</th>
            <th>Connected</th>
            <th>Last seen</th>
            <th>State</th>
          </tr>
        </thead>
        <tbody>
          {live.clients.map((client) => (
            <tr key={client.clientId}>
              <td>
                <Link href={`/federations/${client.federationId}`}>{client.organisation}</Link>
              </td>
              <td>{describeBackend(client)}</td>
              <td>
                {client.info.name} {client.info.version}
              </td>
              <td>{client.info.numExamples.toLocaleString()}</td>
              <td>{formatTime(client.connectedAt)}</td>
              <td>{formatTime(client.lastSeenAt)}</td>
              <td>{describeState(client)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
