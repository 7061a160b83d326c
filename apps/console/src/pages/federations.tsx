import { createFederationSchema, issueTokenSchema } from '@tessera/protocol';
import { type FormEvent, useState } from 'react';
import { ApiError, api, type ClientCredential, type Federation, issuesByField } from '../api.js';
import { useLive } from '../live.js';
import { useIsAdmin } from '../session.js';
import { ErrorBanner, Field, formatTime, Link, navigate, useLoad } from '../ui.js';

function zodErrors(issues: Array<{ path: PropertyKey[]; message: string }>) {
  return Object.fromEntries(issues.map((i) => [i.path.map(String).join('.'), i.message]));
}

export function FederationsPage() {
  const isAdmin = useIsAdmin();
  const federations = useLoad(() => api<Federation[]>('GET', '/federations'), []);
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [message, setMessage] = useState<string | null>(null);

  const create = async (event: FormEvent) => {
    event.preventDefault();
    const checked = createFederationSchema.safeParse({
      name,
      ...(description ? { description } : {}),
    });
    if (!checked.success) return setErrors(zodErrors(checked.error.issues));
    setErrors({});
    try {
      const federation = await api<Federation>('POST', '/federations', checked.data);
      navigate(`/federations/${federation.id}`);
    } catch (error) {
      setErrors(issuesByField(error));
      setMessage(error instanceof ApiError ? error.message : String(error));
    }
  };

  return (
    <section>
      <h1>Federations</h1>
      <ErrorBanner message={federations.error} />
      <table>
        <thead>
          <tr>
            <th>Name</th>
            <th>Description</th>
            <th>Created</th>
          </tr>
        </thead>
        <tbody>
          {(federations.value ?? []).map((federation) => (
            <tr key={federation.id}>
              <td>
                <Link href={`/federations/${federation.id}`}>{federation.name}</Link>
              </td>
              <td>{federation.description ?? ''}</td>
              <td>{formatTime(federation.createdAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {isAdmin ? (
        <form className="card" onSubmit={create} noValidate aria-label="New federation">
          <h2>New federation</h2>
          <ErrorBanner message={message} />
          <Field label="Name" name="name" error={errors['name']}>
            <input name="name" value={name} onChange={(e) => setName(e.target.value)} />
          </Field>
          <Field label="Description" name="description" error={errors['description']}>
            <input
              name="description"
              value={description}
              onChange={(e) => setDescription(e.target.value)}
            />
          </Field>
          <button type="submit">Create federation</button>
        </form>
      ) : null}
    </section>
  );
}

export function FederationPage({ id }: { id: string }) {
  const isAdmin = useIsAdmin();
  const live = useLive();
  const federation = useLoad(() => api<Federation>('GET', `/federations/${id}`), [id]);
  const clients = useLoad(() => api<ClientCredential[]>('GET', `/federations/${id}/clients`), [id]);
  const [organisation, setOrganisation] = useState('');
  const [label, setLabel] = useState('');
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [message, setMessage] = useState<string | null>(null);
  const [issued, setIssued] = useState<{ organisation: string; token: string } | null>(null);

  const issue = async (event: FormEvent) => {
    event.preventDefault();
    const checked = issueTokenSchema.safeParse({ organisation, ...(label ? { label } : {}) });
    if (!checked.success) return setErrors(zodErrors(checked.error.issues));
    setErrors({});
    setMessage(null);
    try {
      const result = await api<{ client: ClientCredential; token: string }>(
        'POST',
        `/federations/${id}/clients`,
        checked.data,
      );
      setIssued({ organisation: result.client.organisation, token: result.token });
      setOrganisation('');
      setLabel('');
      clients.reload();
    } catch (error) {
      setErrors(issuesByField(error));
      setMessage(error instanceof ApiError ? error.message : String(error));
    }
  };

  const revoke = async (client: ClientCredential) => {
    if (
      !window.confirm(
        `Revoke the token of ${client.organisation}? Its client is refused from now on.`,
      )
    )
      return;
    try {
      await api('POST', `/clients/${client.id}/revoke`);
      clients.reload();
    } catch (error) {
      setMessage((error as Error).message);
    }
  };

  const connected = new Set(live.clients.map((c) => c.clientId));
  return (
    <section>
      <p>
        <Link href="/federations">Federations</Link> /
      </p>
      <h1>{federation.value?.name ?? '…'}</h1>
      <p className="muted">{federation.value?.description}</p>
      <ErrorBanner message={federation.error ?? clients.error} />
      <h2>Organisations and their client tokens</h2>
      <table data-testid="credentials">
        <thead>
          <tr>
            <th>Organisation</th>
            <th>Label</th>
            <th>Issued</th>
            <th>Last seen</th>
            <th>State</th>
            {isAdmin ? <th /> : null}
          </tr>
        </thead>
        <tbody>
          {(clients.value ?? []).map((client) => (
            <tr key={client.id} className={client.revokedAt ? 'revoked' : ''}>
              <td>{client.organisation}</td>
              <td>{client.label ?? ''}</td>
              <td>{formatTime(client.createdAt)}</td>
              <td>{formatTime(client.lastSeenAt)}</td>
              <td>
                {client.revokedAt
                  ? `revoked ${formatTime(client.revokedAt)}`
                  : connected.has(client.id)
                    ? 'connected'
                    : 'active'}
              </td>
              {isAdmin ? (
                <td>
                  {client.revokedAt ? null : (
                    <button type="button" className="danger" onClick={() => revoke(client)}>
                      Revoke
                    </button>
                  )}
                </td>
              ) : null}
            </tr>
          ))}
        </tbody>
      </table>
      {issued ? (
        <div className="card token" data-testid="issued-token">
          <h3>Token for {issued.organisation}</h3>
          <p>Shown once: only its hash is stored. Give it to the organisation.</p>
          <code className="secret">{issued.token}</code>
          <button type="button" onClick={() => void navigator.clipboard?.writeText(issued.token)}>
            Copy
          </button>
          <JoinInstructions token={issued.token} />
          <button type="button" onClick={() => setIssued(null)}>
            Done
          </button>
        </div>
      ) : null}
      {isAdmin ? (
        <form className="card" onSubmit={issue} noValidate aria-label="Issue a client token">
          <h2>Issue a client token</h2>
          <ErrorBanner message={message} />
          <Field label="Organisation" name="organisation" error={errors['organisation']}>
            <input
              name="organisation"
              value={organisation}
              onChange={(e) => setOrganisation(e.target.value)}
            />
          </Field>
          <Field label="Label" name="label" error={errors['label']} hint="optional, e.g. a site">
            <input name="label" value={label} onChange={(e) => setLabel(e.target.value)} />
          </Field>
          <button type="submit">Issue token</button>
        </form>
      ) : null}
    </section>
  );
}

/**
 * How an organisation joins with a token: the Node client from a clone of this repository
 * (after `npm install && npm run build`; its `tessera-client` bin is not on the PATH there,
 * so the command names the script), with the token in a private file rather than on the
 * command line (visible in `ps`); or the web client's join link, the token in the fragment
 * (never sent to the server by the browser).
 */
function JoinInstructions({ token }: { token: string }) {
  const origin = window.location.origin;
  const command = [
    `umask 077; printf '%s\\n' '${token}' > ~/.tessera-token`,
    `node apps/node-client/dist/main.js --coordinator ${origin} --token-file ~/.tessera-token --csv ./our-data.csv`,
  ].join('\n');
  const joinLink = `${origin}/join/#token=${token}`;
  return (
    <>
      <p>
        With Node, in a clone of Tessera after <code>npm install &amp;&amp; npm run build</code>:
      </p>
      <pre data-testid="client-command">{command}</pre>
      <button type="button" onClick={() => void navigator.clipboard?.writeText(command)}>
        Copy command
      </button>
      <p>In a browser, open the join link:</p>
      <p>
        <a href={joinLink} data-testid="join-link" target="_blank" rel="noreferrer">
          {joinLink}
        </a>{' '}
        <button type="button" onClick={() => void navigator.clipboard?.writeText(joinLink)}>
          Copy link
        </button>
      </p>
    </>
  );
}
