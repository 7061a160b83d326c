import { type FormEvent, useState } from 'react';
import { ApiError, api, issuesByField } from '../api.js';
import { ErrorBanner, Field, formatTime, useLoad } from '../ui.js';

/** One of the signed-in user's API tokens, as `GET /api/me/tokens` lists it (never the token). */
interface ApiToken {
  id: string;
  name: string;
  scope: 'read';
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

/**
 * The signed-in user's own API tokens, for scripts and `tessera export|verify --url`: create
 * one (shown once: only its sha256 is kept), see when each was last used, revoke. Every token
 * reads as a researcher whatever its owner's role; it can change nothing.
 */
export function TokensPage() {
  const tokens = useLoad(() => api<ApiToken[]>('GET', '/me/tokens'), []);
  const [name, setName] = useState('');
  const [days, setDays] = useState('90');
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [message, setMessage] = useState<string | null>(null);
  const [created, setCreated] = useState<{ name: string; token: string } | null>(null);

  const create = async (event: FormEvent) => {
    event.preventDefault();
    setErrors({});
    setMessage(null);
    const expiresInDays = days.trim() === '' ? null : Number(days);
    try {
      const answer = await api<{ token: string; apiToken: ApiToken }>('POST', '/me/tokens', {
        name,
        expiresInDays,
      });
      setCreated({ name: answer.apiToken.name, token: answer.token });
      setName('');
      tokens.reload();
    } catch (error) {
      setErrors(issuesByField(error));
      setMessage(error instanceof ApiError ? error.message : String(error));
    }
  };
  const revoke = async (token: ApiToken) => {
    if (!window.confirm(`Revoke "${token.name}"? Scripts using it stop working at once.`)) return;
    await api('POST', `/me/tokens/${token.id}/revoke`).catch((e: Error) => setMessage(e.message));
    tokens.reload();
  };

  return (
    <section>
      <h1>API tokens</h1>
      <p className="muted">
        For scripts and the CLI (
        <code>tessera export|verify &lt;run&gt; --url … --token-file F</code>
        ). A token reads and exports as a researcher, whatever your role; it cannot change anything.
      </p>
      <ErrorBanner message={tokens.error ?? message} />
      {created === null ? null : (
        <div className="card" data-testid="new-token">
          <p>
            Token <strong>{created.name}</strong>, shown this once (only its sha256 is kept): save
            it to a file only you can read.
          </p>
          <pre data-testid="new-token-value">{created.token}</pre>
        </div>
      )}
      <table data-testid="tokens">
        <thead>
          <tr>
            <th>Name</th>
            <th>Created</th>
            <th>Expires</th>
            <th>Last used</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {(tokens.value ?? []).map((token) => (
            <tr key={token.id} className={token.revokedAt ? 'revoked' : ''}>
              <td>{token.name}</td>
              <td>{formatTime(token.createdAt)}</td>
              <td>{token.expiresAt ? formatTime(token.expiresAt) : 'never'}</td>
              <td>{token.lastUsedAt ? formatTime(token.lastUsedAt) : '—'}</td>
              <td>
                {token.revokedAt ? (
                  `revoked ${formatTime(token.revokedAt)}`
                ) : (
                  <button type="button" onClick={() => revoke(token)}>
                    Revoke
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <form onSubmit={create} aria-label="Create an API token" className="card">
        <h2>Create a token</h2>
        <Field label="Name" name="name" error={errors['name']} hint="e.g. laptop, nightly export">
          <input name="name" value={name} onChange={(e) => setName(e.target.value)} />
        </Field>
        <Field
          label="Expires after (days)"
          name="expiresInDays"
          error={errors['expiresInDays']}
          hint="empty: until revoked"
        >
          <input
            name="expiresInDays"
            inputMode="numeric"
            value={days}
            onChange={(e) => setDays(e.target.value)}
          />
        </Field>
        <button type="submit">Create</button>
      </form>
    </section>
  );
}
